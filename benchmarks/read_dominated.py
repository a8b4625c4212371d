"""Images whose noise is mostly read noise: what `fad-denoise` gets from the shipped array run at
the image's own (a, b), and at the level fad_deploy.data.noise.network_noise gives it (where b
exceeds 4 a x at the image's mean level x, half the excess moved into the shot term).

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
from fad_deploy.data.noise import READ_DOMINANCE, read_from_shot
from fad_deploy.data.photos import SKIMAGE_PHOTOS, skimage_photo
from fad_deploy.data.synth import at_network_levels, synth_pairs
from fad_deploy.evaluate.quality import score
from fad_deploy.fileio import write_json, write_text
from fad_deploy.nsma.array import load_array
from fad_deploy.nsma.evaluate import SetConfig, array_choices, array_denoise, set_images
from fad_deploy.profile.table import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHOTS = (1e-6, 1e-5, 1e-4, 1e-3, 1.2e-2)  # a: far below the array's range (1e-4..1.2e-2) to its top
READS = (1e-6, 1e-5, 1e-4, 1e-3)  # b: a read-noise std of 0.1 % to 3 % of white
# choosing READ_DOMINANCE on the validation photos: these thresholds at the noise grid's two highest shot
# levels with 10x UPI's read noise (benchmarks/noise_grid.py) and at read-dominated levels
DOMINANCES = (1.0, 2.0, 3.0, 4.0, 6.0)
TUNING_LEVELS = ((1.2e-2, 10.0 * float(read_from_shot(1.2e-2))), (4.61e-3, 10.0 * float(read_from_shot(4.61e-3))),
                 (1e-3, 1e-3), (1e-4, 1e-4), (1e-6, 1e-5), (1e-5, 1e-6), (1e-3, 1e-4), (1e-4, 1e-5))
TUNING_CROP, TUNING_CROPS = 64, 3


def raw_psnr(array, pairs: dict, dominance: float | None) -> float:
    """Mean RAW PSNR of the array on ``pairs``, each image run at its annotated (a, b) (``dominance``
    None) or at network_noise's level for it with that threshold."""
    given = pairs if dominance is None else at_network_levels(pairs, dominance)[0]
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
            rows.append({"shot": a, "read": b, "read_dominated": at_network_levels(pairs)[1],
                         "noisy": float(score(pairs["noisy"], pairs).mean()["raw_psnr"]),
                         "as_given": raw_psnr(array, pairs, None),
                         "network_level": raw_psnr(array, pairs, READ_DOMINANCE)})
            print(f"a={a:g} b={b:g}: {rows[-1]['as_given']:.2f} -> {rows[-1]['network_level']:.2f} dB", flush=True)
    validation = [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS]
    tuning = []
    for a, b in TUNING_LEVELS:
        pairs = synth_pairs(validation, TUNING_CROP, TUNING_CROPS, [a], args.seed, read=b)
        tuning.append({"shot": a, "read": b, "as_given": raw_psnr(array, pairs, None),
                       "by_dominance": {f"{k:g}": raw_psnr(array, pairs, k) for k in DOMINANCES}})
    result = {"set": {"photos": source, "images": len(images), "crop": cfg.crop, "seed": cfg.seed},
              "array": os.path.relpath(array.source, ROOT), "backend": array.backend, "dominance": READ_DOMINANCE,
              "seconds": round(time.time() - start, 1), "rows": rows,
              "tuning": {"photos": "scikit-image's (the validation photos)", "images": len(validation) * TUNING_CROPS,
                         "crop": TUNING_CROP, "rows": tuning}}
    write_json(args.results / "read_dominated.json", result)
    write_text(args.results / "read_dominated.md", markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {args.results / 'read_dominated.md'}")
    return result


def markdown(result: dict, argv: list[str]) -> str:
    s, t = result["set"], result["tuning"]
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
        f"crops. `network_noise` moves half the excess of b over {READ_DOMINANCE:g} a x (x: the image's mean level) "
        "into the shot term where there is one (v = (b - k a x) / 2, a' = a + v / x, b' = b - v) and leaves every "
        "other image as it is.",
        "",
        markdown_table(headers, table),
        "",
        f"Where it changes the level (at least one read-dominated image): the gain is {min(gains):+.2f} to "
        f"{max(gains):+.2f} dB (mean {np.mean(gains):+.2f})." if gains else "No image was read-dominated.",
        "",
        "## The threshold k, chosen on the validation photos",
        "",
        f"{t['images']} crops of {t['crop']}x{t['crop']} packed from {t['photos']}, the same array; RAW PSNR gain over "
        f"running each image at its (a, b), for each k (network_noise moves noise where b > k a x). The first two "
        f"rows are the noise grid's two highest shot levels at 10x UPI's read noise (issue 19's grid), where the "
        f"networks handle the read noise as it is. The shipped k is {result['dominance']:g}.",
        "",
        markdown_table(["a", "b", "run at (a, b)", *(f"k = {k}" for k in t["rows"][0]["by_dominance"])],
                       [[f"{r['shot']:g}", f"{r['read']:.3g}", f"{r['as_given']:.3f}",
                         *(f"{v - r['as_given']:+.3f}" for v in r["by_dominance"].values())] for r in t["rows"]]),
        "",
    ])


if __name__ == "__main__":
    main()
