"""FAN's shrunk skips in the TFLite export (issue 18): each skip is a 1x1 conv to a quarter of
the level's width whose output the decoder copies back four times (a CONCATENATION). Where
the conv reads few channels, the exporter folds the copies into it, its output channels
tiled four times (fad_deploy.export.tf_graph.MAX_TILED_MACS_PER_COPY): the same numbers, at
more MACs and without the copy.

1. Single ops at the four skips' shapes for one RAW megapixel (1x512x512 packed; today's
   widths 16 / 24 / 48 / 96): the conv to a quarter of the width plus the copies, against the
   tiled conv. fp32 and int8 (the converter's own, calibrated on random inputs), 1 and 2 threads.
2. The shipped model exported with no skip folded, as fad-export writes it, and with every
   skip folded, timed side by side, with how far their outputs differ on random input.

Every entry runs in rounds interleaved in one process (medians); compare ratios of one run.

    python benchmarks/skip_as_conv.py [--model fan-nsma-2] [--rounds 9]

Writes benchmarks/results/skip_as_conv.{md,json}.
"""
from __future__ import annotations

from unittest import mock

import numpy as np

from fad_deploy.export import tf_graph
from fad_deploy.export.tflite import TFLiteOptions, export_tflite, quiet_tensorflow
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.side_by_side import simd_flags
from fad_deploy.profile.table import markdown_table
from pool_as_conv import SIZE, THREADS, converted, measure, output_difference, parse_args, write_results

COPIES = 4  # FANConfig.skip_shrink
SKIPS = ((SIZE, 16), (SIZE // 2, 24), (SIZE // 4, 48), (SIZE // 8, 96))  # (side, channels) per level
COPIED, TILED = "conv to a quarter + CONCATENATION", "tiled conv"


def skip(tf, w: np.ndarray, copies: int):
    """x -> the 1x1 conv of ``w`` (HWIO), its output concatenated ``copies`` times (one: as it is)."""
    def fn(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        return tf.concat([y] * copies, axis=3) if copies > 1 else y
    return fn


def single_op_models(tf) -> dict[tuple[str, str, str], tuple[bytes, bool]]:
    """(skip shape and MACs per copied value, precision, form) -> (.tflite bytes, XNNPACK)."""
    rng = np.random.default_rng(0)
    models = {}
    for side, channels in SKIPS:
        w = rng.normal(0, 0.1, (1, 1, channels, channels // COPIES)).astype(np.float32)
        shape = f"{side}x{side}x{channels}, {channels * (COPIES - 1) / COPIES:g} MACs per copy"
        forms = {COPIED: skip(tf, w, copies=COPIES), TILED: skip(tf, np.tile(w, (1, 1, 1, COPIES)), copies=1)}
        for int8 in (False, True):
            for form, fn in forms.items():
                models[(shape, "int8" if int8 else "fp32", form)] = converted(tf, fn, (side, side, channels), int8), True
    return models


EXPORTS = {"no skip folded": 0, "fad-export (narrow skips folded)": tf_graph.MAX_TILED_MACS_PER_COPY,
           "every skip folded": float("inf")}


def whole_models(name: str) -> dict[tuple[str, str], bytes]:
    """(precision, export) -> .tflite bytes of the shipped model ``name`` at SIZE."""
    q = load_checkpoint(models_dir() / "nsma" / f"{name}.int8.pt")
    ckpt = load_checkpoint(models_dir() / "nsma" / f"{name}.pt")
    models = {}
    for label, bound in EXPORTS.items():
        with mock.patch.object(tf_graph, "MAX_TILED_MACS_PER_COPY", bound):
            for precision, source, int8 in (("fp32", ckpt, False), ("int8", q, True)):
                models[(precision, label)] = export_tflite(source, TFLiteOptions((SIZE, SIZE), int8=int8),
                                                           "skip_as_conv", {})[0]
    return models


def markdown(result: dict, args) -> str:
    cpu = result["cpu"]
    ms = [f"ms, {t} thread{'s' * (t > 1)}" for t in THREADS]
    ops = [[*k.split(" | "), *(f"{v[str(t)]:.3f}" for t in THREADS)] for k, v in result["single_ops"].items()]
    whole = [[*k.split(" | "), str(result["op_counts"][k].get("CONCATENATION", 0)), f"{result['bytes'][k]:,}",
              *(f"{v[str(t)]:.1f}" for t in THREADS)] for k, v in result["whole"].items()]
    first = next(iter(EXPORTS))

    def ratio(p, label, t):
        return result["whole"][f"{p} | {label}"][str(t)] / result["whole"][f"{p} | {first}"][str(t)]

    ratios = [[p, label, *(f"{ratio(p, label, t):.3f}" for t in THREADS)] for p in ("fp32", "int8")
              for label in list(EXPORTS)[1:]]
    d = result["difference"]
    return "\n".join([
        "# FAN's shrunk skips as tiled convolutions in the TFLite export", "",
        f"`python benchmarks/skip_as_conv.py --model {args.model} --rounds {args.rounds}`. CPU: {cpu['model']}, "
        f"{cpu['logical_cpus']} logical CPUs, flags: {simd_flags(cpu)}. Other processes used "
        f"{result['other_load']['other_processes_cpu_share']:.0%} of the CPU time meanwhile. Medians of "
        f"{args.rounds} interleaved rounds; XNNPACK.", "",
        "## Single ops (the four skips of today's widths for one RAW megapixel)", "",
        f"A 1x1 conv to a quarter of the width and its output copied {COPIES} times, against the same conv with its "
        f"output channels tiled {COPIES} times (the same values; {COPIES - 1} / {COPIES} of the input width more MACs "
        "per copied value). int8 single-op models are the converter's own (calibrated on random input).", "",
        markdown_table(["skip", "precision", "as", *ms], ops), "",
        f"## The whole model ({args.model}, 1x{SIZE}x{SIZE}x4)", "",
        "The shipped checkpoints exported with no skip folded, as fad-export writes them "
        f"(`MAX_TILED_MACS_PER_COPY = {tf_graph.MAX_TILED_MACS_PER_COPY}`), and with every skip folded.", "",
        markdown_table(["precision", "export", "CONCATENATIONs", "bytes", *ms], whole), "",
        markdown_table(["precision", "export", *(f"vs no skip folded, {m.removeprefix('ms, ')}" for m in ms)],
                       ratios), "",
        "The outputs of the exports with no skip and with every skip folded differ by at most "
        + "; ".join(f"{d[p]['max']:.2g} in {p}" + (" output levels" if p == "int8" else "") for p in d) + ".", ""])


def main():
    args = parse_args(__doc__)
    tf = quiet_tensorflow()
    whole = whole_models(args.model)
    result = measure(single_op_models(tf), whole, args.rounds)
    first, every = list(EXPORTS)[0], list(EXPORTS)[-1]
    result["bytes"] = {" | ".join(k): len(m) for k, m in whole.items()}
    result["difference"] = {p: output_difference({k: m for k, m in whole.items() if k[1] in (first, every)}, p)
                            for p in ("fp32", "int8")}
    write_results("skip_as_conv", result, markdown(result, args))


if __name__ == "__main__":
    main()
