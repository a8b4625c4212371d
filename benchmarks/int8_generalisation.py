"""Is the int8 drop a generalisation gap? The shipped int8 array's RAW PSNR drop against its float
models on the photos its QAT trained on and on held-out photos, at the QAT's crop size and at
the held-out set's (int8_recipe.py): if the training photos lost much less, more or other data
would be the lever; if they lose as much, it is the quantized network's fit itself. Also on
fad-export's validation patches (the README command's gate), and every figure with its
standard error, so a reader sees how sure each set's verdict is.

    python benchmarks/int8_generalisation.py   # writes benchmarks/results/int8_generalisation.{md,json}
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import (VALIDATION_CROP, VALIDATION_CROPS, folder_images, synth_pairs, validation_set,
                                   validation_shots)
from fad_deploy.export.validate import denoised, patch_psnr
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.quant.qat import FakeQuantRunner
from fad_deploy.runners.torch_runner import TorchRunner

sys.path.insert(0, str(Path(__file__).parent))
from int8_recipe import EVAL_CROP, EVAL_CROPS, EVAL_SEED, GATE_CROPS_BEFORE, RECIPE  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SPLITS = ("train", "test")  # `fad-data fetch`'s photos: the QAT's (through fad-train's patch cache) and held-out
CROPS = (RECIPE.crop, EVAL_CROP)  # packed: the QAT's crops and the held-out set's
GATE = "fad-export's validation patches (the gate)"


def stats(values: np.ndarray) -> dict:
    """Mean and its standard error (the patches' spread over the square root of their number)."""
    return {"mean": float(values.mean()), "se": float(values.std(ddof=1) / np.sqrt(len(values)))}


def row(float_runner, int8_runner, pairs: dict, **label) -> dict:
    """The float model's RAW PSNR and the int8 drop on ``pairs``, mean and per level, each with its
    standard error over the patches (the drop is paired: float and int8 on the same patch)."""
    base = patch_psnr(denoised(float_runner, pairs), pairs)
    drop = base - patch_psnr(denoised(int8_runner, pairs), pairs)
    return {**label, "patches": len(drop), "float_db": float(base.mean()), "drop": stats(drop),
            "drop_by_shot": {f"{s:.3g}": stats(drop[pairs["shot"] == s]) for s in np.unique(pairs["shot"])}}


def drops(name: str, photos: int) -> list[dict]:
    """One row per set: the photos and crop sizes above, then fad-export's validation patches."""
    ckpt = load_checkpoint(models_dir() / "nsma" / f"{name}.pt")
    int8 = load_checkpoint(models_dir() / "nsma" / f"{name}.int8.pt")
    runners = TorchRunner(ckpt), FakeQuantRunner(int8)  # built once, used on every set
    rows = []
    for split in SPLITS:
        images = list(folder_images(default_cache_dir() / "photos" / split, 1, None))[:photos]
        for crop in CROPS:
            pairs = synth_pairs(images, crop, EVAL_CROPS, validation_shots(ckpt.shot_range), EVAL_SEED)
            rows.append(row(*runners, pairs, photos=f"{split} ({len(images)})", crop=crop))
    for crops in (VALIDATION_CROPS, GATE_CROPS_BEFORE):
        gate = validation_set(ckpt.shot_range, crops)[0]
        rows.append(row(*runners, gate, photos=gate_label(crops), crop=int(gate["noisy"].shape[-1])))
    return rows


def gate_label(crops: int) -> str:
    return f"{GATE}, {crops} crops a photo"


def markdown(result: dict) -> str:
    lines = ["# Is the int8 drop a generalisation gap? And how sure is each figure?", "",
             "Made by `python benchmarks/int8_generalisation.py`. The shipped int8 checkpoints "
             "(models/nsma/<model>.int8.pt, made as their cards say) against their float models, fake-quant in "
             "PyTorch (the int8 TFLite matches it: "
             f"parity >= 45 dB in fad-export's validation). The first {result['photos']} photos of each of "
             "`fad-data fetch`'s folders: train (the QAT's photos, through fad-train's patch cache; its crops are "
             f"{RECIPE.crop} packed) and test (held-out; int8_recipe.md's set is the test photos' {EVAL_CROP} row); "
             f"{EVAL_CROPS} crops per photo, seed {EVAL_SEED}, at 4 shot levels inside each model's sub-range (read "
             f"noise on UPI's line); then {GATE}, as fad-export builds them ({VALIDATION_CROPS} crops a photo) and as "
             f"it did before ({GATE_CROPS_BEFORE}). Each drop +- its standard error over the patches.", "",
             "| model | photos | crop | patches | float RAW PSNR dB | drop dB | per level dB |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, rows in result["models"].items():
        for r in rows:
            per = ", ".join(f"{v['mean']:+.3f} +- {v['se']:.3f}" for v in r["drop_by_shot"].values())
            lines.append(f"| {name} | {r['photos']} | {r['crop']} | {r['patches']} | {r['float_db']:.2f} | "
                         f"{r['drop']['mean']:+.3f} +- {r['drop']['se']:.3f} | {per} |")
    lines += ["", "Mean drop over the models, training photos / held-out photos: " + "; ".join(
        f"{crop}-pixel crops {mean_drop(result, 'train', crop):+.3f} / {mean_drop(result, 'test', crop):+.3f} dB"
        for crop in CROPS) + ". Where the two are alike, the int8 network fits the photos it was trained on no "
        "better than new ones: the drop is not a generalisation gap, and more QAT (or a better-fitting quantized "
        "network), not more data, is the lever. The standard errors say how far a figure can be trusted: a gate "
        "decision closer to its bound than about two of them (per level, on few patches) is partly chance.",
        "", f"The gate's patches at {VALIDATION_CROPS} / {GATE_CROPS_BEFORE} crops a photo, mean drop over the "
        "models: "
        + " / ".join(f"{mean_drop(result, gate_label(c), VALIDATION_CROP):+.3f}"
                     for c in (VALIDATION_CROPS, GATE_CROPS_BEFORE))
        + " dB."]
    return "\n".join(lines + [""])


def mean_drop(result: dict, photos: str, crop: int) -> float:
    return float(np.mean([r["drop"]["mean"] for rows in result["models"].values() for r in rows
                          if r["photos"].startswith(photos) and r["crop"] == crop]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[f"fan-nsma-{i}" for i in range(4)])
    p.add_argument("--photos", type=int, default=12, help="photos of each folder (the test folder has 12)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"photos": args.photos,
              "models": {name: drops(name, args.photos) for name in args.models}}
    write_json(args.results / "int8_generalisation.json", result)
    write_text(args.results / "int8_generalisation.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
