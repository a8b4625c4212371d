"""Average pooling as a convolution in the TFLite export (issue 18): FAN's Feature-Align
pyramid pools its input four times (2x2, stride 2), and the int8 split input's first pool reads
a channel slice. XNNPACK runs no int8 AVERAGE_POOL_2D (the builtin kernel runs it, as slow
with the delegate as without), so the exporter writes each pool as a depthwise conv with
weights 1/4, and a pooled channel slice as one plain conv that reads the whole tensor with
zero weights off the slice (fad_deploy.export.tf_graph.TFRebuild.pool).

1. Single ops at the pyramid's shapes for one RAW megapixel (1x512x512 packed): the pool as
   AVERAGE_POOL_2D (with and without XNNPACK), as a depthwise conv and as a plain conv;
   the first int8 pool also as STRIDED_SLICE + AVERAGE_POOL_2D against one conv of the
   8-channel split input. fp32 and int8 (the converter's own int8, calibrated on random
   inputs), 1 and 2 threads.
2. The shipped model exported as fad-export writes it against the same export with the
   pools as AVERAGE_POOL_2D (and the slice), timed side by side, with how far the two
   outputs differ on random int8 input.

Every entry runs in rounds interleaved in one process (medians); compare ratios of one run.

    python benchmarks/pool_as_conv.py [--model fan-nsma-2] [--rounds 9]

Writes benchmarks/results/pool_as_conv.{md,json}.
"""
from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np

from fad_deploy.export.tf_graph import TFRebuild
from fad_deploy.export.tflite import TFLiteOptions, export_tflite, quiet_tensorflow
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.side_by_side import OtherLoad, cpu_record, simd_flags
from fad_deploy.profile.table import markdown_table
from fad_deploy.profile.tflite_ops import interleaved_times, interpreter

RESULTS = Path(__file__).parent / "results"
SIZE = 512  # packed: one RAW megapixel
THREADS = (1, 2)


def converted(tf, fn, shape: tuple[int, ...], int8: bool) -> bytes:
    """The .tflite of ``fn`` on a (1, *shape) input; int8: the converter's own full-integer model,
    calibrated on random [0, 1) input."""
    spec = tf.TensorSpec((1, *shape), tf.float32)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([tf.function(fn, input_signature=[spec])
                                                            .get_concrete_function()])
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.random((1, *shape), dtype=np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def single_op_models(tf) -> dict[tuple[str, str, str], tuple[bytes, bool]]:
    """(input shape, precision, form) -> (.tflite bytes, whether to run it with XNNPACK)."""
    depthwise = np.full((2, 2, 4, 1), 0.25, np.float32)
    dense = np.zeros((2, 2, 4, 4), np.float32)
    dense[:, :, np.arange(4), np.arange(4)] = 0.25
    sliced = np.concatenate([dense, np.zeros_like(dense)], 2)  # reads channels 0-3 of 8
    models = {}
    for int8 in (False, True):
        precision = "int8" if int8 else "fp32"
        for size in (SIZE, SIZE // 2, SIZE // 4, SIZE // 8):
            shape = f"{size}x{size}x4"
            forms = {"AVERAGE_POOL_2D": lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"),
                     "DEPTHWISE_CONV_2D": lambda x: tf.nn.depthwise_conv2d(x, depthwise, [1, 2, 2, 1], "VALID"),
                     "CONV_2D": lambda x: tf.nn.conv2d(x, dense, 2, "VALID")}
            for form, fn in forms.items():
                model = converted(tf, fn, (size, size, 4), int8)
                models[(shape, precision, form)] = model, True
                if form == "AVERAGE_POOL_2D":
                    models[(shape, precision, f"{form}, no XNNPACK")] = model, False
        if int8:  # the split input's first pool
            shape = f"{SIZE}x{SIZE}x8, channels 0-3"
            models[(shape, precision, "STRIDED_SLICE + AVERAGE_POOL_2D")] = converted(
                tf, lambda x: tf.nn.avg_pool2d(x[..., :4], 2, 2, "VALID"), (SIZE, SIZE, 8), True), True
            models[(shape, precision, "CONV_2D of all 8 channels")] = converted(
                tf, lambda x: tf.nn.conv2d(x, sliced, 2, "VALID"), (SIZE, SIZE, 8), True), True
    return models


BEFORE, AFTER = "pools as AVERAGE_POOL_2D (before)", "pools as convs (fad-export)"
POOL_OPS = ("AVERAGE_POOL_2D", "STRIDED_SLICE", "DEPTHWISE_CONV_2D")


def pools_as_pools(self, tf, node, x, mod):
    """TFRebuild.pool as the exporter wrote it before: AVERAGE_POOL_2D (of the slice)."""
    return tf.nn.avg_pool2d(x, mod.kernel_size, mod.kernel_size, "VALID")


def whole_models(name: str) -> dict[tuple[str, str], bytes]:
    """(precision, export) -> .tflite bytes of the shipped model ``name`` at SIZE."""
    q = load_checkpoint(models_dir() / "nsma" / f"{name}.int8.pt")
    ckpt = load_checkpoint(models_dir() / "nsma" / f"{name}.pt")
    models = {}
    for before in (False, True):
        with mock.patch.object(TFRebuild, "pool", pools_as_pools) if before else contextlib.nullcontext():
            label = BEFORE if before else AFTER
            for precision, source, int8 in (("fp32", ckpt, False), ("int8", q, True)):
                models[(precision, label)] = export_tflite(source, TFLiteOptions((SIZE, SIZE), int8=int8),
                                                           "pool_as_conv", {})[0]
    return models


def op_counts(model: bytes) -> dict[str, int]:
    return dict(Counter(d["op_name"] for d in interpreter(model, 1, delegate=False)._get_ops_details()))


def timed(models: dict, rounds: int, per_round: int, size=None) -> dict:
    out = {}
    for threads in THREADS:
        runs = {key: interpreter(m, threads, size, delegate=deleg).invoke
                for key, (m, deleg) in models.items()}
        for key, ms in interleaved_times(runs, rounds, per_round).items():
            out.setdefault(key, {})[threads] = float(np.median(ms))
    return out


def output_difference(models: dict, precision: str) -> dict:
    """Largest and mean absolute difference of the two exports' outputs on one random input
    (int8: in output levels)."""
    outs = []
    for key, m in models.items():
        if key[0] != precision:
            continue
        it = interpreter(m, 1)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).astype(np.float64))
    diff = np.abs(outs[0] - outs[1])
    return {"max": float(diff.max()), "mean": float(diff.mean()), "unequal_share": float((diff > 0).mean())}


