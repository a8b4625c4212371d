"""Narrow convs written on 2x2 blocks of their output in the TFLite export (issue 18): a
denoiser's head, a 3x3 conv from 16 channels to the 4 RAW planes at full resolution, leaves
most of XNNPACK's output tile empty and takes as long as a 3x3 conv to 16 channels. The
exporter writes it as a 4x4 stride-2 conv to 16 channels (each 2x2 block's four outputs) and a
DEPTH_TO_SPACE: the same sums, with zeros (fad_deploy.export.tf_graph.block_kernel).

1. Single ops for one RAW megapixel (1x512x512x16 in): the 3x3 conv to 4, 8 and 16 channels as
   it is and on 2x2 blocks (with the DEPTH_TO_SPACE), fp32 and int8 (the converter's own int8,
   calibrated on random inputs), 1 and 2 threads: where the rewrite pays (its bound,
   tf_graph.MAX_BLOCKED_OUT_CHANNELS).
2. The shipped model, and the PMRID architecture (initial weights: its head is the same conv),
   exported as fad-export writes them against the same exports with the head written as it is,
   timed side by side, with how far the two outputs differ on random input.

Every entry runs in rounds interleaved in one process (medians); compare ratios of one run.

    python benchmarks/blocked_conv.py [--model fan-nsma-2] [--rounds 9]

Writes benchmarks/results/blocked_conv.{md,json}.
"""
from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np

from fad_deploy.export import tf_graph
from fad_deploy.export.tflite import TFLiteOptions, export_tflite, quiet_tensorflow
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.baseline import architecture_checkpoint, calibrate_on_random, export_size
from fad_deploy.profile.side_by_side import simd_flags
from fad_deploy.profile.table import markdown_table
from pool_as_conv import SIZE, THREADS, converted, measure, output_difference, parse_args, write_results

IN_CHANNELS = 16  # FAN's and PMRID's width at full resolution
OUT_CHANNELS = (4, 8, 16)
BEFORE, AFTER = "head as it is (before)", "head on 2x2 blocks (fad-export)"


