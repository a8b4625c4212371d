"""Images whose noise is mostly read noise, and dark images: what `fad-denoise` gets from the shipped
array run at the image's own (a, b), and at the level fad_deploy.data.noise.network_noise gives it
(where b lies outside READ_BAND_LOW to READ_BAND times UPI's line for a, the level of equal variance at
the image's mean level on that band's nearer edge).

Held-out photos (the fetched test photos, never used in training), one seeded crop each, as they are
and darkened (the clean crop scaled, the noise drawn again), with synthetic noise on a grid of shot
levels a (from far below the array's range to its top) and read-noise variances b (from on UPI's line
far below it to far above it); the array picks its model and runs its k-sigma transform from the level
it is given, as fad-denoise does. READ_BAND and READ_BAND_LOW are chosen on the validation photos (the
second and third tables).

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
from fad_deploy.data.noise import MEAN_FLOOR, READ_BAND, READ_BAND_LOW, NoiseParams, add_noise, read_from_shot
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
# choosing READ_BAND and READ_BAND_LOW on the validation photos: these bands (top) and bottoms at the array's
# top shot level on UPI's line, the noise grid's two highest shot levels with 10x and 0.1x UPI's read noise
# (benchmarks/noise_grid.py), at read-dominated levels and with read noise far below the line, on crops as
# they are, darkened, and black
BANDS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
LOW_BANDS = (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0)
TUNING_LEVELS = ((1.2e-2, float(read_from_shot(1.2e-2))), (1.2e-2, 10.0 * float(read_from_shot(1.2e-2))),
                 (4.61e-3, 10.0 * float(read_from_shot(4.61e-3))),
                 (1e-3, 1e-3), (1e-4, 1e-4), (1e-6, 1e-5), (1e-5, 1e-6), (1e-3, 1e-4), (1e-4, 1e-5),
                 (1.2e-2, 0.1 * float(read_from_shot(1.2e-2))), (4.61e-3, 0.1 * float(read_from_shot(4.61e-3))),
                 (1.2e-2, 0.01 * float(read_from_shot(1.2e-2))), (1.77e-3, 0.01 * float(read_from_shot(1.77e-3))))
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


def band_psnr(array, pairs: dict, band: tuple[float, float], as_given: float) -> float:
    """Mean RAW PSNR of the array on ``pairs`` run at network_noise's level for ``band``
    (``as_given``, their PSNR at their own (a, b), where no image moves)."""
    run, moved = at_network_levels(pairs, band)
    return raw_psnr(array, run) if moved else as_given


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
                as_given = raw_psnr(array, pairs)
                rows.append({"shot": a, "read": b, "dark": dark, "moved": at_network_levels(pairs)[1],
                             "noisy": float(score(pairs["noisy"], pairs).mean()["raw_psnr"]), "as_given": as_given,
                             "network_level": band_psnr(array, pairs, (READ_BAND_LOW, READ_BAND), as_given)})
                print(f"a={a:g} b={b:g} x{dark:g}: {rows[-1]['as_given']:.2f} -> {rows[-1]['network_level']:.2f} dB",
                      flush=True)
    validation = [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS]
    tuning = []
    for a, b in TUNING_LEVELS:
        crops = synth_pairs(validation, TUNING_CROP, TUNING_CROPS, [a], args.seed, read=b)
        for dark in TUNING_DARKNESS:
            pairs = darkened(crops, dark, args.seed)
            as_given = raw_psnr(array, pairs)
            tuning.append({"shot": a, "read": b, "dark": dark, "as_given": as_given,
                           "earlier": raw_psnr(array, earlier_rule(pairs)),
                           "by_band": {f"{k:g}": band_psnr(array, pairs, (READ_BAND_LOW, k), as_given) for k in BANDS},
                           "by_low_band": {f"{k:g}": band_psnr(array, pairs, (k, READ_BAND), as_given)
                                           for k in LOW_BANDS}})
            print(f"tuning a={a:g} b={b:.3g} x{dark:g}: {as_given:.2f} dB", flush=True)
    result = {"set": {"photos": source, "images": len(images), "crop": cfg.crop, "seed": cfg.seed},
              "array": os.path.relpath(array.source, ROOT), "backend": array.backend, "band": READ_BAND,
              "low_band": READ_BAND_LOW,
              "seconds": round(time.time() - start, 1), "rows": rows,
              "tuning": {"photos": "scikit-image's (the validation photos)", "images": len(validation) * TUNING_CROPS,
                         "crop": TUNING_CROP, "rows": tuning}}
    write_json(args.results / "read_dominated.json", result)
    write_text(args.results / "read_dominated.md", markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {args.results / 'read_dominated.md'}")
    return result


def band_summary(rows: list[dict], key: str, shipped: float) -> str:
    """Each band's mean and worst gain over running at (a, b) (``rows[...][key]``), and the best mean."""
    bands = list(rows[0][key])
    mean = {k: np.mean([r[key][k] - r["as_given"] for r in rows]) for k in bands}
    worst = {k: min(r[key][k] - r["as_given"] for r in rows) for k in bands}
    return ("Per band: " + ", ".join(f"{k}: {mean[k]:+.3f} dB (worst {worst[k]:+.3f})" for k in bands)
            + f". The best mean is {max(bands, key=mean.get)}; the shipped one is {shipped:g}.")