def markdown(result: dict, args) -> str:
    cpu = result["cpu"]
    ms = [f"ms, {t} thread{'s' * (t > 1)}" for t in THREADS]
    ops = [[*k.split(" | "), *(f"{v[str(t)]:.3f}" for t in THREADS)] for k, v in result["single_ops"].items()]
    whole = [[*k.split(" | "), ", ".join(f"{n} {c}" for n, c in sorted(result["op_counts"][k].items())
                                         if n in POOL_OPS) or "-", *(f"{v[str(t)]:.1f}" for t in THREADS)]
             for k, v in result["whole"].items()]

    def ratio(p, t):
        return result["whole"][f"{p} | {AFTER}"][str(t)] / result["whole"][f"{p} | {BEFORE}"][str(t)]

    speedup = [[p, *(f"{ratio(p, t):.3f}" for t in THREADS)] for p in ("fp32", "int8")]
    d = result["difference"]
    return "\n".join([
        "# Average pooling as a convolution in the TFLite export", "",
        f"`python benchmarks/pool_as_conv.py --model {args.model} --rounds {args.rounds}`. CPU: {cpu['model']}, "
        f"{cpu['logical_cpus']} logical CPUs, flags: {simd_flags(cpu)}. Other processes used "
        f"{result['other_load']['other_processes_cpu_share']:.0%} of the CPU time meanwhile. Medians of "
        f"{args.rounds} interleaved rounds; XNNPACK unless said.", "",
        "## Single ops (FAN's Feature-Align pyramid for one RAW megapixel)", "",
        "int8 single-op models are the converter's own (calibrated on random input); the pool, the depthwise conv "
        "(weights 1/4) and the plain conv (weights 1/4 on the diagonal) compute the same average.", "",
        markdown_table(["input", "precision", "as", *ms], ops), "",
        f"## The whole model ({args.model}, 1x{SIZE}x{SIZE}x4)", "",
        "The shipped checkpoints exported as fad-export writes them, and the same export with each pool written "
        "as AVERAGE_POOL_2D (the int8 file's first one after a STRIDED_SLICE of the split input), as the exporter "
        "did before.", "",
        markdown_table(["precision", "export", "pooling ops", *ms], whole), "",
        markdown_table(["precision", *(f"after / before, {m.removeprefix('ms, ')}" for m in ms)], speedup), "",
        f"The two int8 files' outputs on one random input differ by at most {d['int8']['max']:.0f} output level(s) "
        f"({d['int8']['unequal_share']:.2%} of the values differ: the pool and the conv round a tie differently); "
        f"the fp32 files by at most {d['fp32']['max']:.2g}.", ""])


def parse_args(doc: str) -> argparse.Namespace:
    """The options of this benchmark and of skip_as_conv.py (whose module docstring is ``doc``)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--model", default="fan-nsma-2", help="shipped sub-range model")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    return p.parse_args()


def measure(ops: dict, whole: dict, rounds: int) -> dict:
    """The single-op models and the whole models timed in interleaved rounds, with the CPU, the
    other processes' load and each whole model's op counts (keys joined by " | ")."""
    with OtherLoad() as load:
        single = timed(ops, rounds, 3)
        full = timed({k: (m, True) for k, m in whole.items()}, rounds, 2, (SIZE, SIZE))

    def joined(times: dict) -> dict:
        return {" | ".join(k): {str(t): ms for t, ms in v.items()} for k, v in times.items()}

    return {"cpu": cpu_record(), "other_load": load.record, "single_ops": joined(single), "whole": joined(full),
            "op_counts": {" | ".join(k): op_counts(m) for k, m in whole.items()}}


def write_results(name: str, result: dict, md: str) -> None:
    write_json(RESULTS / f"{name}.json", result)
    write_text(RESULTS / f"{name}.md", md)
    print(md)


def main():
    args = parse_args(__doc__)
    tf = quiet_tensorflow()
    whole = whole_models(args.model)
    result = measure(single_op_models(tf), whole, args.rounds)
    result["difference"] = {p: output_difference(whole, p) for p in ("fp32", "int8")}
    write_results("pool_as_conv", result, markdown(result, args))


if __name__ == "__main__":
    main()