def single_op_models(tf) -> dict[tuple[str, str, str], tuple[bytes, bool]]:
    """(conv, precision, form) -> (.tflite bytes, run with XNNPACK)."""
    rng = np.random.default_rng(0)
    models = {}
    for out in OUT_CHANNELS:
        w = rng.normal(0, 0.1, (out, IN_CHANNELS, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.1, out).astype(np.float32)
        plain = tf.constant(w.transpose(2, 3, 1, 0))
        blocked = tf.constant(tf_graph.block_kernel(w).transpose(2, 3, 1, 0))
        forms = {"CONV_2D 3x3": lambda x: tf.nn.bias_add(tf.nn.conv2d(x, plain, 1, "SAME"), b),
                 "CONV_2D 4x4 s2 + DEPTH_TO_SPACE": lambda x: tf.nn.depth_to_space(
                     tf.nn.bias_add(tf.nn.conv2d(x, blocked, 2, "SAME"), np.tile(b, 4)), 2)}
        for int8 in (False, True):
            for form, fn in forms.items():
                key = (f"3x3 {IN_CHANNELS} -> {out} ch", "int8" if int8 else "fp32", form)
                models[key] = converted(tf, fn, (SIZE, SIZE, IN_CHANNELS), int8), True
    return models


def whole_models(name: str) -> dict[tuple[str, str, str], bytes]:
    """(network, precision, export) -> .tflite bytes at SIZE: the shipped model ``name`` and the
    PMRID architecture (initial weights, calibrated on random inputs)."""
    pmrid = architecture_checkpoint("pmrid")
    sources = {name: (load_checkpoint(models_dir() / "nsma" / f"{name}.pt"),
                      load_checkpoint(models_dir() / "nsma" / f"{name}.int8.pt")),
               "PMRID architecture": (pmrid, calibrate_on_random(pmrid))}
    models = {}
    for network, (fp32, int8) in sources.items():
        size = export_size("pmrid", pmrid.config, (SIZE, SIZE)) if network != name else (SIZE, SIZE)
        for before in (True, False):
            with mock.patch.object(tf_graph, "MAX_BLOCKED_OUT_CHANNELS", 0) if before else contextlib.nullcontext():
                for precision, source in (("fp32", fp32), ("int8", int8)):
                    options = TFLiteOptions(size, int8=precision == "int8", group_width=16)
                    models[(network, precision, BEFORE if before else AFTER)] = export_tflite(
                        source, options, "blocked_conv", {})[0]
    return models


def markdown(result: dict, args) -> str:
    cpu = result["cpu"]
    ms = [f"ms, {t} thread{'s' * (t > 1)}" for t in THREADS]
    ops = [[*k.split(" | "), *(f"{v[str(t)]:.3f}" for t in THREADS)] for k, v in result["single_ops"].items()]
    whole = [[*k.split(" | "), *(f"{v[str(t)]:.1f}" for t in THREADS)] for k, v in result["whole"].items()]

    def ratio(network, p, t):
        times = {e: result["whole"][f"{network} | {p} | {e}"][str(t)] for e in (BEFORE, AFTER)}
        return times[AFTER] / times[BEFORE]

    networks = dict.fromkeys(k.split(" | ")[0] for k in result["whole"])
    speedup = [[n, p, *(f"{ratio(n, p, t):.3f}" for t in THREADS)] for n in networks for p in ("fp32", "int8")]
    d = result["difference"]
    return "\n".join([
        "# Narrow convs on 2x2 blocks of their output in the TFLite export", "",
        f"`python benchmarks/blocked_conv.py --model {args.model} --rounds {args.rounds}`. CPU: {cpu['model']}, "
        f"{cpu['logical_cpus']} logical CPUs, flags: {simd_flags(cpu)}. Other processes used "
        f"{result['other_load']['other_processes_cpu_share']:.0%} of the CPU time meanwhile. Medians of "
        f"{args.rounds} interleaved rounds, XNNPACK.", "",
        f"## Single ops (1x{SIZE}x{SIZE}x{IN_CHANNELS} in: one RAW megapixel at full resolution)", "",
        "int8 single-op models are the converter's own (calibrated on random input). On 2x2 blocks: a 4x4 "
        "stride-2 conv to 4x the channels (the 3x3 weights at four offsets, zeros elsewhere: 16/9 of the MACs), "
        "then DEPTH_TO_SPACE; the same outputs.", "",
        markdown_table(["conv", "precision", "as", *ms], ops), "",
        f"## Whole models (1x{SIZE}x{SIZE}x4)", "",
        f"{args.model} (the shipped checkpoints) and the PMRID architecture (initial weights), exported as "
        "fad-export writes them (grouped convs in groups of at least 16 channels, sibling convs merged) with the "
        "head (3x3, 16 -> 4 channels) on 2x2 blocks, and the same exports with the head as it is.", "",
        markdown_table(["network", "precision", "export", *ms], whole), "",
        markdown_table(["network", "precision", *(f"after / before, {m.removeprefix('ms, ')}" for m in ms)],
                       speedup), "",
        f"The two int8 files of {args.model} give the same output on one random input in "
        f"{1 - d['int8']['unequal_share']:.2%} of the values (at most {d['int8']['max']:.0f} output level apart); "
        f"the fp32 files differ by at most {d['fp32']['max']:.2g}.", ""])


def main():
    args = parse_args(__doc__)
    tf = quiet_tensorflow()
    whole = whole_models(args.model)
    result = measure(single_op_models(tf), whole, args.rounds)
    shipped = {k[1:]: m for k, m in whole.items() if k[0] == args.model}
    result["difference"] = {p: output_difference(shipped, p) for p in ("fp32", "int8")}
    write_results("blocked_conv", result, markdown(result, args))


if __name__ == "__main__":
    main()
