"""int8 QAT/PTQ, the TFLite and ONNX exports, their parity with PyTorch, the export folder
(manifest, report, byte-identical re-export) and fad-export's user errors.

Tiny networks (FAN widths 8, 8, 16 on 4 x 32 x 32) and a tiny patch cache keep this fast.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fad_deploy.cli.export import main as export_main
from fad_deploy.data.noise import NoiseParams, to_anchor
from fad_deploy.data.synth import VALIDATION_CROP, VALIDATION_LEVELS, validation_set
from fad_deploy.errors import FadError
from fad_deploy.fileio import save_npz
from fad_deploy.quant.split import input_channels, single_checkpoint, split_checkpoint
from fad_deploy.isp.metrics import psnr
from fad_deploy.models.registry import Checkpoint, build, load_checkpoint, model_config
from fad_deploy.quant.qat import (PTQConfig, QATConfig, FakeQuantRunner, fake_quant_model, freeze, full_range_weights,
                                  grid, io_quantizers, post_training_quantization, prepare, quant_state,
                                  quantization_aware_training, quantized_checkpoint, quantized_input, quantizers,
                                  weight_grid)
from fad_deploy.quant.qconfig import QATConvReLU62d
from fad_deploy.runners import load_runner
from fad_deploy.runners.base import GRID_SHARE, grid_level, grid_top, int8_input, quantized_base
from fad_deploy.runners.tflite_runner import TFLiteRunner

TINY = {"widths": [8, 8, 16], "expansions": [1, 1, 1]}  # padding multiple 4
SIZE = 32
RUN = ["--input-size", str(SIZE), str(SIZE), "--qat-steps", "2", "--threads", "1", "--max-drop", "100",
       "--max-level-drop", "100", "--val-crops", "1", "--jobs", "1"]
FAST = {"progress": False, "validation_crops": 1}  # ExportOptions: one crop of each validation photo


def tiny_checkpoint(seed: int = 0, **config) -> Checkpoint:
    """A tiny FAN (``config`` overrides TINY) whose every weight matters (Feature-Align starts as identity
    otherwise)."""
    torch.manual_seed(seed)
    net = build("fan", {**TINY, **config})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Checkpoint("tiny", "fan", model_config(net), net.state_dict(), card={"steps": 0})


def calibrated(ckpt: Checkpoint) -> Checkpoint:
    """A quantized checkpoint from a few observed random batches (no data files needed)."""
    net = ckpt.build()
    gm = prepare(net)
    torch.manual_seed(1)
    for _ in range(4):
        gm(torch.rand(2, 4, SIZE, SIZE) * 3)
    return quantized_checkpoint(ckpt, freeze(gm), net, "test", {})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny checkpoint and a tiny patch cache (found through FAD_CACHE like the real one)."""
    root = tmp_path_factory.mktemp("export")
    tiny_checkpoint().save(root / "tiny.pt")
    rng = np.random.default_rng(0)
    n, p = 6, 72
    ramp = np.linspace(0, 1, p)[None, None, :, None] * np.ones((n, 4, p, p))
    raw = np.clip(rng.uniform(0.1, 0.7, (n, 1, 1, 1)) * (0.5 + ramp), 0, 1).astype(np.float16)
    save_npz(root / "patches-train.npz", raw=raw, red_gain=np.full(n, 2.0, np.float32),
             blue_gain=np.full(n, 1.7, np.float32), rgb_gain=np.full(n, 1.25, np.float32),
             cam2rgb=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)))
    return root


