"""Profilers: MAC counting rules, fvcore cross-check, the arena planner on a hand-checked
graph, the largest tile an accelerator fits, and fad-bench's schema and bad input."""
from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn as nn

from fad_deploy.cli import bench
from fad_deploy.models.fan import FeatureAlign
from fad_deploy.models.layers import Upsample2x
from fad_deploy.models.registry import Checkpoint, build, model_config
from fad_deploy.profile.accelerator import AcceleratorTarget, accelerator_report
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.profile.graph import UnsupportedOp, trace
from fad_deploy.profile.macs import count_macs
from fad_deploy.profile.memory import plan_arena, profile_memory, tensor_lifetimes
from fad_deploy.profile.plot import quality_plot
from fad_deploy.profile.tiling import largest_tile
from fad_deploy.runners.tiling import tile_spec

H, W = 8, 12  # tiny packed input for counting
TINY_FAN = {"widths": [8, 8, 16], "expansions": [1, 1, 1]}

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets on shared cores: one thread is fastest


def test_grouped_depthwise_strided_and_transposed_convs():
    cases = [
        (nn.Conv2d(4, 8, 3, padding=1, groups=2), 8 * H * W * 2 * 9),  # fan-in per group: 4/2
        (nn.Conv2d(4, 4, 3, padding=1, groups=4), 4 * H * W * 1 * 9),  # depthwise
        (nn.Conv2d(4, 6, 3, stride=2, padding=1), 6 * (H // 2) * (W // 2) * 4 * 9),
        (nn.ConvTranspose2d(4, 6, 2, stride=2), 4 * H * W * 6 * 4),  # input elements x out x kernel
    ]
    for module, expected in cases:
        assert count_macs(module, (H, W)).macs == expected, module


def test_feature_align_mul_and_add_are_counted():
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.fa = FeatureAlign(4, 8)

        def forward(self, x):
            return self.fa(x, x)

    layers = count_macs(Wrap(), (H, W)).layers
    by_kind = {}
    for layer in layers:
        by_kind[layer.kind] = by_kind.get(layer.kind, 0) + layer.macs
    hw = H * W
    assert by_kind["mul"] == 4 * hw and by_kind["add"] == 4 * hw  # gamma * F and + beta: one per element each
    assert by_kind["conv"] == hw * 8 * 4 * 9 + 2 * hw * 4 * 8  # shared 3x3, gamma and beta 1x1 heads
    assert [layer.activation_ops for layer in layers if layer.kind == "activation"] == [8 * hw]


def test_shuffle_resize_pooling_and_activation_rules():
    up = count_macs(Upsample2x(4, 4), (H, W))
    shuffle = [layer for layer in up.layers if layer.kind == "shuffle"]
    assert len(shuffle) == 1 and shuffle[0].macs == 0 and shuffle[0].out_shape == (1, 4, 2 * H, 2 * W)
    assert up.macs == 16 * H * W * 4

    class Resize(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode="bilinear")

        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=2, mode="nearest") + self.up(x)

    resize = {layer.target: layer.macs for layer in count_macs(Resize(), (H, W)).layers}
    assert resize == {"interpolate": 0, "up": 4 * 4 * H * W * 4, "add": 4 * 4 * H * W}  # nearest copies; bilinear: 4 taps

    net = nn.Sequential(nn.AvgPool2d(2), nn.MaxPool2d(2), nn.ReLU())
    report = count_macs(net, (H, W))
    avg, mx, relu = report.layers
    assert avg.macs == 4 * (H // 2) * (W // 2) * 4 and mx.macs == 0
    assert relu.macs == 0 and relu.activation_ops == 4 * (H // 4) * (W // 4)


def test_params_and_weight_bytes():
    report = count_macs(nn.Conv2d(4, 8, 3, padding=1, groups=2), (H, W))
    assert report.params == 8 * 2 * 9 + 8
    assert report.weight_bytes_fp32 == 4 * report.params
    assert report.weight_bytes_int8 == 8 * 2 * 9 + 4 * 8 + 4 * 8  # int8 weights, fp32 scale/channel, int32 bias


def test_gmacs_per_megapixel_is_per_4x512x512_packed_input():
    net = nn.Conv2d(4, 4, 1, bias=False)
    assert count_macs(net, (512, 512)).gmacs_per_megapixel == pytest.approx(4 * 4 * 512 * 512 / 1e9)
    assert count_macs(net, (64, 128)).gmacs_per_megapixel == pytest.approx(4 * 4 * 512 * 512 / 1e9)


def test_gmacs_per_megapixel_do_not_count_the_padding_against_the_frame():
    """65x65 is padded to 80x80: 1.5x the MACs per megapixel had been reported (648x at 1x1)."""
    fan = build("fan")
    aligned = count_macs(fan, (64, 64))
    for size in ((65, 65), (1, 1)):
        report = count_macs(fan, size)
        assert report.gmacs_per_megapixel == pytest.approx(aligned.gmacs_per_megapixel, rel=1e-6)
        assert report.computed_shape == (1, 4, 80, 80) if size == (65, 65) else (1, 4, 16, 16)
        assert f"padded to {'x'.join(map(str, report.computed_shape))}" in report.summary()


def test_a_split_int8_input_counts_the_convs_reading_the_input_again():
    from fad_deploy.profile.latency import model_entry, run_macs
    from fad_deploy.profile.macs import split_input_macs

    net = build("fan")
    graph = trace(net, (64, 64))
    # the convs that read the RAW input: the first block's expand and the two full-resolution Feature-Align
    # conditioning convs (encoder and decoder)
    readers = [net.enc[0].expand, net.enc_align[0].shared, net.dec_align[-1].shared]
    assert split_input_macs(graph) == sum(m.weight.numel() * 64 * 64 for m in readers)
    entry = model_entry("fan", net, (64, 64))
    assert run_macs(entry, None) == run_macs(entry, {"scale": 0.1}) == entry.macs == count_macs(graph).macs
    assert run_macs(entry, {"scale": 0.1, "split": 8}) == entry.macs + split_input_macs(graph)


def test_unknown_op_fails_loudly():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.sin(x)

    with pytest.raises(UnsupportedOp, match="sin"):
        count_macs(Odd(), (H, W))
    with pytest.raises(UnsupportedOp, match="GRU"):
        count_macs(nn.Sequential(nn.GRU(4, 4)), (H, W))


def test_conv_total_equals_fvcore():
    from fvcore.nn import FlopCountAnalysis

    logging.disable(logging.WARNING)  # fvcore warns about the ops it skips (relu, add, ...)
    convs = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.Conv2d(8, 16, 1),
                          nn.ConvTranspose2d(16, 4, 2, stride=2))
    fan = build("fan", TINY_FAN).eval()
    try:
        for net in (convs, fan):
            x = torch.zeros(1, 4, 32, 48)
            fv = FlopCountAnalysis(net, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            ours = count_macs(net, (32, 48)).macs_by_kind()
            assert ours["conv"] + ours.get("conv_transpose", 0) == fv.by_operator()["conv"]
    finally:
        logging.disable(logging.NOTSET)


class HandChecked(nn.Module):
    """x -> a = relu(c1 x) -> b = c2 a -> c = c3 b -> c + a, on a 1x4x8x8 input (int8 bytes):
    x 256 B [op 0-1], a 512 B [1-5] (relu fused in place), b 256 B [3-4], c 512 B [4-5], out 512 B [5]."""

    def __init__(self):
        super().__init__()
        self.c1, self.act, self.c2, self.c3 = nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        a = self.act(self.c1(x))
        return self.c3(self.c2(a)) + a


def test_arena_planner_on_hand_checked_graph():
    graph = trace(HandChecked(), (8, 8))
    tensors = {t.name: t for t in tensor_lifetimes(graph, 1)}
    assert {n: (t.nbytes, t.first, t.last) for n, t in tensors.items()} == {
        "x": (256, 0, 1), "c1": (512, 1, 5), "c2": (256, 3, 4), "c3": (512, 4, 5), "add": (512, 5, 5)}
    offsets, arena = plan_arena(list(tensors.values()))
    # largest first: c1 at 0, c3 above it, add above both; x fits beside c3 (never alive together),
    # c2 beside add.
    assert offsets == {"c1": 0, "c3": 512, "add": 1024, "x": 512, "c2": 1024}
    assert arena == 1536
    report = profile_memory(graph, bytes_per_element=1)
    assert report.peak_live_bytes == 1536 and report.largest.nbytes == 512
    assert profile_memory(graph, bytes_per_element=4).arena_bytes == 4 * 1536


def test_shrunk_skips_hold_fewer_bytes():
    shrunk = profile_memory(build("fan", {**TINY_FAN, "skip_shrink": 4}), (64, 64), 1)
    full = profile_memory(build("fan", {**TINY_FAN, "skip_shrink": 1}), (64, 64), 1)
    assert shrunk.mean_live_bytes < full.mean_live_bytes
    assert shrunk.arena_bytes <= full.arena_bytes


def randomised(arch: str, config: dict) -> Checkpoint:
    torch.manual_seed(0)
    net = build(arch, config)
    with torch.no_grad():  # Feature-Align starts as the identity: perturb it so every path matters
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return Checkpoint("tiny", arch, model_config(net), net.state_dict())


def test_largest_tile_fits_sram_and_next_one_does_not():
    net = build("fan", TINY_FAN)
    spec = tile_spec(net)
    target = AcceleratorTarget("tiny", 200_000, 1e9, 1e9)
    fit = largest_tile(net, target, spec)
    budget = target.sram_bytes - fit.weight_bytes
    assert fit.weights_on_chip and fit.arena_bytes <= budget
    assert profile_memory(net, (fit.tile + spec.align,) * 2, 1).arena_bytes > budget
    assert accelerator_report(net, target, (fit.tile, fit.tile)).activations_fit


def test_roofline_is_compute_bound_when_everything_fits():
    net = build("fan", TINY_FAN)
    report = accelerator_report(net, AcceleratorTarget("big", 1 << 30, 1e9, 1e12), (32, 32))
    assert report.weights_fit and report.activations_fit
    assert report.seconds == pytest.approx(count_macs(net, (32, 32)).macs / 1e9, rel=1e-3)


def test_cpu_peak_scales_with_cores_used():
    peak = cpu_peak()
    if peak.ghz is None:
        pytest.skip("no clock frequency readable on this machine")
    assert peak.macs_per_s(1) > 0
    assert peak.macs_per_s(10_000) == peak.cores * peak.macs_per_s(1)
    assert peak.macs_per_s(1, int8=True) == 4 * peak.macs_per_s(1)


def test_bench_cpu_torch_writes_the_schema(tmp_path, capsys):
    ckpt = randomised("fan", TINY_FAN)
    path = tmp_path / "tiny.pt"
    ckpt.save(path)
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as e:  # a backend asked for that could not run: exit 2, after the results
        bench.main([str(path), "--backends", "torch", "onnx-fp32", "--threads", "1", "--size", "32", "32",
                    "--repeats", "2", "--warmup", "0", "--json", str(out), "--export-dir", str(tmp_path),
                    "--no-progress"])
    assert e.value.code == 2
    doc = json.loads(out.read_text())
    assert set(doc) == {"device", "models", "note"}  # the note: 32x32 is too small to time well
    (model,) = doc["models"]
    assert {"name", "params", "macs_per_megapixel", "peak_activation_bytes_int8", "peak_activation_bytes_fp32",
            "results"} <= set(model)
    assert model["name"] == "tiny" and model["params"] == sum(v.numel() for v in ckpt.state_dict.values())
    (row,) = model["results"]
    assert {"backend", "threads", "median_ms", "p90_ms", "megapixels"} <= set(row)
    assert row["backend"] == "torch" and row["megapixels"] == pytest.approx(4 * 32 * 32 / (4 * 512 * 512))
    assert row["p90_ms"] >= row["median_ms"] > 0
    assert "onnx-fp32" in model["skipped"][0]  # no export folder: reported, not dropped
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == "fad-bench: error: 1 run of the --backends asked for could not be made (skipped, " \
                                   "above): the table holds the rest"
    assert "torch" in out and "note: at 32x32 (0.00391 RAW megapixels) each run's fixed costs outweigh" in out
    assert doc["note"].startswith("at 32x32")


@pytest.mark.parametrize("argv, message", [
    (["no-such-model"], "unknown model 'no-such-model'"),
    (["x.pt"], "x.pt: checkpoint not found"),
    (["x.pt", "--threads", "0"], "argument --threads: expected a whole number in [1, 1024], got '0'"),
    (["--size", "abc", "4"], "argument --size: expected a whole number >= 1, got 'abc'"),
    (["--backends", "tpu", "--", "x.pt"], "unknown backend 'tpu'"),
    (["--device", "gpu"], "--device 'gpu': expected cpu, adb or adb:SERIAL"),
])
def test_bench_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("fad-bench: error:") and message in err


def test_quality_plot_writes_the_format_its_suffix_names(tmp_path):
    doc = {"device": {"kind": "cpu"}, "models": [
        {"name": "a", "macs_per_megapixel": 2.5e9, "results": [{"backend": "torch", "threads": 1,
                                                                 "ms_per_megapixel": 100.0}]},
        {"name": "b", "macs_per_megapixel": 37e9, "results": [{"backend": "torch", "threads": 1,
                                                                "ms_per_megapixel": 900.0}]}]}
    out = tmp_path / "plot.png"
    assert quality_plot(doc, {"a": 40.0, "b": 41.0, "c": 1.0}, out) == ["a", "b"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    quality_plot(doc, {"a": 40.0}, tmp_path / "plot.PDF")
    assert (tmp_path / "plot.PDF").read_bytes()[:5] == b"%PDF-"
    quality_plot(doc, {"a": 40.0}, tmp_path / "plot.svg")
    assert b"<svg" in (tmp_path / "plot.svg").read_bytes()[:1000]


def test_a_network_that_cannot_be_tiled_is_profiled_without_the_tiling():
    """fad-bench --report had stopped at cycleisp-lite's global pooling."""
    from fad_deploy.profile.report import profile_model

    md, doc = profile_model("cycleisp-lite", build("cycleisp-lite"), (32, 32))
    assert "Exact tiling: none (CycleISPLite: its global pooling" in md
    assert "cannot tile exactly" in doc["tiling"]["error"]
    assert doc["macs"]["macs"] > 0 and all("error" in fit["tiling_12mp"] for fit in doc["accelerators"])


@pytest.mark.parametrize("cache", ["a-file", "/proc/x"])
def test_a_cache_that_cannot_hold_the_baselines_is_one_line(cache, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FAD_CACHE", cache if cache.startswith("/") else str(tmp_path / cache))
    with pytest.raises(SystemExit) as e:
        bench.main(["fan-student", "--backends", "torch", "--threads", "1", "--repeats", "1", "--warmup", "0",
                    "--size", "16", "16", "--baselines", "pmrid", "--no-progress"])
    assert e.value.code == 2
    assert "error: the baseline's export folder (under $FAD_CACHE)" in capsys.readouterr().err
