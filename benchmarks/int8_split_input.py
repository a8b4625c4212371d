"""What splitting the int8 input buys (issue 17): each shipped int8 sub-range model with one
4-channel int8 input, and with its input split in two (the input rounded down onto its int8
grid plus k times the remainder, 8 channels of one int8 tensor; fad_deploy.quant.split) for
several k on the input grid QAT learned, and as the QAT recipe splits it: k = 8 on the grid
widened to cover 99.9 % of the QAT's network inputs (fad_deploy.quant.qat.input_widening). For
each: the RAW PSNR drop against the float model on fad-export's validation patches (the
README's main command checks these) and on held-out crops of the test photos (int8_recipe.py's
set, never used in training), per noise level; and what the split costs:
MACs per RAW megapixel and the int8 TFLite's time (XNNPACK, 1 and 2 threads, 4x512x512, rounds
interleaved in one process).

    python benchmarks/int8_split_input.py [--models fan-nsma-0 ...] [--splits 4 8 16 32]
    python benchmarks/int8_split_input.py --models --int8 DIR/fan-student.int8.pt   # another int8 checkpoint

Nothing is retrained: every row is the shipped QAT checkpoint (or one given with --int8, its
float model found by the name its card gives), split after the fact (or, for the single
input, with its split and widening taken off). Writes benchmarks/results/int8_split_input.md and
.json, keeping the rows of models not measured in this run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import folder_images, validation_set
from fad_deploy.export.tflite import TFLiteOptions, export_tflite
from fad_deploy.export.validate import denoised, psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir, resolve_model
from fad_deploy.profile.macs import count_macs
from fad_deploy.profile.side_by_side import OtherLoad, cpu_record, simd_flags
from fad_deploy.profile.table import markdown_table
from fad_deploy.profile.tflite_ops import interleaved_times, interpreter
from fad_deploy.quant.qat import FakeQuantRunner, qat_settings, split_input
from fad_deploy.quant.recipe import QATConfig
from fad_deploy.quant.split import IN_CHANNELS, WIDEN_KEY, single_checkpoint, split_checkpoint
from fad_deploy.runners.torch_runner import TorchRunner
from int8_recipe import EVAL_CROP, EVAL_CROPS, EVAL_SEED, evaluation_set

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = [f"fan-nsma-{i}" for i in range(4)]
SIZE = (512, 512)  # packed: one RAW megapixel
THREADS = (1, 2)
BOUNDS = (0.10, 0.20)  # issue 17: mean and per-level drop, dB


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies in it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def added_macs(q) -> int:
    """The MACs the split adds over one RAW megapixel: the remainder's half of each conv that reads it."""
    runner = FakeQuantRunner(q)
    total = 0

    def hook(mod, _, out):
        nonlocal total
        total += mod.weight[:, IN_CHANNELS:].numel() * out.shape[-2] * out.shape[-1]

    core = runner.model.core
    placeholder = next(n for n in core.graph.nodes if n.op == "placeholder")
    (quantized,) = placeholder.users
    convs = [core.get_submodule(n.target) for n in quantized.users if n.op == "call_module"]
    assert all(isinstance(m, nn.Conv2d) and m.in_channels == 2 * IN_CHANNELS for m in convs)
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.no_grad():
        runner.model(torch.zeros(1, 2 * IN_CHANNELS, *SIZE))
    for h in handles:
        h.remove()
    return total


def drops(q, sets: dict) -> dict:
    out = {}
    for name, (pairs, (base, base_levels)) in sets.items():
        mean, levels = psnr_by_shot(denoised(FakeQuantRunner(q), pairs), pairs)
        out[name] = {"drop_db": base - mean, "drop_by_shot": {s: base_levels[s] - v for s, v in levels.items()}}
    return out


def timings(single, split, rounds: int) -> tuple[dict, dict]:
    """Median ms of the int8 TFLite with the single and the split input, per thread count."""
    files = {label: export_tflite(q, TFLiteOptions(SIZE), "int8_split_input", {})[0]
             for label, q in (("single", single), ("split", split))}
    runs = {f"{label} x{t}": interpreter(model, t, SIZE).invoke for label, model in files.items() for t in THREADS}
    with OtherLoad() as load:
        times = interleaved_times(runs, rounds, 2)
    return {key: float(np.median(v)) for key, v in times.items()}, load.record


def level_table(model: dict) -> str:
    rows = []
    for label, row in model["variants"].items():
        for set_name, d in row["drops"].items():
            rows.append([label, set_name, f"{d['drop_db']:.3f}", *(f"{v:.3f}" for v in d["drop_by_shot"].values())])
    levels = next(iter(model["variants"].values()))["drops"]["gate"]["drop_by_shot"]  # both sets: these levels
    return markdown_table(["int8 input", "set", "mean drop dB", *(f"a={s}" for s in levels)], rows)