@pytest.fixture(scope="module")
def exported(workdir):
    """`fad-export tiny.pt --int8 --target all` into a folder (QAT on the tiny cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FAD_CACHE", str(workdir))
    out = workdir / "bundle"
    export_main([str(workdir / "tiny.pt"), "--int8", "--target", "all", "--out", str(out), *RUN])
    yield out
    mp.undo()


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---- quantization ----------------------------------------------------------------------------------------

def observed_checkpoint(peak: float, input_map: str = "linear"):
    """The tiny checkpoint, its float network, its fake-quant core (ranges observed on one uniform
    [0, peak] batch, then frozen) and the quantized checkpoint adding the residual to the
    quantized input."""
    ckpt = tiny_checkpoint()
    net = ckpt.build()
    gm = prepare(net)
    gm(torch.rand(2, 4, SIZE, SIZE) * peak)
    return ckpt, net, gm, quantized_checkpoint(ckpt, freeze(gm), net, "test", {}, base="quantized",
                                               input_map=input_map)


def test_residual_goes_onto_the_quantized_input_in_training_and_in_every_runner(one_thread):
    ckpt, net, gm, q = observed_checkpoint(peak=3.0)
    assert q.extra["quantization"]["base"] == "quantized input"
    runner = FakeQuantRunner(q)
    g = runner.base_grid
    assert g == grid(io_quantizers(gm)[0])
    u = np.random.default_rng(3).uniform(-0.5, 1.5 * g["max"], (1, 4, SIZE, SIZE)).astype(np.float32)
    base = quantized_base(u, g)
    inside = (u >= g["min"] - g["scale"] / 2) & (u <= g["max"] + g["scale"] / 2)
    assert 0 < inside.mean() < 1  # the test covers both cases
    np.testing.assert_array_equal(base[~inside], u[~inside])  # beyond the int8 range: the input itself
    levels = base[inside] / g["scale"] + g["zero_point"]
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # inside: on the int8 grid, within half a step
    assert np.abs(base - u).max() <= g["scale"] / 2 * (1 + 1e-5)
    with torch.no_grad():  # QAT's loss adds the residual to the same base the runners use
        np.testing.assert_allclose(quantized_input(gm, torch.from_numpy(u)).numpy(), base, atol=1e-6)
        np.testing.assert_allclose(runner.run(u), runner.run_network(u) + base, atol=1e-6)
    onto_input = FakeQuantRunner(quantized_checkpoint(ckpt, gm, net, "test", {}))
    assert onto_input.base_grid is None
    np.testing.assert_allclose(onto_input.run(u), onto_input.run_network(u) + u, atol=1e-6)


def test_an_int8_grid_too_small_for_a_frame_raises_the_level_it_runs_at_just_enough():
    """Above its input grid an int8 network had returned bright pixels undenoised."""
    anchor, noise = NoiseParams(1.1e-3, 1e-5), NoiseParams(2e-4, 1e-6)
    linear = {"min": 0.0, "max": 2.0, "scale": 2.0 / 255, "zero_point": -128}
    assert grid_top(linear) == pytest.approx(2.0) and grid_top(None) is None and grid_top({"input_map": "sqrt"}) is None
    assert grid_top({**linear, "input_map": "sqrt"}) == pytest.approx(4.0)  # the grid holds sqrt(u)
    frame = np.random.default_rng(0).uniform(0.0, 0.2, (4, 16, 16))
    assert grid_level(frame, noise, anchor, 2.0) is noise  # u up to 1.1: inside
    bright = frame.copy()
    bright[0, :8] = 0.6  # an eighth of the pixels: u = 3.3 and more
    bright[1] = 1.0  # clipped at white: no noise to take out, not fitted
    run_at = grid_level(bright, noise, anchor, 2.0)
    assert run_at.read == noise.read and noise.shot < run_at.shot < 1.01 * noise.shot * 3.3 / 2.0
    x = np.quantile(bright[bright < 1], GRID_SHARE)
    assert to_anchor(x, run_at, anchor) == pytest.approx(2.0, rel=1e-6)  # the smallest level that fits
    assert grid_level(np.ones((4, 8, 8)), noise, anchor, 2.0) is noise  # all clipped


def test_a_square_root_input_map_feeds_the_network_sqrt_u_and_squares_its_int8_input_back_for_the_base(one_thread):
    ckpt, net, gm, q = observed_checkpoint(peak=1.0, input_map="sqrt")  # observes sqrt-sized inputs: [0, 1]
    runner = FakeQuantRunner(q)
    g = runner.base_grid
    assert g == {**grid(io_quantizers(gm)[0]), "input_map": "sqrt"}
    u = np.random.default_rng(4).uniform(-0.2, 1.5 * g["max"] ** 2, (1, 4, SIZE, SIZE)).astype(np.float32)
    base = quantized_base(u, g)
    x = np.sqrt(np.maximum(u, 0))
    inside = x <= g["max"] + g["scale"] / 2
    assert 0 < inside.mean() < 1 and (u[inside] < 0).any()  # the test covers both cases, and negative inputs
    np.testing.assert_array_equal(base[~inside], u[~inside])  # beyond the int8 range: the input itself
    levels = np.sqrt(base[inside]) / g["scale"] + g["zero_point"]  # inside: squares of the int8 grid
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert (base[u < 0] == 0).all()  # below zero the network sees 0 and the base is 0
    with torch.no_grad():  # QAT's loss adds the residual to the same base, and feeds the network sqrt(u)
        np.testing.assert_allclose(quantized_input(gm, torch.from_numpy(u), "sqrt").numpy(), base, atol=1e-6)
        np.testing.assert_allclose(runner.run(u), runner.run_network(x) + base, atol=1e-6)
    with pytest.raises(FadError, match="quantized input"):
        quantized_checkpoint(ckpt, gm, net, "test", {}, base="input", input_map="sqrt")


def test_a_split_input_carries_the_int8_remainder_so_the_network_sees_the_input_to_a_kth_of_a_step(one_thread):
    ckpt, net, gm, q = observed_checkpoint(peak=3.0)
    k = 16
    split = FakeQuantRunner(split_checkpoint(q, k))
    single = FakeQuantRunner(q)
    g = split.base_grid
    assert g == {**single.base_grid, "split": k}
    u = np.random.default_rng(5).uniform(g["min"], g["max"], (1, 4, SIZE, SIZE)).astype(np.float32)
    x = int8_input(u, g)
    coarse, fine = x[:, :4], x[:, 4:]
    levels = coarse / g["scale"] + g["zero_point"]
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # channels 0-3: the input rounded down
    assert (coarse <= u + 1e-6).all() and (fine >= -1e-6).all() and (fine <= k * g["scale"] * (1 + 1e-5)).all()
    np.testing.assert_allclose(coarse + fine / k, u, atol=1e-6)
    base = quantized_base(u, g)  # what the network saw: to 1/k of an int8 step
    assert np.abs(base - u).max() <= g["scale"] / (2 * k) * (1 + 1e-3)
    with torch.no_grad():
        on_grid = quantized_base(u, single.base_grid)
        # a remainder under half a step of the remainder's grid rounds to none: the split network then
        # computes what the single one does on the int8 grid
        nudged = int8_input(np.minimum(on_grid + g["scale"] / (4 * k), g["max"]), g)
        torch.testing.assert_close(split.model(torch.from_numpy(nudged)), single.model(torch.from_numpy(on_grid)),
                                   atol=1e-6, rtol=0)
    # off the grid it reads the remainder: the same int8 input gives another output
    assert np.abs(split.run_network(x) - single.run_network(u)).max() > 1e-3
    wide = FakeQuantRunner(split_checkpoint(q, k, 1.5)).base_grid  # the grid widened, its step and k alike
    assert wide["max"] - wide["min"] == pytest.approx(1.5 * (g["max"] - g["min"]), rel=1e-6)
    assert abs(wide["min"] - g["min"]) <= wide["scale"] and wide["split"] == min(round(1.5 * k), 127 - wide["zero_point"])
    unsplit = single_checkpoint(split_checkpoint(q, k, 1.5))  # the learned grid back, exactly
    assert unsplit.extra["quantization"] == q.extra["quantization"] and FakeQuantRunner(unsplit).base_grid == single.base_grid
    with pytest.raises(FadError, match="split already"):
        split_checkpoint(split_checkpoint(q, k), k)
    with pytest.raises(FadError, match="quantized input"):
        split_checkpoint(quantized_checkpoint(ckpt, gm, net, "test", {}), k)


def test_networks_of_one_structure_share_a_preparation_and_each_keeps_its_weights(one_thread):
    """prepare() copies the first preparation of a structure: each copy computes its own
    network, on that network's own tensors; no preparation draws from torch's random numbers."""
    from torch.ao.quantization import disable_fake_quant

    from fad_deploy.quant.graph import Core

    x = torch.rand(2, 4, SIZE, SIZE)
    for seed in (0, 1):
        net = tiny_checkpoint(seed).build()
        gm = prepare(net).apply(disable_fake_quant)
        assert {id(p) for p in net.parameters()} <= {id(p) for p in gm.parameters()}
        torch.testing.assert_close(gm(x), Core(net, residual=True)(x), rtol=0, atol=0)
    other = build("fan", {**TINY, "expansions": [1, 1, 2]})  # a structure not prepared before
    for net in (other, tiny_checkpoint(2).build()):
        torch.manual_seed(5)
        prepare(net)
        drawn = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(drawn, torch.rand(3))


def test_prepare_fuses_activations_and_checkpoint_rebuilds_the_same_fake_quant_network(tmp_path, one_thread):
    ckpt = tiny_checkpoint()
    net = ckpt.build()
    gm = prepare(net)
    mods = dict(gm.named_modules())
    assert isinstance(mods["net.enc.0.expand"], QATConvReLU62d)  # conv + ReLU6 fused: quantized after ReLU6
    assert type(mods["net.enc.0.project"]).__name__ == "Conv2d"  # plain QAT conv (no activation)
    x = torch.rand(2, 4, SIZE, SIZE) * 3
    gm(x)
    q = quantized_checkpoint(ckpt, freeze(gm), net, "test", {})
    assert set(q.state_dict) == set(ckpt.state_dict)  # float weights under the network's own keys
    q.save(tmp_path / "q.pt")
    rebuilt = fake_quant_model(load_checkpoint(tmp_path / "q.pt"))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), gm(x), rtol=0, atol=0)
        y = rebuilt(torch.rand(1, 4, 30, 37))  # any size: padded around the quantized core
    assert y.shape == (1, 4, 30, 37)
    state = quant_state(gm)
    weight = state["net.enc.0.expand.weight_fake_quant"]
    assert weight["axis"] == 0 and len(weight["scale"]) == 8 and set(weight["zero_point"]) == {0}
    assert (weight["quant_min"], weight["quant_max"]) == (-127, 127)  # TFLite's narrow weight grid
    with torch.no_grad():  # outputs lie on the output quantizer's grid
        out_fq = list(quantizers(gm).values())[-1]
        grid = rebuilt(x) / out_fq.scale
    assert torch.allclose(grid, grid.round(), atol=1e-3)


def test_weights_use_tflites_narrow_grid_and_older_full_grid_checkpoints_rebuild_as_made(one_thread):
    ckpt = tiny_checkpoint()
    model = fake_quant_model(calibrated(ckpt))
    assert weight_grid(model.core) == (-127, 127)
    x = torch.rand(1, 4, SIZE, SIZE) * 3
    with torch.no_grad():
        y = model(x)
        full_range_weights(model)  # as the ONNX export writes it: the same levels on [-128, 127]
        assert weight_grid(model.core) == (-128, 127)
        torch.testing.assert_close(model(x), y, rtol=0, atol=0)
    net = ckpt.build()  # an int8 checkpoint made before the narrow grid keeps its [-128, 127]
    gm = prepare(net, weight_qmin=-128)
    gm(x)
    old = quantized_checkpoint(ckpt, freeze(gm), net, "test", {})
    assert old.extra["quantization"]["weights"].endswith("[-128 s, 127 s]")
    rebuilt = fake_quant_model(old)
    assert weight_grid(rebuilt.core) == (-128, 127)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), gm(x), rtol=0, atol=0)


def test_tflite_int8_weights_are_symmetric_on_the_narrow_grid(exported):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(exported / "tiny.int8.tflite"))
    weights = [d for d in it.get_tensor_details() if d["dtype"] == np.int8 and len(d["shape"]) == 4
               and len(d["quantization_parameters"]["scales"]) > 1]
    assert weights
    for d in weights:
        w = it.get_tensor(d["index"])
        assert not d["quantization_parameters"]["zero_points"].any()
        assert w.min() >= -127 and np.abs(w).max() == 127, d["name"]


def test_qat_fine_tunes_and_ptq_only_calibrates(workdir, monkeypatch, one_thread):
    monkeypatch.setenv("FAD_CACHE", str(workdir))
    ckpt = tiny_checkpoint()
    qat = quantization_aware_training(ckpt, QATConfig(steps=3, batch=2, observe_steps=1), progress=False)
    ptq = post_training_quantization(ckpt, PTQConfig(batches=2, batch=2), progress=False)
    changed = [k for k in ckpt.state_dict if not torch.equal(ckpt.state_dict[k], qat.state_dict[k])]
    assert changed  # QAT moved the weights
    assert all(torch.equal(ckpt.state_dict[k], ptq.state_dict[k]) for k in ckpt.state_dict)
    for q, method in ((qat, "qat"), (ptq, "ptq")):
        assert q.extra["quantization"]["method"] == method and q.card["quantization"]["source"] == "tiny"
        scales = [s["scale"] for s in q.extra["quantization"]["fake_quant"].values()]
        assert all(np.isfinite(v) and v > 0 for s in scales for v in s)
    with pytest.raises(FadError, match="already quantized"):
        quantization_aware_training(qat, QATConfig(steps=1))
    with pytest.raises(FadError, match="input map"):  # refused before any training
        quantization_aware_training(ckpt, QATConfig(steps=1, input_map="sqrt", base="input"))
    mapped = quantization_aware_training(ckpt, QATConfig(steps=3, batch=2, observe_steps=1, adapt_steps=2,
                                                         input_map="sqrt"), progress=False)
    assert FakeQuantRunner(mapped).base_grid["input_map"] == "sqrt"
    with pytest.raises(FadError, match="multiple"):
        post_training_quantization(ckpt, PTQConfig(crop=30))


def test_weight_only_qat_gives_a_float_network_on_tflites_int8_weight_grid(workdir, monkeypatch, one_thread):
    from fad_deploy.quant.qat import WEIGHT_GRID_KEY, on_weight_grid
    from fad_deploy.runners.torch_runner import TorchRunner

    monkeypatch.setenv("FAD_CACHE", str(workdir))
    ckpt = tiny_checkpoint()
    q = quantization_aware_training(ckpt, QATConfig(steps=3, batch=2, observe_steps=1, activations="float", input_split=0),
                                    progress=False)
    assert not q.extra.get("quantization") and q.extra[WEIGHT_GRID_KEY]["method"] == "qat-weights"
    convs = [k for k, v in q.state_dict.items() if k.endswith("weight") and v.dim() == 4]
    assert convs and all(not torch.equal(q.state_dict[k], ckpt.state_dict[k]) for k in convs)
    for k in convs:  # at most 255 levels per output channel, the largest at +-127 steps
        w = q.state_dict[k].flatten(1)
        steps = w / (w.abs().amax(1, keepdim=True) / 127)
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().amax() == pytest.approx(127, abs=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(on_weight_grid(q.state_dict).values(), q.state_dict.values()))
    u = np.random.default_rng(0).uniform(0, 2, (1, 4, SIZE, SIZE)).astype(np.float32)
    assert np.isfinite(TorchRunner(q).run(u)).all()  # a plain float network


def test_feature_distillation_taps_every_unactivated_conv_and_the_drop_loss_needs_the_float_target(workdir, monkeypatch, one_thread):
    from torch.ao.quantization import disable_fake_quant, enable_fake_quant

    from fad_deploy.export.bundle import recipe_of
    from fad_deploy.quant.qat import FeatureTaps
    from fad_deploy.quant.recipe import QAT_ADDED, stored_qat_config

    ckpt = tiny_checkpoint()
    net, reference = ckpt.build(), ckpt.build().eval()
    gm = prepare(net)
    taps = FeatureTaps(gm, reference)
    plain = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)
             and not any(n.endswith(s) for s in (".expand", ".group", ".shared"))]  # those have an activation
    x = torch.rand(2, 4, SIZE, SIZE) * 3
    with torch.no_grad():
        gm.apply(disable_fake_quant)
        gm(x), reference(x)
        assert sorted(taps.float) == sorted(plain) and float(taps.loss()) == pytest.approx(1e-4)  # same network
        gm.apply(enable_fake_quant)
        gm(x), reference(x)
        assert float(taps.loss()) > 1e-3  # the int8 rounding shows in the maps
    taps.remove()
    monkeypatch.setenv("FAD_CACHE", str(workdir))
    cfg = QATConfig(steps=3, batch=2, observe_steps=1)
    with_maps = quantization_aware_training(ckpt, dataclasses.replace(cfg, feature_distil=1.0), progress=False)
    without = quantization_aware_training(ckpt, cfg, progress=False)
    assert any(not torch.equal(with_maps.state_dict[k], without.state_dict[k]) for k in ckpt.state_dict)
    drop = quantization_aware_training(ckpt, dataclasses.replace(cfg, loss="drop"), progress=False)
    assert any(not torch.equal(drop.state_dict[k], without.state_dict[k]) for k in ckpt.state_dict)
    for wrong in ({"feature_distil": 1.0}, {"loss": "drop"}):
        with pytest.raises(FadError, match="float network"):
            quantization_aware_training(ckpt, dataclasses.replace(cfg, target="clean", **wrong))
    # a recipe stored before a field existed reads as having run as it did then: no feature maps,
    # int8 weights on the full grid (weight-only QAT always used the narrow one)
    stored = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in QAT_ADDED}
    old = dataclasses.replace(ckpt, extra={"quantization": {"recipe": {"method": "qat", "config": stored}}})
    assert recipe_of(old)["config"] == {**dataclasses.asdict(cfg), "feature_distil": 0.0, "weight_qmin": -128,
                                        "input_split": 0}
    assert stored_qat_config({**stored, "activations": "float"})["weight_qmin"] == -127


def test_learned_ranges_start_from_the_least_error_and_train_their_scales(workdir, monkeypatch, one_thread):
    from fad_deploy.quant.learned import affine_grid, mse_grid, quantize_error

    torch.manual_seed(0)
    x = torch.distributions.Exponential(1.0).sample((100000,))  # a long tail, like ReLU features
    full = affine_grid(0.0, float(x.max()), 0, 255)
    scale, zp = mse_grid(x, 0, 255)
    assert scale < full[0] and zp == 0  # clips the rare largest values
    assert quantize_error(x, scale, zp, 0, 255) < quantize_error(x, *full, 0, 255)
    monkeypatch.setenv("FAD_CACHE", str(workdir))
    ckpt = tiny_checkpoint()
    cfg = QATConfig(steps=6, batch=2, observe_steps=2, ranges="learned", freeze_observers_at=1.0, scale_lr=1e-2)
    minmax = quantization_aware_training(ckpt, dataclasses.replace(cfg, ranges="minmax"), progress=False)
    learned = quantization_aware_training(ckpt, cfg, progress=False)
    fq = {k: learned.extra["quantization"]["fake_quant"][k]["scale"] for k in minmax.extra["quantization"]["fake_quant"]}
    ref = {k: v["scale"] for k, v in minmax.extra["quantization"]["fake_quant"].items()}
    activations = [k for k in ref if "activation" in k]
    assert activations and all(fq[k] != ref[k] for k in activations)  # every activation range moved
    x = torch.rand(1, input_channels(learned), SIZE, SIZE)  # 8: the recipe splits the int8 input
    with torch.no_grad():  # the stored scales rebuild the trained network exactly
        y = fake_quant_model(learned)(x)
        assert torch.isfinite(y).all()


def test_grid_round_rounds_as_pytorchs_fake_quant_with_lsqs_gradients():
    from fad_deploy.quant.learned import GridRound

    torch.manual_seed(0)
    x0 = torch.randn(2, 3, 17, 19) * 3
    scale, zp, qmin, qmax = 0.02, 7, -128, 127
    x = x0.clone().requires_grad_(True)
    log_s = torch.tensor(scale).log().requires_grad_(True)
    y = GridRound.apply(x, log_s.exp(), qmin - zp, qmax - zp)
    ref = torch.fake_quantize_per_tensor_affine(x0, scale, zp, qmin, qmax)
    assert torch.equal(y.detach(), ref)  # the same values as the exported kernels
    y.backward(x0)
    # the autograd expression of LSQ (straight-through round) gives the same gradients
    x2, log_s2 = x0.clone().requires_grad_(True), log_s.detach().clone().requires_grad_(True)
    s = log_s2.exp()
    r = x2 / s
    r = r + (torch.round(r) - r).detach()
    ((torch.clamp(r + zp, qmin, qmax) - zp) * s).backward(x0)
    clipped = x.grad == 0  # x's gradient is the output's, except where the grid clips
    assert torch.equal(clipped, x2.grad == 0) and 0 < clipped.float().mean() < 1
    assert torch.equal(x.grad[~clipped], x0[~clipped]) and torch.allclose(x2.grad, x.grad, rtol=1e-6, atol=0)
    assert torch.allclose(log_s.grad, log_s2.grad, rtol=1e-4)
    xf = x0.clone().requires_grad_(True)  # a fixed scale (ranges frozen): x's gradient alone, the same
    GridRound.apply(xf, torch.tensor(scale), qmin - zp, qmax - zp).backward(x0)
    assert torch.equal(xf.grad, x.grad)


@pytest.mark.parametrize("adapt", [{}, {"adapt_steps": 3, "input_map": "sqrt"}, {"continue_steps": 4, "restarts": 2}],
                         ids=["qat", "adapt-then-qat", "later-cycles"])
def test_qat_resumes_after_an_interruption_to_the_same_weights(adapt, workdir, tmp_path, monkeypatch, one_thread):
    import fad_deploy.quant.qat as qat

    monkeypatch.setenv("FAD_CACHE", str(workdir))
    ckpt = tiny_checkpoint()
    cfg = QATConfig(steps=6, batch=2, observe_steps=2, ranges="learned", freeze_observers_at=0.7, **adapt)
    whole = quantization_aware_training(ckpt, cfg, progress=False)
    state = tmp_path / "qat-state.pt"
    real = qat.sample_batch

    # a QAT step past the observation (whose samples a resume file does not keep); in the second cycle, one where
    # the ranges are being learned again
    stop = cfg.adapt_steps + (cfg.steps + cfg.continue_steps + 1 if cfg.continue_steps else 4)

    def interrupted(data, step, *args, **kwargs):
        if step == stop:
            raise KeyboardInterrupt
        return real(data, step, *args, **kwargs)

    monkeypatch.setattr(qat, "sample_batch", interrupted)
    monkeypatch.setattr(qat, "STATE_EVERY_S", 0.0)  # save after every step
    with pytest.raises(KeyboardInterrupt):
        quantization_aware_training(ckpt, cfg, progress=False, state=qat.QATState(state))
    stored = torch.load(state, weights_only=True)
    assert stored["step"] == stop and stored["elapsed_s"] > 0
    del stored["fingerprint"]["last_exposure"]  # as a file written before the field existed: resumed all the same
    torch.save(stored, state)
    monkeypatch.setattr(qat, "sample_batch", real)
    again = qat.QATState(state)
    resumed = quantization_aware_training(ckpt, cfg, progress=False, state=again)
    assert again.earlier_s == stored["elapsed_s"]  # the time of the interrupted run counts in the total
    assert not state.exists()  # removed once the run ends
    for k in whole.state_dict:
        torch.testing.assert_close(resumed.state_dict[k], whole.state_dict[k], rtol=0, atol=0)
    assert resumed.extra["quantization"]["fake_quant"] == whole.extra["quantization"]["fake_quant"]


@pytest.mark.parametrize("settings", [{"last_exposure": 0.5, "continue_steps": 3}, {"last_exposure": 2.0},
                                      {"last_exposure": float("inf"), "continue_steps": 3},
                                      {"last_exposure": 2.0, "continue_steps": 3, "last_exposure_share": 0.0}],
                         ids=["darker", "no-later-cycle", "unbounded", "no-share"])
def test_brighter_patches_need_a_finite_gain_and_a_later_cycle_to_learn_them_in(settings):
    with pytest.raises(FadError, match="last_exposure"):
        QATConfig(**settings)
    shorter = QATConfig(last_exposure=2.0, last_exposure_share=0.5, continue_steps=3).previous()
    assert shorter.last_exposure == shorter.last_exposure_share == 1


@pytest.mark.parametrize("settings, tilt", [({"last_level_tilt": -1.0, "continue_steps": 3}, -1.0),
                                            ({"last_level_tilt": 1.0}, 1.0)], ids=["negative", "no-later-cycle"])
def test_a_level_tilt_needs_a_later_cycle_and_is_the_last_ones(settings, tilt):
    with pytest.raises(FadError, match=f"last_level_tilt {tilt}"):
        QATConfig(**settings)
    assert QATConfig(last_level_tilt=1.0, continue_steps=3).previous().last_level_tilt == 0


LAST_CYCLE_SETTINGS = {"last_exposure": 1.0, "last_level_tilt": 0.0}  # their plain values


@pytest.mark.parametrize("restarts, last", [(1, {}), (2, {}), (2, {"last_exposure": 4.0}),
                                            (2, {"last_level_tilt": 1.0})])
def test_a_later_qat_cycle_from_the_shorter_recipes_checkpoint_equals_the_whole_run(restarts, last, workdir,
                                                                                      monkeypatch, one_thread):
    """QAT with later cycles (warm restarts) gives the same weights and ranges whether it runs
    whole or its last cycle goes on from an int8 checkpoint the recipe one cycle shorter made
    (which had no brighter patches or level tilt: those are the last cycle's); any other start is refused."""
    monkeypatch.setenv("FAD_CACHE", str(workdir))
    ckpt = tiny_checkpoint()
    cfg = QATConfig(steps=4, batch=2, observe_steps=2, continue_steps=3, restarts=restarts, **last)
    whole = quantization_aware_training(ckpt, cfg, progress=False)
    shorter = quantization_aware_training(ckpt, cfg.previous(), progress=False)
    assert all(getattr(cfg.previous(), k) == v for k, v in LAST_CYCLE_SETTINGS.items())
    went_on = quantization_aware_training(ckpt, cfg, progress=False, start=shorter)
    assert any(not torch.equal(shorter.state_dict[k], whole.state_dict[k]) for k in whole.state_dict)
    if last:  # the brighter patches or the tilt changed the last cycle
        plain = quantization_aware_training(ckpt, dataclasses.replace(cfg, **LAST_CYCLE_SETTINGS), progress=False)
        assert any(not torch.equal(plain.state_dict[k], whole.state_dict[k]) for k in whole.state_dict)
    for k in whole.state_dict:
        torch.testing.assert_close(went_on.state_dict[k], whole.state_dict[k], rtol=0, atol=0)
    assert went_on.extra["quantization"]["fake_quant"] == whole.extra["quantization"]["fake_quant"]
    with pytest.raises(FadError, match="recipe one cycle shorter"):
        quantization_aware_training(ckpt, cfg, progress=False, start=whole)


# ---- TFLite ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("merge, width", [({"group_conv": False}, None), ({"group_width": 8}, 8)])
def test_tflite_int8_with_merged_groups_keeps_parity_and_reports_cost(merge, width, tmp_path, one_thread):
    """Grouped convs written as plain convs (--no-group-conv) or with adjacent groups merged to at
    least 8 channels (--group-width 8; TINY's 16-channel level-2 conv has four groups of 4)."""
    from ai_edge_litert.interpreter import Interpreter

    from fad_deploy.export.tflite import TFLiteOptions, export_tflite, written_conv_cost

    q = calibrated(tiny_checkpoint())
    options = TFLiteOptions((SIZE, SIZE), int8=True, **merge)
    model, info = export_tflite(q, options, "test", {})
    (tmp_path / "m.tflite").write_bytes(model)
    interp = Interpreter(model_path=str(tmp_path / "m.tflite"))
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert {"CONV_2D", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "MUL", "ADD"} <= ops  # pools as depthwise convs
    assert not ops & {"GATHER", "SPLIT", "DEQUANTIZE", "QUANTIZE", "AVERAGE_POOL_2D"}  # native ops, full integer
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    depths = [(tensors[d["inputs"][1]]["shape"][3], tensors[d["inputs"][0]]["shape"][3])
              for d in interp._get_ops_details() if d["op_name"] == "CONV_2D"]  # (filter depth, input channels)
    if width is None:  # plain convs: filter depth == input channels
        assert all(depth == channels for depth, channels in depths)
    else:  # no group narrower than 8 channels, and the 16-channel conv in two groups of 8
        assert all(depth == channels or depth >= width for depth, channels in depths)
        assert (width, 16) in depths
    assert info["input"]["dtype"] == "int8" and info["input"]["quantization"]["scale"] == pytest.approx(
        info["int8_io_grid"]["input"]["scale"], rel=1e-6)
    u = np.random.default_rng(0).uniform(0, 2, (2, 4, SIZE, SIZE)).astype(np.float32)
    runner = TFLiteRunner(tmp_path / "m.tflite", q.anchor, multiple=4)
    with torch.no_grad():
        ref = fake_quant_model(q)(torch.from_numpy(u)).numpy()
    assert psnr(runner.run(u), ref, data_range=float(np.abs(ref).max())) >= 45
    cost = written_conv_cost(q.build(), (SIZE, SIZE), options.written_group_width)
    assert cost["macs_written"] > cost["macs_grouped"] and cost["weights_written"] > cost["weights_grouped"]
    if width is not None:  # fewer written MACs than as plain convs
        assert cost["macs_written"] < written_conv_cost(q.build(), (SIZE, SIZE))["macs_written"]


def exported_ops_and_parity(ckpt: Checkpoint, int8: bool, folder: Path) -> tuple[list[str], float]:
    """The ops of ``ckpt``'s TFLite export (int8: after calibration) and its parity in dB on random input
    with PyTorch: the fake-quant network in int8, the float residual core otherwise."""
    from ai_edge_litert.interpreter import Interpreter

    from fad_deploy.export.tflite import TFLiteOptions, export_tflite

    q = calibrated(ckpt) if int8 else ckpt
    model, _ = export_tflite(q, TFLiteOptions((SIZE, SIZE), int8=int8), "test", {})
    (folder / "m.tflite").write_bytes(model)
    ops = [d["op_name"] for d in Interpreter(model_path=str(folder / "m.tflite"))._get_ops_details()]
    u = np.random.default_rng(0).uniform(0, 2, (2, 4, SIZE, SIZE)).astype(np.float32)
    runner = TFLiteRunner(folder / "m.tflite", q.anchor, multiple=4)
    with torch.no_grad():
        if int8:
            out, ref = runner.run(u), fake_quant_model(q)(torch.from_numpy(u)).numpy()
        else:  # the float file outputs the residual core's output
            out, ref = runner.run_network(u), q.build().eval().residual_padded(torch.from_numpy(u)).numpy()
    return ops, psnr(out, ref, data_range=float(np.abs(ref).max()))


@pytest.mark.parametrize("int8, widths, concats", [(False, TINY["widths"], 0), (True, TINY["widths"], 0),
                                                     (False, [8, 24, 16], 1)])
def test_narrow_shrunk_skips_copied_back_export_as_one_tiled_conv_without_a_concatenation(int8, widths, concats,
                                                                                          tmp_path, one_thread):
    """The skips read 8 channels (6 MACs per copied value when tiled: folded) or 24 (18: kept as copies)."""
    ops, parity = exported_ops_and_parity(tiny_checkpoint(widths=widths), int8, tmp_path)
    assert ops.count("CONCATENATION") == concats
    assert parity >= (45 if int8 else 80)


@pytest.mark.parametrize("int8", [False, True])
def test_sibling_conditioning_convs_export_as_one_conv_with_the_same_outputs(int8, tmp_path, one_thread):
    """Each level's encoder and decoder Feature-Align conditioning convs read the same resized input:
    written as one conv (int8: each scaled onto the wider grid), the file gives the same numbers."""
    from unittest import mock

    from ai_edge_litert.interpreter import Interpreter

    from fad_deploy.export import tf_graph
    from fad_deploy.export.tflite import TFLiteOptions, export_tflite

    q = calibrated(tiny_checkpoint()) if int8 else tiny_checkpoint()
    outputs, convs = [], []
    u = np.random.default_rng(0).uniform(0, 2, (2, 4, SIZE, SIZE)).astype(np.float32)
    for bound in (0, tf_graph.MAX_SIBLING_EXTRA_MACS):  # TINY's readers gain 0.44x the siblings' MACs
        with mock.patch.object(tf_graph, "MAX_SIBLING_EXTRA_MACS", bound):
            model, _ = export_tflite(q, TFLiteOptions((SIZE, SIZE), int8=int8), "test", {})
        path = tmp_path / f"m{bound}.tflite"
        path.write_bytes(model)
        convs.append([d["op_name"] for d in Interpreter(model_path=str(path))._get_ops_details()].count("CONV_2D"))
        outputs.append(TFLiteRunner(path, q.anchor, multiple=4).run_network(u))
    assert convs[1] == convs[0] - 2  # levels 0 and 1 (level 2 has no decoder)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=0 if int8 else 1e-5)
    if not int8:  # and those of the network
        with torch.no_grad():
            ref = q.build().eval().residual_padded(torch.from_numpy(u)).numpy()
        assert psnr(outputs[1], ref, data_range=float(np.abs(ref).max())) >= 80


@pytest.mark.parametrize("k", [3, 5])
def test_a_block_kernel_at_stride_2_then_depth_to_space_is_the_conv(k):
    from fad_deploy.export.tf_graph import block_kernel, depth_to_space_order

    rng = np.random.default_rng(k)
    w = torch.from_numpy(rng.normal(size=(4, 6, k, k)).astype(np.float32))
    x = torch.from_numpy(rng.normal(size=(1, 6, 10, 12)).astype(np.float32))
    blocked = torch.from_numpy(block_kernel(w.numpy()))  # TF's DEPTH_TO_SPACE order: back to torch's shuffle's
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [k // 2] * 4), blocked, stride=2)[:, :, :5, :6]
    y = torch.nn.functional.pixel_shuffle(y[:, np.argsort(depth_to_space_order(4, 2))], 2)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, padding=k // 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("int8", [False, True])
def test_the_head_exports_on_2x2_blocks_with_the_same_outputs(int8, tmp_path, one_thread):
    """The 3x3 head to the 4 RAW planes is written as a 4x4 stride-2 conv to 16 channels and a
    DEPTH_TO_SPACE: the same numbers (int8: the same integers) as the conv written as it is."""
    from unittest import mock

    from ai_edge_litert.interpreter import Interpreter

    from fad_deploy.export import tf_graph
    from fad_deploy.export.tflite import TFLiteOptions, export_tflite

    q = calibrated(tiny_checkpoint()) if int8 else tiny_checkpoint()
    outputs, ops = [], []
    u = np.random.default_rng(0).uniform(0, 2, (2, 4, SIZE, SIZE)).astype(np.float32)
    for bound in (0, tf_graph.MAX_BLOCKED_OUT_CHANNELS):
        with mock.patch.object(tf_graph, "MAX_BLOCKED_OUT_CHANNELS", bound):
            model, _ = export_tflite(q, TFLiteOptions((SIZE, SIZE), int8=int8), "test", {})
        path = tmp_path / f"m{bound}.tflite"
        path.write_bytes(model)
        interp = Interpreter(model_path=str(path))
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
        ops.append([(d["op_name"], tuple(tensors[d["inputs"][1]]["shape"]) if d["op_name"] == "CONV_2D" else None)
                    for d in interp._get_ops_details()])
        outputs.append(TFLiteRunner(path, q.anchor, multiple=4).run_network(u))
    assert ops[0][-1] == ("CONV_2D", (4, 3, 3, 8))  # OHWI: 3x3 from TINY's 8 channels to 4
    assert ops[1][-2:] == [("CONV_2D", (16, 4, 4, 8)), ("DEPTH_TO_SPACE", None)]
    assert ops[1][:-2] == ops[0][:-1]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=0 if int8 else 1e-5)


@pytest.mark.parametrize("int8", [False, True])
def test_separable_head_and_1x1_shared_conditioning_export_with_parity(int8, tmp_path, one_thread):
    ckpt = tiny_checkpoint(head_depthwise=True, align_kernel=[1, 3, 3], align_hidden=[4, 8, 8],
                           shared_align=[True, False, True])  # level 1's decoder Feature-Align has its own
    ops, parity = exported_ops_and_parity(ckpt, int8, tmp_path)
    assert ops[-2:] == ["DEPTHWISE_CONV_2D", "CONV_2D"]  # the head: depthwise 3x3, then 1x1 to 4 channels
    assert parity >= (45 if int8 else 80)


def test_int16_export_is_the_int8_qat_network_16x8_on_every_op(workdir, tmp_path, monkeypatch, one_thread, caplog):
    from ai_edge_litert.interpreter import Interpreter

    from fad_deploy.export.manifest import FILE_SUFFIX
    from fad_deploy.nsma.array import file_backend
    from fad_deploy.quant.int16 import INT16_BACKEND, Int16Runner
    from fad_deploy.runners.tiling import tile_spec, tiled_run

    monkeypatch.setenv("FAD_CACHE", str(workdir))  # QAT and the converter's calibration use the tiny patch cache
    out = tmp_path / "int16"
    export_main([str(workdir / "tiny.pt"), "--int8", "--activations", "int16", "--out", str(out),
                 "--input-size", "64", "64", "--qat-steps", "2", "--qat-input", "sqrt", "--qat-adapt-steps", "2",
                 "--threads", "1", "--max-drop", "100", "--max-level-drop", "100"])
    assert not [r for r in caplog.records if r.name == "absl"]  # the converter's Python warnings stay off normal runs
    entry = json.loads((out / "manifest.json").read_text())["models"][0]
    assert set(entry["files"]) == {"torch-int8", "tflite-fp32", "tflite-int16"}
    assert entry["quantization"]["method"] == "16x8 from int8 QAT" and entry["quantization"]["int8"] == "qat"
    # the residual goes onto the float input; the network takes the QAT's square-root input map
    assert entry["residual_base"]["int16"] == "input" and entry["residual_base"]["input_grid"] == {"input_map": "sqrt"}
    record = entry["files"]["tflite-int16"]
    assert record["input"]["dtype"] == record["output"]["dtype"] == "int16"
    assert record["resizable_to_multiples_of"] is None  # constant reshapes: its export size only
    row = next(r for r in entry["validation"] if r["backend"] == "tflite-int16")
    assert row["reference"] == INT16_BACKEND and row["parity_db"] >= 45 and row["ok"]
    interp = Interpreter(model_path=str(out / record["file"]))
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert "DEPTH_TO_SPACE" not in ops and {"TRANSPOSE", "RESHAPE", "CONV_2D", "MUL"} <= ops  # pixel shuffle moved
    assert {"MINIMUM", "MAXIMUM"} <= ops and "DEQUANTIZE" not in ops  # the learned ranges as clamps, no float island
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    for d in interp._get_ops_details():
        assert all(tensors[i]["dtype"] == np.int16 for i in d["outputs"]), d["op_name"]
        if d["op_name"] == "CONV_2D":
            assert tensors[d["inputs"][1]]["dtype"] == np.int8  # weights
    assert [file_backend(f"m{FILE_SUFFIX[b]}") for b in ("tflite-int16", "tflite-int8", "onnx-fp32")] == [
        "tflite-int16", "tflite-int8", "onnx-fp32"]  # what fad-denoise runs on a bundle by default
    # A frame of another size runs in tiles of the export size, matching the PyTorch 16x8 network.
    runner = load_runner("tflite-int16", out, threads=1)
    u = np.random.default_rng(0).uniform(0, 2, (1, 4, 40, 72)).astype(np.float32)
    with pytest.raises(FadError, match="takes 64x64 inputs, got 40x72"):
        runner.run(u)
    reference = Int16Runner(load_checkpoint(out / entry["files"]["torch-int8"]["file"]))
    ref = reference.run(np.pad(u, ((0, 0), (0, 0), (0, 24), (0, 0)), mode="edge"))[..., :40, :]
    out16 = tiled_run(runner, u, tile_spec(tiny_checkpoint().build()))  # padded to 64x72: two overlapping tiles
    assert psnr(out16, ref, data_range=float(ref.max() - ref.min())) >= 40


def test_int16_network_keeps_the_qat_ranges_as_clamps_and_drops_the_input_quantizer(workdir, monkeypatch):
    from torch.ao.quantization import FakeQuantize

    from fad_deploy.quant.int16 import Clamp, int16_core
    from fad_deploy.quant.qat import fake_quant_core, grid, io_quantizers

    monkeypatch.setenv("FAD_CACHE", str(workdir))
    q = quantization_aware_training(tiny_checkpoint(), QATConfig(steps=2, batch=2, observe_steps=1, crop=32),
                                    progress=False)
    int8, _ = fake_quant_core(single_checkpoint(q))  # the 16x8 network takes one input (the split is int8's)
    core, _ = int16_core(q)
    fq_in = io_quantizers(int8)[0]
    ranges = {n: (grid(m)["min"], grid(m)["max"]) for n, m in int8.named_modules(remove_duplicate=False)
              if isinstance(m, FakeQuantize) and "weight" not in n and m is not fq_in}
    clamps = {n: (m.lo, m.hi) for n, m in core.named_modules(remove_duplicate=False) if isinstance(m, Clamp)}
    assert clamps == ranges  # every activation quantizer but the input's
    assert not [m for n, m in core.named_modules() if isinstance(m, FakeQuantize) and "weight" not in n]
    top = float(grid(fq_in)["max"])
    x = torch.rand(1, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * top
    with torch.no_grad():
        y16, y8 = core(x).numpy(), int8(x).numpy()
        assert psnr(y8, y16, data_range=float(y16.max() - y16.min())) >= 25  # the same network, int8 rounding aside
        bright = x * 3  # beyond the int8 input range: the 16x8 network's input is not clipped
        assert not torch.equal(core(bright), core(bright.clamp(max=top)))


def test_tflite_runner_resizes_to_multiples_and_refuses_other_sizes(exported, one_thread):
    runner = load_runner("tflite-int8", exported, threads=1)
    assert runner.input_size == (SIZE, SIZE)
    assert runner.run(np.ones((1, 4, 16, 24), np.float32)).shape == (1, 4, 16, 24)
    with pytest.raises(FadError, match="tile the image"):
        runner.run(np.ones((1, 4, 30, 30), np.float32))


def test_square_root_input_exports_keep_parity_with_pytorch(tmp_path, one_thread):
    from fad_deploy.export.onnx import export_onnx
    from fad_deploy.export.tflite import TFLiteOptions, export_tflite
    from fad_deploy.runners.onnx_runner import OnnxRunner

    ckpt = tiny_checkpoint()
    net = ckpt.build()
    gm = prepare(net)
    torch.manual_seed(1)
    for _ in range(4):
        gm(torch.rand(2, 4, SIZE, SIZE) * 1.5)  # sqrt of inputs up to ~2
    q = quantized_checkpoint(ckpt, freeze(gm), net, "test", {}, base="quantized", input_map="sqrt")
    reference = FakeQuantRunner(q)
    u = np.random.default_rng(5).uniform(-0.1, 2, (2, 4, SIZE, SIZE)).astype(np.float32)
    expected = reference.run(u)
    model, _ = export_tflite(q, TFLiteOptions((SIZE, SIZE), int8=True), "test", {})
    (tmp_path / "m.tflite").write_bytes(model)
    (tmp_path / "m.onnx").write_bytes(export_onnx(q, True, {})[0])
    g = reference.base_grid
    for runner in (TFLiteRunner(tmp_path / "m.tflite", q.anchor, multiple=4, residual=True, base_grid=g),
                   OnnxRunner(tmp_path / "m.onnx", q.anchor, threads=1, residual=True, base_grid=g)):
        assert psnr(runner.run(u), expected, data_range=float(np.ptp(expected))) >= 45, runner


def test_exports_output_the_residual_and_every_backend_returns_the_denoised_output(exported, one_thread):
    u = np.random.default_rng(2).uniform(0, 2, (1, 4, SIZE, SIZE)).astype(np.float32)
    fp32 = load_checkpoint(exported.parent / "tiny.pt")
    torch_fp32 = load_runner("torch", exported.parent / "tiny.pt")
    fake_quant = load_runner("torch", exported / "tiny.int8.pt")
    assert not torch_fp32.residual and fake_quant.residual  # the fake-quant core is the residual core
    with torch.no_grad():
        net = fp32.build()
        torch.testing.assert_close(net.forward_padded(torch.from_numpy(u)),
                                   torch.from_numpy(u) + net.residual_padded(torch.from_numpy(u)))
    peak = float(np.ptp(torch_fp32.run(u)))
    assert fake_quant.base_grid is not None  # the recipe adds the residual to the quantized input
    for backend, reference, bound in (("tflite-int8", fake_quant, 45), ("onnx-int8", fake_quant, 45),
                                      ("tflite-fp32", torch_fp32, 60), ("onnx-fp32", torch_fp32, 60)):
        runner = load_runner(backend, exported, threads=1)
        assert runner.base_grid == (fake_quant.base_grid if backend.endswith("int8") else None), backend
        base = quantized_base(u, runner.base_grid) if runner.base_grid else u
        residual, expected = runner.run_network(int8_input(u, runner.base_grid)), reference.run(u)
        assert runner.residual and psnr(residual, expected - base, data_range=peak) >= bound, backend  # the file's output
        np.testing.assert_allclose(runner.run(u), base + residual, atol=1e-6)  # the base class adds the base
        assert psnr(runner.run(u), expected, data_range=peak) >= bound, backend


# ---- ONNX ------------------------------------------------------------------------------------------------

def test_onnx_exports_take_any_size_and_match_pytorch(exported, one_thread):
    import onnx

    q = load_checkpoint(exported / "tiny.int8.pt")
    u = np.random.default_rng(1).uniform(0, 2, (2, 4, 30, 37)).astype(np.float32)  # not a multiple of 4
    ref_int8 = FakeQuantRunner(q).run(u)  # denoised: input + the fake-quant residual
    with torch.no_grad():
        ref_fp32 = load_checkpoint(exported.parent / "tiny.pt").build()(torch.from_numpy(u)).numpy()
    fp32 = load_runner("onnx-fp32", exported / "tiny.fp32.onnx", threads=1)
    int8 = load_runner("onnx-int8", exported, threads=1)
    assert fp32.input_size is None and int8.input_size is None
    peak = float(np.abs(ref_fp32).max())
    assert psnr(fp32.run(u), ref_fp32, data_range=peak) >= 60
    assert psnr(int8.run(u), ref_int8, data_range=peak) >= 45
    model = onnx.load(exported / "tiny.int8.onnx")
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "DepthToSpace"} <= ops
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    assert model.opset_import[0].version == 17


# ---- the export folder -------------------------------------------------------------------------------------

def test_manifest_lists_files_preprocessing_and_passing_validation(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    (entry,) = manifest["models"]
    assert set(entry["files"]) == {"torch-int8", "tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"}
    for rec in entry["files"].values():
        data = (exported / rec["file"]).read_bytes()
        assert rec["bytes"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
    tfl = entry["files"]["tflite-int8"]
    # the recipe splits the int8 input: 8 channels in, the 4 planes of the residual out
    assert tfl["input"]["shape"] == [1, SIZE, SIZE, 8] and tfl["input"]["layout"] == "NHWC"
    assert tfl["output"]["shape"] == [1, SIZE, SIZE, 4]
    assert tfl["input"]["dtype"] == "int8" and tfl["dynamic_hw"] is False
    assert entry["files"]["onnx-int8"]["dynamic_hw"] is True and entry["files"]["onnx-int8"]["opset"] == 17
    pre = entry["preprocessing"]
    assert pre["cfa"] == "RGGB" and "black_level" in pre["normalisation"]
    ckpt = load_checkpoint(exported.parent / "tiny.pt")
    assert pre["anchor"]["shot"] == pytest.approx(ckpt.anchor.shot)
    assert pre["valid_noise"]["shot_min"] == pytest.approx(1e-4) and "k_sigma_forward" in pre
    pairs, described = validation_set(ckpt.shot_range, crops=1)  # --val-crops 1
    assert entry["validation_set"] == {"set": described, "patches": len(pairs["noisy"]), "size": VALIDATION_CROP,
                                       "levels": VALIDATION_LEVELS}
    rows = {r["backend"]: r for r in entry["validation"]}
    assert rows["tflite-int8"]["parity_db"] >= 45 and rows["onnx-int8"]["parity_db"] >= 45
    assert rows["tflite-fp32"]["parity_db"] >= 60 and rows["onnx-fp32"]["parity_db"] >= 60
    assert all(r["ok"] for r in rows.values()) and manifest["validation"]["passed"] is True
    assert entry["output"] == "residual" and "denoised = base + output" in pre["output"]
    base = entry["residual_base"]  # a phone adds the int8 residual to the quantized input: the file's own grid
    quant = entry["files"]["tflite-int8"]["input"]["quantization"]
    assert base["int8"] == "quantized input" and "round(x / scale) + zero_point" in base["rule"]
    assert (base["input_grid"]["scale"], base["input_grid"]["zero_point"]) == pytest.approx(
        (quant["scale"], quant["zero_point"]))
    assert base["input_grid"]["split"] == QATConfig().input_split and "floor((x - min) / scale)" in base["rule"]
    report = (exported / "report.md").read_text()
    assert "| tiny | tflite-int8 | tiny.int8.tflite |" in report and "per shot-noise level" in report
    assert not list(exported.parent.glob(".*staging*"))


def test_tflite_metadata_names_tensors_and_preprocessing(exported):
    from tensorflow_lite_support.metadata.python.metadata import MetadataDisplayer

    meta = json.loads(MetadataDisplayer.with_model_buffer((exported / "tiny.int8.tflite").read_bytes())
                      .get_metadata_json())
    graph = meta["subgraph_metadata"][0]
    assert [t["name"] for t in graph["input_tensor_metadata"]] == ["noisy"]
    assert [t["name"] for t in graph["output_tensor_metadata"]] == ["residual"]
    assert "RGGB" in graph["input_tensor_metadata"][0]["description"]
    description = json.loads(meta["description"])
    assert description["preprocessing"]["cfa"] == "RGGB" and "k_sigma_forward" in description["preprocessing"]
    assert meta["version"].startswith("tiny (fad-deploy")
    from ai_edge_litert.interpreter import Interpreter  # phones' signature runners find the tensors by these names

    for f in ("tiny.int8.tflite", "tiny.fp32.tflite"):
        signatures = Interpreter(model_path=str(exported / f)).get_signature_list()
        assert signatures == {"serving_default": {"inputs": ["noisy"], "outputs": ["residual"]}}, f


def test_zero_points_are_stored_once_and_outputs_stay_bit_identical(exported):
    import flatbuffers
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema

    from fad_deploy.export.tflite import share_zero_points

    shared = (exported / "tiny.int8.tflite").read_bytes()
    # Unshared: the same model packed by the stock flatbuffers builder.
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(shared, 0))
    builder = flatbuffers.Builder(len(shared))
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    unshared = bytes(builder.Output())
    channels = sum(len(t.quantization.zeroPoint) for t in tree.subgraphs[0].tensors
                   if t.quantization is not None and t.quantization.zeroPoint is not None)
    assert len(unshared) - len(shared) > 8 * channels * 0.8
    assert share_zero_points(unshared) == shared

    def run(model):
        it = Interpreter(model_content=model)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        it.set_tensor(i["index"], np.random.default_rng(0).integers(-128, 128, i["shape"]).astype(i["dtype"]))
        it.invoke()
        return it.get_tensor(o["index"])
    np.testing.assert_array_equal(run(shared), run(unshared))


def test_reexport_is_byte_identical_in_place_and_into_a_new_folder(exported, workdir, tmp_path, monkeypatch):
    """In place the int8 checkpoint is reused; a new folder runs QAT again: every file,
    manifest and report included, comes out the same (no timings or paths in artifacts)."""
    monkeypatch.setenv("FAD_CACHE", str(workdir))
    before = digests(exported)
    export_main([str(workdir / "tiny.pt"), "--int8", "--target", "all", "--out", str(exported), *RUN])
    assert digests(exported) == before
    export_main([str(workdir / "tiny.pt"), "--int8", "--target", "all", "--out", str(tmp_path / "again"), *RUN])
    assert digests(tmp_path / "again") == before


def test_a_reexport_replaces_the_old_bundle_whole_keeping_the_users_files(exported, workdir, tmp_path, monkeypatch):
    """Files of the old bundle that the new one lacks go (here the ONNX files of a --target all export
    redone for TFLite), a file the user put in the folder stays, and no staging or old folder is left."""
    monkeypatch.setenv("FAD_CACHE", str(workdir))
    out = tmp_path / "bundle"
    shutil.copytree(exported, out)
    (out / "notes.txt").write_text("mine")
    export_main([str(workdir / "tiny.pt"), "--int8", "--target", "tflite", "--out", str(out), *RUN])
    names = sorted(p.name for p in out.iterdir())
    assert "notes.txt" in names and not any(n.endswith(".onnx") for n in names) and "tiny.int8.tflite" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_bundle_file_changed_after_the_export_is_refused_on_loading(exported, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(exported, out)
    data = bytearray((out / "tiny.int8.tflite").read_bytes())
    data[-1] ^= 1
    (out / "tiny.int8.tflite").write_bytes(bytes(data))
    with pytest.raises(FadError, match=r"tiny.int8.tflite: not the file manifest.json lists \(its sha256 differs\)"):
        load_runner("tflite-int8", out, threads=1)
    with pytest.raises(FadError, match="its sha256 differs"):
        load_runner("tflite-int8", out / "tiny.int8.tflite", threads=1)


def test_a_second_export_into_the_same_folder_at_once_is_refused(workdir, tmp_path, capsys):
    from fad_deploy.fileio import sole_writer

    out = tmp_path / "bundle"
    with sole_writer(out, "fad-export"):  # as another fad-export holds it while it runs
        with pytest.raises(SystemExit) as e:
            export_main([str(workdir / "tiny.pt"), "--int8", "--out", str(out), *RUN])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"{out}: another process (fad-export, pid {os.getpid()}) is "
                                                    "writing it now; wait for it to end")
    assert list(tmp_path.iterdir()) == []  # the lock goes with its holder


def test_converter_temp_files_live_in_a_folder_of_their_own(tmp_path, monkeypatch):
    """A full temporary folder had ended fad-export in TensorFlow's traceback and left a file there."""
    import tempfile

    from fad_deploy.export.tflite import converter_temp_files, quiet_tensorflow

    tf = quiet_tensorflow()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(FadError, match=f"{tmp_path}: no room for the TFLite converter's temporary files"):
        with converter_temp_files(tf):
            assert Path(tempfile.gettempdir()).parent == tmp_path  # a folder of their own inside it
            Path(tempfile.mkstemp()[1]).write_bytes(b"part of a model")
            raise tf.errors.ResourceExhaustedError(None, None, "/tmp/x; No space left on device")
    assert list(tmp_path.iterdir()) == [] and tempfile.tempdir == str(tmp_path)
    with pytest.raises(tf.errors.ResourceExhaustedError):  # out of memory: not the folder's
        with converter_temp_files(tf):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")


def test_a_full_temporary_folder_leaves_no_stray_traceback_from_the_metadata_writer(exported, monkeypatch):
    """tflite-support's populator had printed 'Exception ignored in ... __del__' after our one-line error."""
    import gc
    import sys

    from tensorflow_lite_support.metadata.python import metadata

    from fad_deploy.export.tflite import add_metadata, converter_temp_files, quiet_tensorflow

    tf = quiet_tensorflow()
    model = next(exported.glob("*.int8.tflite")).read_bytes()

    def full(*_):
        raise tf.errors.ResourceExhaustedError(None, None, "/tmp/x; No space left on device")

    unraisable = []
    monkeypatch.setattr(metadata, "_open_file", full)
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(FadError, match="no room for the TFLite converter's temporary files"):
        with converter_temp_files(tf):
            add_metadata(model, "tiny", "1", {}, None)
    gc.collect()
    assert unraisable == []


def test_an_export_into_the_current_folder_is_refused(workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        export_main([str(workdir / "tiny.pt"), "--int8", "--out", ".", *RUN])
    assert e.value.code == 2 and "is or holds the current folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failed_validation_publishes_nothing(workdir, tmp_path, one_thread):
    from fad_deploy.export.bundle import ExportOptions, export_bundle
    from fad_deploy.export.validate import Thresholds

    options = ExportOptions(targets=("onnx",), int8=False, thresholds=Thresholds(parity_float_db=1e9), **FAST)
    with pytest.raises(FadError, match="validation failed, nothing written"):
        export_bundle([("tiny", workdir / "tiny.pt")], options, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_an_int8_drop_above_the_bounds_is_refused_and_nothing_written(exported, tmp_path, one_thread):
    """The int8 drop gate (mean and per level): the reused int8 checkpoint of the export
    above, held to bounds below its measured drop, is refused with the numbers."""
    from fad_deploy.export.bundle import ExportOptions, ExportRefused, export_bundle
    from fad_deploy.export.validate import Thresholds

    source = tmp_path / "tiny.int8.pt"
    source.write_bytes((exported / "tiny.int8.pt").read_bytes())
    options = ExportOptions(thresholds=Thresholds(max_drop_db=-1e3, max_level_drop_db=-1e3), **FAST,
                            tflite=dataclasses.replace(ExportOptions().tflite, input_size=(SIZE, SIZE)))
    with pytest.raises(ExportRefused, match="validation failed, nothing written .*tiny tflite-int8: PSNR drop "
                                            r"-?[0-9.]+ dB > -1000.0 dB; PSNR drop -?[0-9.]+ dB at a=[0-9.e-]+ > -1000"):
        export_bundle([("tiny", source)], options, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.int8.pt"]


def test_a_drop_just_above_the_bound_reads_as_above_it():
    """A refusal never reads "0.100 dB > 0.1 dB": the drop gets the decimals that show it."""
    from fad_deploy.export.validate import Thresholds, drop_failures

    bounds = Thresholds(max_drop_db=0.1, max_level_drop_db=0.2)
    failed = drop_failures(0.10041, {"0.001": 0.2000004, "0.002": 0.05}, bounds)
    assert failed == ["PSNR drop 0.1004 dB > 0.1 dB", "PSNR drop 0.2000004 dB at a=0.001 > 0.2 dB"]
    assert drop_failures(0.1, {"0.001": 0.2}, bounds) == []


def test_default_export_bundles_the_subrange_array_and_converts_shipped_int8_checkpoints(
        workdir, tmp_path, monkeypatch, capsys, one_thread):
    """No MODEL + a shipped array: one bundle, each sub-range model with its own QAT on its
    own noise and its own validation set. int8 checkpoints shipped beside the float ones
    with the same recipe are converted without QAT, into the same bytes; given no QAT
    settings, so is one made by another recipe (each model's own), and its recipe is kept."""
    import fad_deploy.export.bundle as bundle
    from fad_deploy.android.bundle import load_bundle
    from fad_deploy.nsma.array import load_array
    from fad_deploy.nsma.manifest import write_manifest
    from fad_deploy.nsma.partition import subranges

    monkeypatch.setenv("FAD_CACHE", str(workdir))
    monkeypatch.setenv("FAD_MODELS", str(tmp_path / "models"))
    ranges = subranges(2)
    shipped = tmp_path / "models" / "nsma"
    for i, shot_range in enumerate(ranges):
        ckpt = dataclasses.replace(tiny_checkpoint(), name=f"fan-nsma-{i}", shot_range=shot_range)
        ckpt.save(shipped / f"fan-nsma-{i}.pt")
    write_manifest(shipped)
    out = tmp_path / "bundle"
    export_main(["--int8", "--out", str(out), *RUN])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["passed"] is True and "PASSED" in (out / "report.md").read_text()
    for i in range(2):  # ship them beside the float checkpoints
        (shipped / f"fan-nsma-{i}.int8.pt").write_bytes((out / f"fan-nsma-{i}.int8.pt").read_bytes())

    def no_qat(*args, **kwargs):
        raise AssertionError("QAT ran although shipped int8 checkpoints match the recipe")

    monkeypatch.setattr(bundle, "quantization_aware_training", no_qat)
    export_main(["--int8", "--out", str(tmp_path / "converted"), *RUN])  # converts the shipped ones
    assert digests(tmp_path / "converted") == digests(out)
    as_is = [a for a in RUN if a not in ("--qat-steps", "2")]  # the default recipe differs: 2 steps made them
    export_main(["--int8", "--out", str(tmp_path / "as-is"), *as_is])
    assert digests(tmp_path / "as-is") == digests(out)
    with pytest.raises(AssertionError, match="QAT ran"):  # a recipe asked for and not shipped: a new QAT
        export_main(["--int8", "--out", str(tmp_path / "other"), *RUN[:3], "--qat-steps", "3", *RUN[5:], "--jobs", "1"])
    assert [(s["name"], s["file"]) for s in manifest["subranges"]] == [
        ("fan-nsma-0", "fan-nsma-0.int8.tflite"), ("fan-nsma-1", "fan-nsma-1.int8.tflite")]
    assert [(s["shot_min"], s["shot_max"]) for s in manifest["subranges"]] == [pytest.approx(r) for r in ranges]
    assert "selection_rule" in manifest
    scales = []
    for sub, entry, shot_range in zip(manifest["subranges"], manifest["models"], ranges):
        assert (out / sub["file"]).is_file() and entry["name"] == sub["name"]
        assert entry["shot_range"] == pytest.approx(shot_range)
        assert f"[{shot_range[0]:.3g}, {shot_range[1]:.3g}]" in entry["validation_set"]["set"]  # its own noise
        runner = load_runner("tflite-int8", out, threads=1, model=sub["name"])
        scales.append(runner.interpreter.get_input_details()[0]["quantization"][0])
        own = load_checkpoint(shipped / f"{sub['name']}.pt").anchor  # each model's own k-sigma anchor
        assert entry["preprocessing"]["anchor"] == pytest.approx({"shot": own.shot, "read": own.read})
        assert runner.anchor == pytest.approx(own) and own.shot == pytest.approx(np.sqrt(np.prod(shot_range)))
    assert scales[0] != scales[1]  # each model's own QAT input range
    array = load_array(out)
    assert array.backend == "tflite-int8" and array.select(ranges[1][0] * 1.5).entry.name == "fan-nsma-1"
    assert [m.name for m in load_bundle(out, noise_a=ranges[0][0] * 1.5)] == ["fan-nsma-0"]
    from fad_deploy.nsma.select import ShotOutOfRangeWarning

    capsys.readouterr()
    with pytest.warns(ShotOutOfRangeWarning):  # said once, as a warning, not printed again
        assert [m.name for m in load_bundle(out, noise_a=0.5)] == [manifest["models"][-1]["name"]]
    assert "every sub-range" not in capsys.readouterr().err


def test_an_interrupted_export_keeps_finished_qat_and_the_rerun_goes_on(workdir, tmp_path, monkeypatch, one_thread):
    import fad_deploy.export.bundle as bundle

    monkeypatch.setenv("FAD_CACHE", str(workdir))
    for name in ("a", "b"):
        (tmp_path / f"{name}.pt").write_bytes((workdir / "tiny.pt").read_bytes())
    real, calls = bundle.quantization_aware_training, []

    def counted(ckpt, *args, **kwargs):
        calls.append(ckpt.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(ckpt, *args, **kwargs)

    monkeypatch.setattr(bundle, "quantization_aware_training", counted)
    options = bundle.ExportOptions(**FAST, qat=QATConfig(steps=2, batch=2),
                                   tflite=dataclasses.replace(bundle.ExportOptions().tflite, input_size=(SIZE, SIZE)),
                                   thresholds=bundle.Thresholds(max_drop_db=100, max_level_drop_db=100))
    models = [("a", tmp_path / "a.pt"), ("b", tmp_path / "b.pt")]
    with pytest.raises(KeyboardInterrupt) as e:
        bundle.export_bundle(models, options, tmp_path / "out")
    assert e.value.__notes__ == [bundle.QAT_RESUME_NOTE] and "the same command resumes the QAT" in e.value.__notes__[0]
    assert not (tmp_path / "out").exists() and (tmp_path / ".out.a.int8.pt").is_file()
    bundle.export_bundle(models, options, tmp_path / "out")
    assert calls == ["tiny", "tiny", "tiny"]  # a's QAT once, b's interrupted and then done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt", "out"]


def test_side_by_side_qats_make_the_same_files_as_one_after_another(workdir, tmp_path, monkeypatch, one_thread):
    """--jobs: each model's QAT in its own process (one thread each here, as in this process)
    gives the bytes the sequential export gives; the summary still has each QAT's time."""
    import fad_deploy.export.bundle as bundle

    monkeypatch.setenv("FAD_CACHE", str(workdir))
    models = []
    for name, shot_range in (("low", (1e-4, 1e-3)), ("high", (1e-3, 1.2e-2))):
        dataclasses.replace(load_checkpoint(workdir / "tiny.pt"), name=name, shot_range=shot_range).save(
            tmp_path / f"{name}.pt")
        models.append((name, tmp_path / f"{name}.pt"))
    options = bundle.ExportOptions(**FAST, qat=QATConfig(steps=3, batch=2, observe_steps=1), threads=1,
                                   tflite=dataclasses.replace(bundle.ExportOptions().tflite, input_size=(SIZE, SIZE)),
                                   thresholds=bundle.Thresholds(max_drop_db=100, max_level_drop_db=100))
    _, sequential_s = bundle.export_bundle(models, options, tmp_path / "one-by-one")
    _, side_by_side_s = bundle.export_bundle(models, dataclasses.replace(options, jobs=2), tmp_path / "side-by-side")
    assert digests(tmp_path / "one-by-one") == digests(tmp_path / "side-by-side")
    assert set(sequential_s) == set(side_by_side_s) == {"low", "high"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["high.pt", "low.pt", "one-by-one", "side-by-side"]


# ---- user errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["no-such-model", "--int8"], "unknown model 'no-such-model'"),
    (["{tmp}/missing.pt", "--int8"], "missing.pt: checkpoint not found"),
    (["{tmp}/corrupt.pt", "--int8"], "corrupt.pt: not a readable fad-deploy checkpoint"),
    (["{tiny}", "--int8", "--target", "coreml"], "argument --target: invalid choice: 'coreml'"),
    (["{tiny}", "--int8", "--input-size", "30", "30"], "input size 30x30: TFLite inputs must be positive multiples of 4"),
    (["{tiny}", "--int8", "--input-size", "0", "32"], "argument --input-size: expected a whole number in [1, 4096]"),
    (["{tiny}", "--int8", "--input-size", "100000", "32"], "argument --input-size: expected a whole number in [1, 4096]"),
    (["{tiny}", "--int8", "--jobs", "0"], "argument --jobs: expected a whole number >= 1"),
    (["{tiny}", "--int8", "--jobs", "2"], "--jobs 2 runs the QATs of an array's models side by side: one model has"),
    (["{tiny}", "--ptq"], "--ptq: for quantized models: add --int8"),
    (["{tiny}", "--activations", "int16", "--qat-input", "sqrt"], "--activations, --qat-input: for quantized models"),
    (["{tiny}", "--qat-steps", "5", "--max-drop", "1", "--jobs", "2"],  # (each one did nothing before)
     "--qat-steps, --max-drop, --jobs: for quantized models: add --int8"),
    (["{tiny}", "--int8", "--qat-input", "cube"], "argument --qat-input: invalid choice: 'cube'"),
    (["{tiny}", "--int8", "--qat-adapt-steps", "5"], "--qat-adapt-steps adapts the network to --qat-input sqrt"),
    (["{tiny}", "--int8", "--qat-input", "sqrt", "--qat-adapt-steps", "0"],
     "argument --qat-adapt-steps: expected a whole number >= 1"),
    (["{tiny}", "--int8", "--qat-input", "sqrt", "--ptq"],
     "--qat-input: for int8 QAT, which --ptq replaces by calibration: drop one"),
    (["{tiny}", "--int8", "--ptq", "--qat-steps", "5"], "--qat-steps: for int8 QAT, which --ptq replaces by calibration"),
    (["{tiny}", "--val-crops", "100000"], "a set of 3000000 pairs of 4x64x64 (5 photos x 100000 crops x 6 noise levels) "
     "would take 732.4 GiB"),
    (["{tiny}", "--int8", "--qat", "--ptq"], "--qat and --ptq are two ways to quantize: give one"),
    (["{tiny}", "--int8", "--activations", "int16", "--qat-input-split", "4"], "a 16x8 file takes one int16 input"),
    (["{tiny}", "--int8", "--activations", "int16", "--target", "onnx"], "it takes --target tflite"),
    (["{tiny}", "--int8", "--activations", "int16", "--ptq"], "it takes --target tflite, and not --ptq"),
    (["{tiny}", "--int8", "--activations", "int16", "--input-size", "32", "32"],
     "int16 models run their input size only: --input-size 32x32 must be at least the 64x64 validation patches"),
    (["{tiny}", "--int8", "--activations", "int32"], "argument --activations: invalid choice: 'int32'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, workdir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAD_MODELS", str(tmp_path))
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    args = [a.format(tmp=tmp_path, tiny=workdir / "tiny.pt") for a in args]
    with pytest.raises(SystemExit) as e:
        export_main([*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_default_model_missing_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAD_MODELS", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        export_main(["--int8"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "fan-student.pt does not exist yet" in err
