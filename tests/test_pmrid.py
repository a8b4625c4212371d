"""The PMRID-architecture baseline: its architecture facts (stages, separable convs, about
1.0 M parameters and 3.96 GMACs per RAW megapixel), and its exports (depthwise convs as
DEPTHWISE_CONV_2D with PyTorch's int8 scales, TFLite parity with PyTorch)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from fad_deploy.isp.metrics import psnr
from fad_deploy.models.registry import build
from fad_deploy.profile.baseline import architecture_checkpoint, calibrate_on_random
from fad_deploy.profile.macs import count_macs
from fad_deploy.quant.qat import fake_quant_model
from fad_deploy.runners.tflite_runner import TFLiteRunner

PMRID_PARAMS = 1.0e6  # facts: about 1.0 M parameters
PMRID_GMACS_PER_MP = 3.96  # facts: 3.96 GMACs per RAW megapixel (4x512x512 packed)
SIZE = 32  # packed; the network's padding multiple is 16
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported():
    """fp32 and int8 TFLite files of the PMRID architecture (initial weights; int8 ranges
    calibrated on random inputs) at a small size, with their PyTorch references."""
    from fad_deploy.export.tflite import TFLiteOptions, export_tflite

    ckpt = architecture_checkpoint("pmrid")
    q = calibrate_on_random(ckpt)
    files = {int8: export_tflite(c, TFLiteOptions((SIZE, SIZE), int8=int8), "test", {})[0]
             for int8, c in ((False, ckpt), (True, q))}
    return ckpt, q, files


def test_params_and_macs_match_the_facts():
    net = build("pmrid")
    report = count_macs(net)
    assert abs(report.params - PMRID_PARAMS) <= 0.05 * PMRID_PARAMS
    assert report.gmacs_per_megapixel == pytest.approx(PMRID_GMACS_PER_MP, rel=0.01)
    conv_macs = 0  # an independent count: output elements x fan-in of every conv

    def hook(mod, _inp, out):
        nonlocal conv_macs
        conv_macs += out.numel() * mod.weight[0].numel()

    net = net.to("meta")
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    net(torch.zeros(1, 4, 512, 512, device="meta"))
    assert report.macs_by_kind()["conv"] == conv_macs


def test_encoder_stages_halve_the_resolution_with_separable_5x5_convs():
    net = build("pmrid").eval()
    shapes = []
    hooks = [stage.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape))) for stage in net.enc]
    with torch.no_grad():
        y = net(torch.rand(1, 4, 64, 48))
    for h in hooks:
        h.remove()
    assert y.shape == (1, 4, 64, 48)
    assert shapes == [(1, 64, 32, 24), (1, 128, 16, 12), (1, 256, 8, 6), (1, 512, 4, 3)]
    depthwise = [m for m in net.enc.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert depthwise and {m.kernel_size for m in depthwise} == {(5, 5), (3, 3)}  # 3x3: strided shortcuts
    assert all(m.bias is None for m in depthwise)
    assert [len(stage) for stage in net.enc] == [2, 2, 4, 4]


def test_tflite_exports_depthwise_convs_and_match_pytorch(exported, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    ckpt, q, files = exported
    ops = {d["op_name"] for d in Interpreter(model_content=files[False])._get_ops_details()}
    assert {"DEPTHWISE_CONV_2D", "CONV_2D", "DEPTH_TO_SPACE", "ADD"} <= ops
    u = np.random.default_rng(0).uniform(0, 2, (2, 4, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():  # the files output the residual
        refs = {False: ckpt.build().residual_padded(torch.from_numpy(u)).numpy(),
                True: fake_quant_model(q)(torch.from_numpy(u)).numpy()}
    for int8, bound in ((False, 60), (True, 40)):
        (tmp_path / "m.tflite").write_bytes(files[int8])
        out = TFLiteRunner(tmp_path / "m.tflite", ckpt.anchor, threads=1).run_network(u)
        assert psnr(out, refs[int8], data_range=float(np.abs(refs[int8]).max())) >= bound, int8


def test_int8_depthwise_filters_keep_pytorch_scales(exported):
    from ai_edge_litert.interpreter import Interpreter

    _, q, files = exported
    interp = Interpreter(model_content=files[True])
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    first_dw = next(d for d in interp._get_ops_details() if d["op_name"] == "DEPTHWISE_CONV_2D")
    scales = tensors[first_dw["inputs"][1]]["quantization_parameters"]
    assert scales["quantized_dimension"] == 3  # per channel on TFLite's (1, kh, kw, C) depthwise filter
    expected = q.extra["quantization"]["fake_quant"]["net.enc.0.0.conv1.depthwise.weight_fake_quant"]["scale"]
    np.testing.assert_allclose(scales["scales"], expected, rtol=1e-6)


def test_fad_bench_times_an_architecture_baseline_from_its_cached_export(tmp_path, monkeypatch, capsys):
    from fad_deploy.cli import bench

    monkeypatch.setenv("FAD_CACHE", str(tmp_path / "cache"))
    ckpt = architecture_checkpoint("fan", {"widths": [8, 8, 16], "expansions": [1, 1, 1]})
    ckpt.save(tmp_path / "tiny.pt")
    out = tmp_path / "bench.json"
    argv = [str(tmp_path / "tiny.pt"), "--backends", "torch", "tflite-fp32", "--threads", "1", "--size", "32", "32",
            "--repeats", "1", "--warmup", "0", "--baselines", "fan", "--json", str(out), "--no-progress",
            "--export-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as e:  # tiny has no TFLite export: exit 2, after the results
        bench.main(argv)
    assert e.value.code == 2
    doc = json.loads(out.read_text())
    rows = {m["name"]: {r["backend"] for r in m["results"]} for m in doc["models"]}
    assert rows == {"tiny": {"torch"}, "fan-arch": {"torch", "tflite-fp32"}}
    assert "fan-arch: the fan architecture with initial weights" in capsys.readouterr().out
    folder = tmp_path / "cache" / "baselines" / "fan-arch-32x32"
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    with pytest.raises(SystemExit):
        bench.main(argv)  # the export is reused
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
