"""Per-op TFLite profiling (fad_deploy.profile.tflite_ops): the op table's MACs agree with
the PyTorch graph's count, a cut single-op model computes what that op computes inside the
whole model, and the interleaved timer's rounds."""
from __future__ import annotations

import numpy as np
import pytest

from fad_deploy.export.tf_graph import folds_copies
from fad_deploy.export.tflite import written_conv_cost
from fad_deploy.profile.baseline import architecture_checkpoint, calibrate_on_random
from fad_deploy.profile.macs import count_macs
from fad_deploy.profile.tflite_ops import cut, interleaved_times, interpreter, kind_summary, model_ops

TINY = {"widths": [8, 8, 16], "expansions": [1, 1, 1], "group_width": 2}  # padding multiple 4
EXPORT, RUN = (16, 16), (32, 32)  # the file's input size and the size it is resized to
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    from fad_deploy.export.tflite import TFLiteOptions, export_tflite

    ckpt = architecture_checkpoint("fan", TINY)
    return ckpt, {int8: export_tflite(c, TFLiteOptions(EXPORT, int8=int8), "test", {})[0]
                  for int8, c in ((False, ckpt), (True, calibrate_on_random(ckpt)))}


def folded_skip_macs(net, size: tuple[int, int]) -> int:
    """The MACs the export adds by folding narrow skips' copies into tiled convs (tf_graph.folds_copies)."""
    extra = 0
    for level, skip in enumerate(net.skips):
        i, o, k = skip.conv.in_channels, skip.conv.out_channels, skip.factor
        if folds_copies(i, k):
            extra += (size[0] >> level) * (size[1] >> level) * i * o * (k - 1)
    return extra


def test_op_macs_match_the_graph_count_at_the_resized_shape(models):
    ckpt, files = models
    net = ckpt.build()
    # the files output the residual (no input add), run the narrow skips' copies as tiled convs and the merged
    # sibling convs' readers over all their channels
    cost = written_conv_cost(net, RUN, group_width=0)
    siblings = cost["macs_written"] - cost["macs_grouped"]
    expected = count_macs(net, RUN).macs - 4 * RUN[0] * RUN[1] + folded_skip_macs(net, RUN) + siblings
    assert folded_skip_macs(net, RUN) > 0 and siblings > 0
    for model in files.values():
        ops = model_ops(model, RUN)
        assert sum(op.macs for op in ops) == expected
        assert ops[-1].out_shape == (1, *RUN, 4)
        kinds = {op.kind for op in ops}
        assert "conv 3x3 grouped (2 ch/group)" in kinds and "conv 1x1" in kinds and "elementwise mul" in kinds
        assert all(op.bytes > 0 for op in ops)


@pytest.mark.filterwarnings("ignore:Warning. Enabling .experimental_preserve_all_tensors")
def test_a_cut_op_computes_what_it_computes_in_the_whole_model(models):
    from ai_edge_litert.interpreter import Interpreter

    _, files = models
    for model in files.values():
        whole = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
        whole.allocate_tensors()
        inp = whole.get_input_details()[0]
        rng = np.random.default_rng(0)
        x = rng.random(inp["shape"], dtype=np.float32) if inp["dtype"] == np.float32 else \
            rng.integers(-128, 128, inp["shape"]).astype(np.int8)
        whole.set_tensor(inp["index"], x)
        whole.invoke()
        details = whole._get_ops_details()
        grouped = next(op for op in model_ops(model) if "grouped" in op.kind)
        conv = details[grouped.ops[-1]]
        sub = interpreter(cut(model, grouped.ops), 1)
        (sub_in,) = sub.get_input_details()
        sub.set_tensor(sub_in["index"], whole.get_tensor(details[grouped.ops[0]]["inputs"][0]))
        sub.invoke()
        out = sub.get_tensor(sub.get_output_details()[0]["index"])
        np.testing.assert_allclose(out.astype(np.float32), whole.get_tensor(conv["outputs"][0]).astype(np.float32),
                                   rtol=1e-5, atol=1e-5)


def test_interleaved_rounds_time_every_entry_and_rotate_the_order(models):
    calls = []
    runs = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    times = interleaved_times(runs, rounds=3, per_round=2, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6, "c": 6}
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3::2] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # round r starts at entry r


def test_kind_summary_adds_up(models):
    _, files = models
    ops = model_ops(files[False], RUN)
    medians = {op.index: 1.0 for op in ops}
    rows = kind_summary(ops, medians)
    assert sum(r["ops"] for r in rows) == len(ops)
    assert sum(r["time_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["macs"] for r in rows) == sum(op.macs for op in ops)


def test_a_split_int8_input_is_pooled_by_one_conv_without_a_slice(models):
    import dataclasses

    from fad_deploy.export.tflite import TFLiteOptions, export_tflite
    from fad_deploy.quant.split import split_checkpoint
    from fad_deploy.runners.base import QUANTIZED_BASE

    ckpt, files = models
    q = calibrate_on_random(ckpt)
    q = dataclasses.replace(q, extra={**q.extra, "quantization": {**q.extra["quantization"], "base": QUANTIZED_BASE}})
    split = export_tflite(split_checkpoint(q, 8), TFLiteOptions(EXPORT), "test", {})[0]
    ops = model_ops(split, RUN)
    # the pyramid's first pool reads channels 0-3: one 2x2 stride-2 conv of all 8 channels, no slice copied
    assert not {"STRIDED_SLICE", "AVERAGE_POOL_2D"} & {op.name for op in ops}
    (pool,) = [op for op in ops if op.kind == "conv 2x2 s2 dense"]
    assert pool.out_shape == (1, RUN[0] // 2, RUN[1] // 2, 4) and pool.macs == 8 * 4 * pool.out_shape[1] * pool.out_shape[2] * 4
    # the convs reading the input read 4 more channels: more MACs than the single-input file
    assert sum(op.macs for op in ops) > sum(op.macs for op in model_ops(files[True], RUN))
