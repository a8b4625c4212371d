"""Images whose noise is mostly read noise, and dark images: what `fad-denoise` gets from the shipped
array run at the image's own (a, b), and at the level fad_deploy.data.noise.network_noise gives it
(where b exceeds READ_BAND times UPI's line for a, the level of equal variance at the image's mean
level on that band's top).

Held-out photos (the fetched test photos, never used in training), one seeded crop each, as they are
and darkened (the clean crop scaled, the noise drawn again), with synthetic noise on a grid of shot
levels a (from far below the array's range to its top) and read-noise variances b (from on UPI's line
to far above it); the array picks its model and runs its k-sigma transform from the level it is
given, as fad-denoise does. READ_BAND is chosen on the validation photos (the second table).

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
from fad_deploy.data.noise import MEAN_FLOOR, READ_BAND, NoiseParams, add_noise, read_from_shot
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
DARKNESS = (1.0, 0.1, 0.02)  # the clean crops scaled by these (1: as they are), the noise drawn again
# choosing READ_BAND on the validation photos: these bands at the array's top shot level on UPI's line, the
# noise grid's two highest shot levels with 10x UPI's read noise (benchmarks/noise_grid.py) and at
# read-dominated levels, on crops as they are, darkened, and black
BANDS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
TUNING_LEVELS = ((1.2e-2, float(read_from_shot(1.2e-2))), (1.2e-2, 10.0 * float(read_from_shot(1.2e-2))),
                 (4.61e-3, 10.0 * float(read_from_shot(4.61e-3))),
                 (1e-3, 1e-3), (1e-4, 1e-4), (1e-6, 1e-5), (1e-5, 1e-6), (1e-3, 1e-4), (1e-4, 1e-5))
TUNING_DARKNESS = (*DARKNESS, 0.0)
EARLIER_K = 4.0  # the rule network_noise followed before the band (see earlier_rule)
TUNING_CROP, TUNING_CROPS = 64, 3


def darkened(pairs: dict, scale: float, seed: int) -> dict:
    """``pairs`` with each clean crop scaled by ``scale`` and its noise (the pair's own a, b) drawn again."""
    if scale == 1.0:
        return pairs
    rng = np.random.default_rng(seed)
    clean = (pairs["clean"] * scale).astype(np.float32)
    noisy = np.stack([add_noise(c, NoiseParams(float(a), float(b)), rng)
                      for c, a, b in zip(clean, pairs["shot"], pairs["read"])])
    return {**pairs, "clean": clean, "noisy": noisy}


def earlier_rule(pairs: dict) -> dict:
    """``pairs`` at the level the rule before the band ran them: where b > EARLIER_K a x (x: the
    image's mean level, at least MEAN_FLOOR), half that excess moved into the shot term."""
    levels = []
    for a, b, mean in zip(pairs["shot"], pairs["read"], pairs["noisy"].mean(axis=(1, 2, 3))):
        x = max(float(mean), MEAN_FLOOR)
        moved = max((b - EARLIER_K * a * x) / 2, 0.0)
        levels.append((a + moved / x, b - moved))
    return {**pairs, "shot": np.array([a for a, _ in levels]), "read": np.array([b for _, b in levels])}


def raw_psnr(array, run: dict) -> float:
    """Mean RAW PSNR of the array on the pairs ``run``, each image run at the (a, b) it gives."""
    return float(score(array_denoise(array, run, array_choices(array, run)), run).mean()["raw_psnr"])


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
            crops = synth_pairs(images, cfg.crop, 1, [a], cfg.seed, read=b)
            for dark in DARKNESS:
                pairs = darkened(crops, dark, cfg.seed)
                rows.append({"shot": a, "read": b, "dark": dark, "moved": at_network_levels(pairs)[1],
                             "noisy": float(score(pairs["noisy"], pairs).mean()["raw_psnr"]),
                             "as_given": raw_psnr(array, pairs),
                             "network_level": raw_psnr(array, at_network_levels(pairs)[0])})
                print(f"a={a:g} b={b:g} x{dark:g}: {rows[-1]['as_given']:.2f} -> {rows[-1]['network_level']:.2f} dB",
                      flush=True)
    validation = [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS]
    tuning = []
    for a, b in TUNING_LEVELS:
        crops = synth_pairs(validation, TUNING_CROP, TUNING_CROPS, [a], args.seed, read=b)
        for dark in TUNING_DARKNESS:
            pairs = darkened(crops, dark, args.seed)
            tuning.append({"shot": a, "read": b, "dark": dark, "as_given": raw_psnr(array, pairs),
                           "earlier": raw_psnr(array, earlier_rule(pairs)),
                           "by_band": {f"{k:g}": raw_psnr(array, at_network_levels(pairs, k)[0]) for k in BANDS}})
    result = {"set": {"photos": source, "images": len(images), "crop": cfg.crop, "seed": cfg.seed},
              "array": os.path.relpath(array.source, ROOT), "backend": array.backend, "band": READ_BAND,
              "seconds": round(time.time() - start, 1), "rows": rows,
              "tuning": {"photos": "scikit-image's (the validation photos)", "images": len(validation) * TUNING_CROPS,
                         "crop": TUNING_CROP, "rows": tuning}}
    write_json(args.results / "read_dominated.json", result)
    write_text(args.results / "read_dominated.md", markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {args.results / 'read_dominated.md'}")
    return result


def markdown(result: dict, argv: list[str]) -> str:
    s, t = result["set"], result["tuning"]
    headers = ["a", "b", "crops", "moved", "noisy", "run at (a, b)", "run at network_noise", "gain"]
    table = [[f"{r['shot']:g}", f"{r['read']:g}", "as they are" if r["dark"] == 1 else f"x{r['dark']:g}",
              f"{r['moved']} of {s['images']}", f"{r['noisy']:.2f}", f"{r['as_given']:.2f}",
              f"{r['network_level']:.2f}", f"{r['network_level'] - r['as_given']:+.2f}"] for r in result["rows"]]
    gains = [r["network_level"] - r["as_given"] for r in result["rows"] if r["moved"]]
    bands = list(t["rows"][0]["by_band"])
    mean_gain = {k: np.mean([r["by_band"][k] - r["as_given"] for r in t["rows"]]) for k in bands}
    worst = {k: min(r["by_band"][k] - r["as_given"] for r in t["rows"]) for k in bands}
    best = max(bands, key=mean_gain.get)
    return "\n".join([
        "# Read-dominated noise and dark frames: the array run at the image's (a, b) and at network_noise's level",
        "",
        f"Made by `{' '.join(['python benchmarks/read_dominated.py', *argv])}` ({result['seconds']:.0f} s). "
        f"{s['images']} held-out photos ({s['photos']}), one {s['crop']}x{s['crop']} packed crop each (seed "
        f"{s['seed']}), as they are and darkened (the clean crop scaled, the noise drawn again), synthetic noise of "
        f"variance a x + b; the array ({result['array']}, {result['backend']}) picks its model and runs its k-sigma "
        "transform from the level it is given. RAW PSNR (dB), mean over the crops. `network_noise` leaves read noise "
        f"up to {result['band']:g} times UPI's line (b = e^1.2 a^2.18) as it is; above, it runs the image at the "
        "level of equal variance at its mean level x on that band's top (a' x + B(a') = a x + b, b' = B(a')).",
        "",
        markdown_table(headers, table),
        "",
        f"Where it changes the level (at least one image moved): the gain is {min(gains):+.2f} to "
        f"{max(gains):+.2f} dB (mean {np.mean(gains):+.2f})." if gains else "No image was moved.",
        "",
        "## The band, chosen on the validation photos",
        "",
        f"{t['images']} crops of {t['crop']}x{t['crop']} packed from {t['photos']}, as they are, darkened and black "
        "(x0: the clean frame black), the same array; RAW PSNR gain over running each image at its (a, b), for each "
        "band (network_noise moves read noise above that many times UPI's line). The first three levels carry read "
        "noise the networks learnt or handle as it is (the array's top shot level on the line, and the noise grid's "
        "two highest with 10x UPI's read noise, issue 19's grid); the others are read-dominated. The earlier rule "
        f"(shipped before the band) moved half the excess of b over {EARLIER_K:g} a x at the mean level x into the "
        "shot term, dark frames on UPI's line included.",
        "",
        markdown_table(["a", "b", "crops", "run at (a, b)", "earlier rule", *(f"band {k}" for k in bands)],
                       [[f"{r['shot']:g}", f"{r['read']:.3g}", f"x{r['dark']:g}", f"{r['as_given']:.3f}",
                         *(f"{v - r['as_given']:+.3f}" for v in (r["earlier"], *r["by_band"].values()))]
                        for r in t["rows"]]),
        "",
        f"Mean gain of the earlier rule: {np.mean([r['earlier'] - r['as_given'] for r in t['rows']]):+.3f} dB "
        f"(worst {min(r['earlier'] - r['as_given'] for r in t['rows']):+.3f}). Per band: " + ", ".join(f"{k}: {mean_gain[k]:+.3f} dB (worst {worst[k]:+.3f})" for k in bands)
        + f". The best mean is band {best}; the shipped band is {result['band']:g}.",
        "",
    ])


if __name__ == "__main__":
    main()