def band_table(rows: list[dict], key: str, label: str, earlier: bool = False) -> str:
    """The tuning rows' RAW PSNR at (a, b) and each band's gain over it."""
    bands = list(rows[0][key])
    return markdown_table(
        ["a", "b", "crops", "run at (a, b)", *(["earlier rule"] if earlier else []), *(f"{label} {k}" for k in bands)],
        [[f"{r['shot']:g}", f"{r['read']:.3g}", f"x{r['dark']:g}", f"{r['as_given']:.3f}",
          *(f"{v - r['as_given']:+.3f}" for v in ([r["earlier"]] if earlier else []) + list(r[key].values()))]
         for r in rows])


def markdown(result: dict, argv: list[str]) -> str:
    s, t = result["set"], result["tuning"]
    headers = ["a", "b", "crops", "moved", "noisy", "run at (a, b)", "run at network_noise", "gain"]
    table = [[f"{r['shot']:g}", f"{r['read']:g}", "as they are" if r["dark"] == 1 else f"x{r['dark']:g}",
              f"{r['moved']} of {s['images']}", f"{r['noisy']:.2f}", f"{r['as_given']:.2f}",
              f"{r['network_level']:.2f}", f"{r['network_level'] - r['as_given']:+.2f}"] for r in result["rows"]]
    gains = [r["network_level"] - r["as_given"] for r in result["rows"] if r["moved"]]
    return "\n".join([
        "# Read-dominated noise and dark frames: the array run at the image's (a, b) and at network_noise's level",
        "",
        f"Made by `{' '.join(['python benchmarks/read_dominated.py', *argv])}` ({result['seconds']:.0f} s). "
        f"{s['images']} held-out photos ({s['photos']}), one {s['crop']}x{s['crop']} packed crop each (seed "
        f"{s['seed']}), as they are and darkened (the clean crop scaled, the noise drawn again), synthetic noise of "
        f"variance a x + b; the array ({result['array']}, {result['backend']}) picks its model and runs its k-sigma "
        "transform from the level it is given. RAW PSNR (dB), mean over the crops. `network_noise` leaves read noise "
        f"from {result['low_band']:g} to {result['band']:g} times UPI's line L(a) = e^1.2 a^2.18 as it is; outside, "
        "it runs the image at the level of equal variance at its mean level x on the band's nearer edge k "
        "(a' x + k L(a') = a x + b, b' = k L(a')).",
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
        "band (network_noise moves read noise above that many times UPI's line; its bottom at "
        f"{result['low_band']:g}). "
        "The first three levels carry read noise the networks learnt or handle as it is (the array's top shot level "
        "on the line, and the noise grid's two highest with 10x UPI's read noise, issue 19's grid); the next six are "
        "read-dominated, the last four below the line (0.1x: issue 19's grid). The earlier rule (shipped before the "
        f"band) moved half the excess of b over {EARLIER_K:g} a x at the mean level x into the shot term, dark frames "
        "on UPI's line included.",
        "",
        band_table(t["rows"], "by_band", "band", earlier=True),
        "",
        f"Mean gain of the earlier rule: {np.mean([r['earlier'] - r['as_given'] for r in t['rows']]):+.3f} dB "
        f"(worst {min(r['earlier'] - r['as_given'] for r in t['rows']):+.3f}). "
        + band_summary(t["rows"], "by_band", result["band"]),
        "",
        "## The band's bottom, chosen on the validation photos",
        "",
        "The same crops and levels; the gain for each bottom (network_noise moves read noise below that many times "
        f"UPI's line onto it; its top at {result['band']:g}; 0: nothing moves below).",
        "",
        band_table(t["rows"], "by_low_band", "bottom"),
        "",
        band_summary(t["rows"], "by_low_band", result["low_band"]),
        "",
    ])

if __name__ == "__main__":
    main()