def markdown(result: dict) -> str:
    lines = ["# The split int8 input: what it gives back and what it costs", "",
             f"Made by `python benchmarks/int8_split_input.py`. CPU {result['cpu']['model']} "
             f"({simd_flags(result['cpu'])}).",
             "",
             "Each shipped int8 sub-range model (its QAT checkpoint, nothing retrained) with one 4-channel int8 "
             "input, and with the input split in two: channels 0-3 the input rounded down onto its int8 grid, "
             "channels 4-7 k times the remainder on the same grid, one int8 tensor; the convs that read the input "
             "read the remainder at weights / k (fad_deploy.quant.split); the recipe's row also widens the input grid "
             "(its step and k alike) to cover 99.9 % of the QAT's network inputs, which the learned range clipped. "
             "Drop: RAW PSNR of the fake-quant int8 "
             "network below the float model's, on fad-export's validation patches (`gate`, the README's main "
             f"command checks a mean of at most {BOUNDS[0]} dB and {BOUNDS[1]} dB at any level) and on held-out "
             f"crops ({result['held_out']}). The int8 checkpoints: "
             + ", ".join(f"{name} `{model['int8']}`" for name, model in result["models"].items()) + ".", ""]
    summary = []
    for name, model in result["models"].items():
        for label, row in model["variants"].items():
            g, h = row["drops"]["gate"], row["drops"]["held-out"]
            summary.append([name, label, f"{g['drop_db']:.3f}", f"{max(g['drop_by_shot'].values()):.3f}",
                            f"{h['drop_db']:.3f}", f"{max(h['drop_by_shot'].values()):.3f}"])
    lines += ["## Drops", "",
              markdown_table(["model", "int8 input", "gate mean dB", "gate worst level dB", "held-out mean dB",
                              "held-out worst level dB"], summary), ""]
    lines += ["## What the split costs", "",
              "The remainder's half of each conv that reads the input, in MACs per RAW megapixel; the int8 TFLite "
              f"at {SIZE[0]}x{SIZE[1]} packed (one RAW megapixel), XNNPACK, median ms of rounds interleaved in one "
              "process (other processes used "
              + ", ".join(f"{100 * v:.0f} %" for v in result["other_load"].values())
              + " of the CPU meanwhile); k does not change the "
              "graph.", ""]
    rows = []
    for name, model in result["models"].items():
        c = model["cost"]
        rows.append([name, f"{c['gmacs_per_mp']:.3f}", f"+{c['added_gmacs_per_mp']:.3f} "
                     f"(+{100 * c['added_gmacs_per_mp'] / c['gmacs_per_mp']:.1f} %)",
                     *(f"{c['ms'][f'single x{t}']:.1f} -> {c['ms'][f'split x{t}']:.1f} "
                       f"({c['ms'][f'split x{t}'] / c['ms'][f'single x{t}']:.3f}x)" for t in THREADS)])
    lines += [markdown_table(["model", "GMACs/MP (single input)", "split adds GMACs/MP",
                              *(f"int8 ms, {t} thread{'s' if t > 1 else ''}: single -> split" for t in THREADS)],
                             rows), ""]
    for name, model in result["models"].items():
        lines += [f"## {name}: per noise level", "", level_table(model), ""]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=MODELS, choices=MODELS, help="shipped sub-range models")
    p.add_argument("--int8", nargs="+", type=Path, default=[], help="other int8 checkpoints to measure")
    p.add_argument("--splits", nargs="+", type=int, default=[4, 8, 16, 32])
    p.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads for the PSNR runs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = list(folder_images(default_cache_dir() / "photos" / "test", 1, None))
    path = RESULTS / "int8_split_input.json"
    result = json.loads(path.read_text()) if path.is_file() else {"models": {}, "other_load": {}}
    result.update(cpu=cpu_record(), held_out=f"{len(images)} fetched test photos, {EVAL_CROPS} crops of "
                                             f"{EVAL_CROP}x{EVAL_CROP} packed each, seed {EVAL_SEED}")
    files = [models_dir() / "nsma" / f"{name}.int8.pt" for name in args.models] + args.int8
    for file in files:
        single = single_checkpoint(load_checkpoint(file))
        name = single.card["quantization"]["source"]
        ckpt = load_checkpoint(resolve_model(name))
        float_runner = TorchRunner(ckpt)
        sets = {}
        for set_name, pairs in (("gate", validation_set(ckpt.shot_range)[0]),
                                ("held-out", evaluation_set(images, ckpt.shot_range))):
            sets[set_name] = (pairs, psnr_by_shot(denoised(float_runner, pairs), pairs))
        # what the QAT recipe makes: the grid widened, k with it
        recipe = split_input(single, dataclasses.replace(qat_settings(single), input_split=QATConfig().input_split))
        variants = {"one 4-channel tensor": single,
                    **{f"split, k = {k}": split_checkpoint(single, k) for k in args.splits},
                    f"split, k = {QATConfig().input_split}, grid widened x{recipe.card['quantization'][WIDEN_KEY]} "
                    "(the recipe)": recipe}
        model = {"int8": shown(file), "variants": {label: {"drops": drops(q, sets)} for label, q in variants.items()}}
        ms, load = timings(single, recipe, args.rounds)
        result["other_load"][name] = load["other_processes_cpu_share"]
        macs = count_macs(ckpt.build(), SIZE)
        model["cost"] = {"gmacs_per_mp": macs.gmacs_per_megapixel,
                         "added_gmacs_per_mp": added_macs(recipe) / 1e9 / macs.raw_megapixels,
                         "ms": ms}
        result["models"][name] = model
        print(f"{name}: " + ", ".join(f"{label} gate {row['drops']['gate']['drop_db']:.3f} held-out "
                                      f"{row['drops']['held-out']['drop_db']:.3f}"
                                      for label, row in model["variants"].items()), flush=True)
    write_json(path, result)
    write_text(RESULTS / "int8_split_input.md", markdown(result))
    print(f"wrote {RESULTS / 'int8_split_input.md'}")


if __name__ == "__main__":
    main()
