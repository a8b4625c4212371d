"""Images whose noise is mostly read noise: what `fad-denoise` gets from the shipped array run at
the image's own (a, b), and at the level fad_deploy.data.noise.network_noise gives it (where b
exceeds a x at the image's mean level x, half the variance at x moved into the shot term).

Held-out photos (the fetched test photos, never used in training), one seeded crop each, with
synthetic noise on a grid of shot levels a (from far below the array's range to its top) and
read-noise variances b (from on UPI's line to far above it); the array picks its model and runs
its k-sigma transform from the level it is given, as fad-denoise does.

    python benchmarks/read_dominated.py [--crop 128] [--seed 0] [--backend tflite-int8]

Writes benchmarks/results/read_dominated.{md,json}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from fad_deploy.checks import positive_int, random_seed
from fad_deploy.data.noise import NoiseParams, network_noise
from fad_deploy.data.synth import synth_pairs
from fad_deploy.evaluate.quality import score
from fad_deploy.fileio import write_json, write_text
from fad_deploy.nsma.array import load_array
from fad_deploy.nsma.evaluate import SetConfig, array_choices, array_denoise, set_images
from fad_deploy.profile.table import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHOTS = (1e-6, 1e-5, 1e-4, 1e-3, 1.2e-2)  # a: far below the array's range (1e-4..1.2e-2) to its top
READS = (1e-6, 1e-5, 1e-4, 1e-3)  # b: a read-noise std of 0.1 % to 3 % of white


def raw_psnr(array, pairs: dict, given: dict) -> float:
    """Mean RAW PSNR of the array run at the levels in ``given`` (the clean images of ``pairs``)."""
    return float(score(array_denoise(array, given, array_choices(array, given)), pairs).mean()["raw_psnr"])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crop", type=positive_int, default=128, help="packed crop size")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--backend", default=None, help="the array's backend (default: fad-denoise's, the int8 TFLite)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cfg = SetConfig(crop=args.crop, crops_per_image=1, seed=args.seed)
    images, source = set_images(cfg)
    array = load_array(None, args.backend)
    start = time.time()
    rows = []
    for a in SHOTS:
        for b in READS:
            pairs = synth_pairs(images, cfg.crop, 1, [a], cfg.seed, read=b)
            means = pairs["noisy"].mean(axis=(1, 2, 3))
            levels = [network_noise(NoiseParams(a, b), m) for m in means]
            run_at = {**pairs, "shot": np.array([n.shot for n in levels]), "read": np.array([n.read for n in levels])}
            rows.append({"shot": a, "read": b, "mean_level": float(means.mean()),
                         "read_dominated": int(sum(n != NoiseParams(a, b) for n in levels)),
                         "noisy": float(score(pairs["noisy"], pairs).mean()["raw_psnr"]),
                         "as_given": raw_psnr(array, pairs, pairs), "network_level": raw_psnr(array, pairs, run_at)})
            print(f"a={a:g} b={b:g}: {rows[-1]['as_given']:.2f} -> {rows[-1]['network_level']:.2f} dB", flush=True)
    result = {"set": {"photos": source, "images": len(images), "crop": cfg.crop, "seed": cfg.seed},
              "array": os.path.relpath(array.source, ROOT), "backend": array.backend,
              "seconds": round(time.time() - start, 1), "rows": rows}
    write_json(args.results / "read_dominated.json", result)
    write_text(args.results / "read_dominated.md", markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {args.results / 'read_dominated.md'}")
    return result


def markdown(result: dict, argv: list[str]) -> str:
    s = result["set"]
    headers = ["a", "b", "read-dominated images", "noisy", "run at (a, b)", "run at network_noise", "gain"]
    table = [[f"{r['shot']:g}", f"{r['read']:g}", f"{r['read_dominated']} of {s['images']}", f"{r['noisy']:.2f}",
              f"{r['as_given']:.2f}", f"{r['network_level']:.2f}", f"{r['network_level'] - r['as_given']:+.2f}"]
             for r in result["rows"]]
    gains = [r["network_level"] - r["as_given"] for r in result["rows"] if r["read_dominated"]]
    return "\n".join([
        "# Read-dominated noise: the array run at the image's (a, b) and at network_noise's level",
        "",
        f"Made by `{' '.join(['python benchmarks/read_dominated.py', *argv])}` ({result['seconds']:.0f} s). "
        f"{s['images']} held-out photos ({s['photos']}), one {s['crop']}x{s['crop']} packed crop each (seed "
        f"{s['seed']}), synthetic noise of variance a x + b; the array ({result['array']}, {result['backend']}) "
        "picks its model and runs its k-sigma transform from the level it is given. RAW PSNR (dB), mean over the "
        "crops. `network_noise` moves half the variance at the image's mean level x into the shot term where "
        "b > a x (a' = (a x + b) / 2x, b' = (a x + b) / 2) and leaves every other image as it is.",
        "",
        markdown_table(headers, table),
        "",
        f"Where it changes the level (at least one read-dominated image): the gain is {min(gains):+.2f} to "
        f"{max(gains):+.2f} dB (mean {np.mean(gains):+.2f})." if gains else "No image was read-dominated.",
        "",
    ])


if __name__ == "__main__":
    main()
