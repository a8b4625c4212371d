"""The calibrated CPU latency model (fad_deploy/profile/cpu_model.py): micro-benchmark
models are the single ops they claim, the fit recovers a known cost model, the PyTorch
graph maps onto the same op kinds, and fad-bench --report prints per-layer latency."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fad_deploy.cli import bench
from fad_deploy.errors import FadError
from fad_deploy.models.registry import build
from fad_deploy.export.tflite import written_conv_cost
from fad_deploy.profile.cpu_model import CpuCostModel, Micro, fit, graph_layers, micro_model
from fad_deploy.profile.graph import trace
from fad_deploy.profile.macs import count_macs
from fad_deploy.profile.tflite_ops import TFLiteOp, model_ops

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("micro, int8, name, kind", [
    (Micro("conv 3x3 s2 grouped (4 ch/group)", 16, 8), True, "PAD+CONV_2D", "conv 3x3 s2 grouped (4 ch/group)"),
    (Micro("depthwise 5x5", 16, 8), False, "DEPTHWISE_CONV_2D", "depthwise 5x5"),
    (Micro("conv 3x3 dense", 16, 4, 8), True, "CONV_2D", "conv 3x3 dense"),
    (Micro("elementwise mul", 16, 8), True, "MUL", "elementwise mul"),
])
def test_micro_benchmarks_are_the_single_op_they_name(micro, int8, name, kind):
    from fad_deploy.export.tflite import quiet_tensorflow

    (op,) = model_ops(micro_model(quiet_tensorflow(), micro, int8))
    assert (op.name, op.kind) == (name, kind)
    assert op.out_shape[-1] == (micro.c_out if kind.startswith("conv") else micro.channels)


def test_fit_recovers_a_known_cost_model():
    rng = np.random.default_rng(0)
    truth = {"conv 1x1": (0.02, 1 / 50e6, 1 / 20e6), "elementwise add": (0.0, 1 / 3e6, 0.0)}
    samples = []
    for kind, (a, b, c) in truth.items():
        for _ in range(6):
            op = TFLiteOp(0, (0,), "X", kind, (1,), int(rng.integers(1e5, 1e8)), int(rng.integers(1e4, 1e7)))
            samples.append((op, a + b * op.macs + c * op.bytes))
    model = fit({"int8": samples}, {"int8": 1e11})
    for op, ms in samples:
        assert model.predict(op, "int8") == pytest.approx(ms, rel=1e-6)
    unknown = TFLiteOp(0, (0,), "X", "depthwise 7x7", (1,), 10**8, 0)
    assert model.predict(unknown, "int8") == pytest.approx(1.0)  # the peak-rate roofline: 1e8 / 1e11 s


@pytest.mark.parametrize("arch", ["fan", "pmrid"])
def test_graph_layers_use_the_tflite_kinds_and_keep_every_mac(arch):
    net = build(arch)
    graph = trace(net, (64, 64))
    layers = graph_layers(graph, "int8")
    # + the zeros the export writes: merged siblings' readers (FAN's), the head's 2x2 blocks (both)
    cost = written_conv_cost(net, (64, 64), group_width=0)
    assert sum(op.macs for op in layers) == count_macs(graph).macs + cost["macs_written"] - cost["macs_grouped"]
    kinds = {op.kind for op in layers}
    expected = {"fan": {"conv 3x3 grouped (4 ch/group)", "conv 3x3 s2 grouped (4 ch/group)", "conv 1x1",
                        "conv 3x3 dense", "elementwise mul", "depthwise 2x2"},  # pools as exported
                "pmrid": {"depthwise 5x5", "depthwise 3x3", "conv 1x1", "conv 3x3 dense", "elementwise add"}}[arch]
    assert expected <= kinds and not any("activation" in k for k in kinds)
    fp32 = graph_layers(graph, "fp32")
    assert all(b.bytes > a.bytes for a, b in zip(layers, fp32))  # 4 bytes an element against 1


def test_graph_layers_follow_the_export_that_writes_wider_groups():
    graph = trace(build("fan"), (64, 64))
    trained, written = graph_layers(graph, "int8"), graph_layers(graph, "int8", written_width=16)
    by_name = {op.name: op for op in trained}
    first = next(op for op in written if op.name == "enc_0_group")  # 16 channels in groups of 4: one dense conv
    assert by_name["enc_0_group"].kind == "conv 3x3 grouped (4 ch/group)" and first.kind == "conv 3x3 dense"
    assert first.macs == 4 * by_name["enc_0_group"].macs  # the zeros outside the blocks run too
    kinds = {op.kind for op in written}
    assert "conv 3x3 grouped (16 ch/group)" in kinds and not any("(4 ch/group)" in k for k in kinds)
    assert sum(op.macs for op in written) > sum(op.macs for op in trained)
    # each level's two Feature-Align conditioning convs as one (levels 0-2), the decoder's written within it
    names = {op.name: op for op in written}
    assert names["enc_align_0_shared"].out_shape[1] == 16 and "dec_align_3_shared" not in names
    assert names["enc_align_3_shared"].out_shape[1] == 8 and "dec_align_0_shared" in names
    assert names["enc_align_0_gamma"].macs == 16 * 16 * 64 * 64  # reads all 16 merged channels (8 its own)
    # the head (3x3, 16 -> 4) on 2x2 blocks: 4x4 stride 2 to 16 channels at half the size, then DEPTH_TO_SPACE
    head, shuffle = written[-3:-1]  # then the input added back
    assert head.kind == "conv 4x4 s2 dense" and head.out_shape == (1, 16, 32, 32) and head.macs == 32 * 32 * 16 * 256
    assert shuffle.kind == "data movement" and shuffle.out_shape == (1, 4, 64, 64)


def test_report_prints_the_calibrated_latency_per_layer(tmp_path):
    from fad_deploy.profile.baseline import architecture_checkpoint

    calibration = tmp_path / "cal.json"
    coef = {"conv 3x3 dense": [0.0, 1e-7, 0.0], "conv 1x1": [0.0, 1e-9, 0.0]}
    calibration.write_text(json.dumps({"cpu": {"model": "Test CPU"}, "model": {
        "coefficients": {"int8": coef, "fp32": coef}, "peak_macs_per_s": {"int8": 1e12, "fp32": 1e12}}}))
    architecture_checkpoint("fan").save(tmp_path / "fan.pt")
    bench.main([str(tmp_path / "fan.pt"), "--report", str(tmp_path / "out"), "--no-timing", "--size", "64", "64",
                "--calibration", str(calibration), "--export-dir", str(tmp_path)])
    md = (tmp_path / "out" / "profile_fan.md").read_text()
    assert "CPU latency per layer (TFLite XNNPACK, calibrated on Test CPU" in md
    section = md.split("## CPU latency per layer")[1]
    slowest = section.split("| slowest layers")[1].splitlines()[2]
    assert "conv 3x3 dense" in slowest  # 100x the time per MAC of the 1x1 convs
    assert "grouped convs written in groups of at least 16 channels" in section  # as fad-export writes them
    doc = json.loads((tmp_path / "out" / "profile_fan.json").read_text())
    assert doc["cpu_latency"]["calibrated_on"] == "Test CPU"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FadError, match="not a CPU calibration"):
        CpuCostModel.load(tmp_path / "bad.json")
