"""Accuracy of the blind noise estimator (fad_deploy.nsma.estimate) on synthetic data:
unprocessed photos (scikit-image's, and `fad-data fetch`'s held-out test photos when
present, prepared like training photos) with known noise at shot levels log-spaced over
the training range (read noise from UPI's regression), at several crop sizes.

Reports the relative error of a (estimate / true - 1) per level and crop size, how often
the estimate picks the same array sub-range as the true a, and the "floor": what the
estimator reads on the clean images (their own grain and fine texture).

    python benchmarks/nsma_estimator.py       # writes benchmarks/results/nsma_estimator.{md,json}
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fad_deploy.data.noise import SHOT_RANGE, NoiseParams, add_noise, read_from_shot
from fad_deploy.data.synth import shot_levels
from fad_deploy.data.unprocess import random_params, unprocess
from fad_deploy.fileio import write_json, write_text
from fad_deploy.nsma.estimate import estimate_noise
from fad_deploy.data.photos import SKIMAGE_PHOTOS, default_cache_dir, skimage_photo
from fad_deploy.nsma.evaluate import TEST_PHOTOS, SetConfig, set_images
from fad_deploy.nsma.partition import subranges
from fad_deploy.nsma.select import ShotOutOfRangeWarning, SubRange, select_model

RESULTS = Path(__file__).parent / "results"
CROPS = (64, 128, 256)  # packed sizes (RGB crops twice as large)
LEVELS = 8
CROPS_PER_IMAGE = 4
SEED = 0


def crops(images, crop: int, n: int, rng: np.random.Generator):
    """``n`` unprocessed clean crops per image that fits ``crop``."""
    rgb = 2 * crop
    for name, image in images:
        h, w = image.shape[:2]
        if h < rgb or w < rgb:
            continue
        for _ in range(n):
            y, x = 2 * rng.integers(0, (h - rgb) // 2 + 1), 2 * rng.integers(0, (w - rgb) // 2 + 1)
            yield name, unprocess(image[y : y + rgb, x : x + rgb], random_params(rng))


def summary(rel: np.ndarray) -> dict:
    return {"median_rel_error": round(float(np.median(rel)), 4),
            "median_abs_rel_error": round(float(np.median(np.abs(rel))), 4),
            "p90_abs_rel_error": round(float(np.quantile(np.abs(rel), 0.9)), 4),
            "max_abs_rel_error": round(float(np.max(np.abs(rel))), 4), "n": int(rel.size)}


def run(images, source: str) -> dict:
    rng = np.random.default_rng(SEED)
    table = [SubRange(str(i), "", lo, hi) for i, (lo, hi) in enumerate(subranges())]
    shots = shot_levels(LEVELS)
    out = {"photos": source, "images": len(images), "levels": [float(a) for a in shots], "by_crop": {}}
    for crop in CROPS:
        clean = list(crops(images, crop, CROPS_PER_IMAGE, rng))
        rel, same, floor = {float(a): [] for a in shots}, [], []
        for _, c in tqdm(clean, desc=f"{source} {crop}x{crop}", unit="crop", leave=False):
            floor.append(estimate_noise(c).params.shot)
            for a in shots:
                est = estimate_noise(add_noise(c, NoiseParams(float(a), float(read_from_shot(a))), rng)).params.shot
                rel[float(a)].append(est / a - 1)
                same.append(select_model(table, est).index == select_model(table, float(a)).index)
        every = np.concatenate([np.array(v) for v in rel.values()])
        out["by_crop"][crop] = {
            "crops": len(clean), "all_levels": summary(every),
            "per_level": {a: summary(np.array(v)) for a, v in rel.items()},
            "same_subrange": round(float(np.mean(same)), 4),
            "clean_floor_median_a": float(np.median(floor)),
        }
    return out


def markdown(results: list[dict]) -> str:
    md = ["# Blind noise estimator accuracy (synthetic data)", "",
          "Command: `python benchmarks/nsma_estimator.py`. Estimator: `fad_deploy/nsma/estimate.py` "
          "(second-difference residuals in 8x8 blocks per Bayer plane, texture rejected by a roughness test on "
          "the other planes, weighted non-negative line fit var = a x + b, iterated). Relative error of a = "
          f"estimate / true - 1; shot levels log-spaced over [{SHOT_RANGE[0]:g}, {SHOT_RANGE[1]:g}], read noise "
          "from UPI's regression, "
          f"{CROPS_PER_IMAGE} random crops per photo, seed {SEED}. 'same sub-range': the estimate selects the same "
          "model of the 4-model array as the true a. 'clean floor': median a estimated on the crops before any "
          "noise is added (the photos' own grain and fine texture), which bounds the accuracy at the lowest levels.",
          ""]
    for r in results:
        md += [f"## {r['photos']} ({r['images']} photos)", ""]
        md.append("| packed crop | crops | median rel. error | median abs. | p90 abs. | max abs. | same sub-range "
                  "| clean floor a |")
        md.append("|---|---|---|---|---|---|---|---|")
        for crop, c in r["by_crop"].items():
            s = c["all_levels"]
            md.append(f"| 4x{crop}x{crop} | {c['crops']} | {s['median_rel_error']:+.3f} "
                      f"| {s['median_abs_rel_error']:.3f} | {s['p90_abs_rel_error']:.3f} "
                      f"| {s['max_abs_rel_error']:.3f} | {100 * c['same_subrange']:.1f}% "
                      f"| {c['clean_floor_median_a']:.2e} |")
        md += ["", "Per level: median relative error (p90 of the absolute error)", ""]
        md.append("| packed crop | " + " | ".join(f"a={a:.2g}" for a in r["levels"]) + " |")
        md.append("|---|" + "---|" * len(r["levels"]))
        for crop, c in r["by_crop"].items():
            cells = [f"{v['median_rel_error']:+.3f} ({v['p90_abs_rel_error']:.2f})" for v in c["per_level"].values()]
            md.append(f"| 4x{crop}x{crop} | " + " | ".join(cells) + " |")
        md.append("")
    return "\n".join(md)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", ShotOutOfRangeWarning)  # estimates beyond the range clamp, as intended
    results = [run([(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS], "scikit-image photos (full resolution)")]
    test_photos = default_cache_dir() / TEST_PHOTOS
    if test_photos.is_dir():
        images, _ = set_images(SetConfig(photos=str(test_photos)))
        results.append(run(images, f"held-out test photos ($FAD_CACHE/{TEST_PHOTOS}, downscaled as for training)"))
    write_json(args.results / "nsma_estimator.json", {"results": results})
    write_text(args.results / "nsma_estimator.md", markdown(results))
    print(f"wrote {args.results / 'nsma_estimator.md'}")


if __name__ == "__main__":
    sys.exit(main())
