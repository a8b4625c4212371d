"""The int8 array's drop against its float models on brighter frames: the held-out photos as
they are and brightened (each sRGB photo times a gain, clipped, before unprocessing), so that
the RAW frames' mean level goes from about 0.18 to 0.5-0.65, as in bright daylight scenes.

The k-sigma transform takes a frame to the anchor's scale, u = a_A x / a + ...: at low noise a
bright pixel becomes a large u, and every activation of an int8 network has the fixed range that
QAT learnt on the training patches (mostly darker). This measures what that costs.

    python benchmarks/int8_brightness.py [--crop 96] [--seed 0] [--variants NAME ...]

With ``--variants`` (int8_recipe.py's names), each sub-range model's int8 checkpoint made with
that QAT variant (kept by int8_recipe.py, or shipped) is scored too, at its own sub-range's centre,
through PyTorch's fake-quant network (which the int8 TFLite reproduces: parity >= 45 dB).

Writes benchmarks/results/int8_brightness.{md,json}.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from fad_deploy.checks import positive_int, random_seed
from fad_deploy.data.patch_cache import load_patch_cache
from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import noise_list, synth_pairs
from fad_deploy.evaluate.quality import score
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint
from fad_deploy.nsma.array import load_array
from fad_deploy.nsma.evaluate import SetConfig, array_choices, array_denoise, set_images, subrange_levels
from fad_deploy.profile.table import markdown_table
from fad_deploy.quant.qat import FakeQuantRunner
from fad_deploy.runners.tiling import framed
from int8_recipe import VARIANTS, made_or_split  # (this folder's)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GAINS = (1.0, 2.0, 4.0)  # sRGB photo times this, clipped to 1, before unprocessing
BACKENDS = ("torch", "tflite-int8")  # the float checkpoints, the shipped int8 files


def training_levels() -> dict | None:
    """The mean RAW level of the default patch cache's patches (what training and QAT saw) and
    the 90th percentile of the patches' means, or None when the cache is not built."""
    path = default_cache_dir() / "patches-train.npz"
    if not path.is_file():
        return None
    means = load_patch_cache(path)["raw"].astype(np.float32).mean(axis=(1, 2, 3))
    return {"cache": f"$FAD_CACHE/{path.name}", "mean": float(means.mean()), "p90": float(np.percentile(means, 90))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crop", type=positive_int, default=96, help="packed crop size")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=[], metavar="NAME",
                   help="int8_recipe.py's QAT variants whose int8 checkpoints are scored too")
    args = p.parse_args(argv)
    cfg = SetConfig(crop=args.crop, crops_per_image=1, seed=args.seed)
    images, source = set_images(cfg)
    arrays = {b: load_array(None, b) for b in BACKENDS}
    shots = subrange_levels(arrays["tflite-int8"].table, 1)  # each sub-range's centre
    names = {b: [entry.name for entry in arr.table] for b, arr in arrays.items()}
    if names["torch"] != names["tflite-int8"]:
        sys.exit(f"int8_brightness: the float array ({', '.join(names['torch'])}) and the int8 files "
                 f"({', '.join(names['tflite-int8'])}) are not the same models")
    # each variant's int8 checkpoint per sub-range model (None: not made), run as fad-denoise runs a model
    floats = [load_checkpoint(arrays["torch"].root / e.file) for e in arrays["torch"].table] if args.variants else []
    variants = {v: [framed(FakeQuantRunner(q)) if (q := made_or_split(ckpt, VARIANTS[v])[0]) else None
                    for ckpt in floats] for v in args.variants}
    start, rows = time.time(), []
    for gain in GAINS:
        brightened = [(name, np.clip(image * gain, 0, 1)) for name, image in images]
        for i, a in enumerate(shots):
            pairs = synth_pairs(brightened, cfg.crop, 1, [float(a)], cfg.seed)
            psnr = {b: float(score(array_denoise(arr, pairs, array_choices(arr, pairs)), pairs).mean()["raw_psnr"])
                    for b, arr in arrays.items()}
            psnr["variants"] = {v: float(score(runners[i].denoise(pairs["noisy"], noise_list(pairs)),
                                               pairs).mean()["raw_psnr"])
                                for v, runners in variants.items() if runners[i] is not None}
            rows.append({"gain": gain, "shot": float(a), "mean_level": float(pairs["clean"].mean()), **psnr})
            print(f"gain {gain:g} a={a:.3g}: float {psnr['torch']:.2f}, int8 {psnr['tflite-int8']:.2f}", flush=True)
    result = {"set": {"photos": str(source), "images": len(images), "crop": cfg.crop, "seed": cfg.seed},
              "training_patches": training_levels(),
              "arrays": {b: os.path.relpath(arr.source, ROOT) for b, arr in arrays.items()},
              "seconds": round(time.time() - start, 1), "rows": rows}
    write_json(args.results / "int8_brightness.json", result)
    write_text(args.results / "int8_brightness.md", markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {args.results / 'int8_brightness.md'}")
    return result


def markdown(result: dict, argv: list[str]) -> str:
    s = result["set"]
    names = list(dict.fromkeys(v for r in result["rows"] for v in r["variants"]))
    table = [[f"{r['gain']:g}", f"{r['mean_level']:.3f}", f"{r['shot']:.3g}", f"{r['torch']:.2f}",
              f"{r['tflite-int8']:.2f}", f"{r['torch'] - r['tflite-int8']:+.2f}",
              *(f"{r['torch'] - r['variants'][v]:+.2f}" if v in r["variants"] else "" for v in names)]
             for r in result["rows"]]

    def by_gain(psnr) -> str:  # mean and worst drop per gain, over the rows psnr(row) scores (None: not scored)
        drops = {g: [r["torch"] - x for r in result["rows"] if r["gain"] == g and (x := psnr(r)) is not None]
                 for g in GAINS}
        return ", ".join(f"{g:g}x {np.mean(d):+.2f} dB (worst {max(d):+.2f})" for g, d in drops.items() if d)

    variant_lines = [f"- drop {j}: {v} (int8_recipe.py's variant, PyTorch's fake-quant network); by gain: "
                     + by_gain(lambda r, v=v: r["variants"].get(v)) for j, v in enumerate(names, 1)]
    return "\n".join([
        "# The int8 array on brighter frames",
        "",
        f"Made by `{shlex.join(['python', 'benchmarks/int8_brightness.py', *argv])}` ({result['seconds']:.0f} s). "
        f"{s['images']} held-out photos ({s['photos']}), one {s['crop']}x{s['crop']} packed crop each (seed "
        f"{s['seed']}), each sRGB photo times the gain (clipped) before unprocessing; noise at each sub-range's "
        f"centre, read noise on UPI's line. The array as fad-eval runs it: float checkpoints "
        f"({result['arrays']['torch']}, torch) and the shipped int8 files ({result['arrays']['tflite-int8']}). "
        "RAW PSNR (dB), mean over the crops.",
        "",
        markdown_table(["gain", "mean level", "a", "float", "int8", "drop", *(f"drop {j}" for j, _ in
                                                                           enumerate(names, 1))], table),
        "",
        *([*variant_lines, ""] if names else []),
        "Mean drop of the shipped int8 files by gain: " + by_gain(lambda r: r["tflite-int8"])
        + ". The int8 activations' ranges were learnt on patches of the training photos"
        + (f" (mean level {t['mean']:.3f}, 90th percentile of the patches' means {t['p90']:.3f}: {t['cache']})"
           if (t := result["training_patches"]) else "")
        + "; frames twice as bright lose more, most at the lowest noise, where the k-sigma transform scales "
        "them most.",
        "",
    ])


if __name__ == "__main__":
    main()
