"""Noise outside the array's range: what the shipped array gives when an image's shot level a
lies below or above the levels its models learnt (1e-4 to 1.2e-2), run four ways.

- at a: the nearest model run at the image's own level (what fad-denoise did before);
- at the range's end: the nearest model run at the range's floor (below) or top (above);
- at the floor, a share of the change kept: below the range, the floor's output blended with
  the input, keeping the share a / floor of the network's change, or (shipped: the rule
  fad-denoise and fad-eval follow, fad_deploy.data.noise.floor_level) the share
  w = (a x + b) / (floor x + b), the image's noise variance at its mean level x over the one
  the network is told of. Above the range they run at a.

Synthetic noise at each a, with read noise on UPI's line and at b = 1e-5; each image is first
taken to the level fad-denoise runs it at (network_noise, for read-dominated images), as
fad-denoise does. Held-out photos (the fetched test photos, never used in training), one seeded
crop each; the rule was chosen on the validation photos (`--validation`: scikit-image's, 3 crops
each, written to out_of_range-validation.*).

    python benchmarks/out_of_range.py [--validation] [--crop 128] [--seed 0] [--backend torch]

Writes benchmarks/results/out_of_range[-validation][-BACKEND].{md,json}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from fad_deploy.checks import positive_int, random_seed
from fad_deploy.data.noise import read_from_shot
from fad_deploy.data.photos import SKIMAGE_PHOTOS, skimage_photo
from fad_deploy.data.synth import at_network_levels, synth_pairs
from fad_deploy.errors import count
from fad_deploy.evaluate.quality import denoise_set, score
from fad_deploy.fileio import write_json, write_text
from fad_deploy.nsma.array import load_array
from fad_deploy.nsma.evaluate import SetConfig, array_choices, array_denoise, set_images
from fad_deploy.nsma.select import keep_share
from fad_deploy.profile.table import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BELOW = (1e-6, 3e-6, 1e-5, 3e-5, 6e-5)  # a under the array's floor (1e-4)
ABOVE = (0.02, 0.04, 0.08)  # a over its top (1.2e-2)
READ_OFF_LINE = 1e-5


def validation_photos() -> list[tuple[str, np.ndarray]]:
    return [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS]


def run_at(array, pairs: dict, shots: np.ndarray) -> np.ndarray:
    """Each image with the model chosen for its own level, run at ``shots`` instead."""
    choices, out = array_choices(array, pairs), np.empty_like(pairs["noisy"])
    for i in np.unique(choices):
        sel = choices == i
        out[sel] = denoise_set(array.runner(int(i)), {**{k: v[sel] for k, v in pairs.items()}, "shot": shots[sel]})
    return out


def row(array, pairs: dict) -> dict:
    """RAW PSNR of the noisy input and of each way of running the array (see the module's doc)."""
    pairs = at_network_levels(pairs)[0]
    floor, top = array.table[0].shot_min, array.table[-1].shot_max

    def psnr(x: np.ndarray) -> float:
        return float(score(x, pairs).mean()["raw_psnr"])

    at_end = run_at(array, pairs, np.clip(pairs["shot"], floor, top))
    result = {"noisy": psnr(pairs["noisy"]), "at_a": psnr(run_at(array, pairs, pairs["shot"])), "at_end": psnr(at_end)}
    if (pairs["shot"] < floor).any():
        result["a_share_kept"] = psnr(keep_share(pairs["noisy"], at_end, np.minimum(pairs["shot"] / floor, 1.0)))
    result["shipped"] = psnr(array_denoise(array, pairs, array_choices(array, pairs)))
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crop", type=positive_int, default=128, help="packed crop size")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--validation", action="store_true", help="scikit-image's photos, 3 crops each (where the rule "
                   "was chosen) instead of the fetched test photos")
    p.add_argument("--backend", default=None, help="the array's backend (default: fad-denoise's, the int8 TFLite)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cfg = SetConfig(crop=args.crop, crops_per_image=3 if args.validation else 1, seed=args.seed)
    images, source = (validation_photos(), "scikit-image's photos") if args.validation else set_images(cfg)
    array = load_array(None, args.backend)
    start, rows = time.time(), []
    for a in (*BELOW, *ABOVE):
        for b in (float(read_from_shot(a)), READ_OFF_LINE):
            pairs = synth_pairs(images, cfg.crop, cfg.crops_per_image, [a], cfg.seed, read=b)
            rows.append({"shot": a, "read": b, **row(array, pairs)})
            print(f"a={a:g} b={b:.3g}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()
                                                      if k not in ("shot", "read")), flush=True)
    result = {"set": {"photos": str(source), "images": len(images), "crops_per_image": cfg.crops_per_image,
                      "crop": cfg.crop, "seed": cfg.seed},
              "array": os.path.relpath(array.source, ROOT), "backend": array.backend,
              "range": [array.table[0].shot_min, array.table[-1].shot_max],
              "seconds": round(time.time() - start, 1), "rows": rows}
    name = "-".join(["out_of_range", *(["validation"] if args.validation else []), *filter(None, [args.backend])])
    write_json(args.results / f"{name}.json", result)
    write_text(args.results / f"{name}.md", markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {args.results / name}.md")
    return result


def markdown(result: dict, argv: list[str]) -> str:
    s, (floor, top) = result["set"], result["range"]
    crops = count(s["crops_per_image"], f"{s['crop']}x{s['crop']} packed crop")
    keys = ("noisy", "at_a", "at_end", "a_share_kept", "shipped")
    table = [[f"{r['shot']:g}", f"{r['read']:.3g}", *(f"{r[k]:.2f}" if k in r else "" for k in keys)]
             for r in result["rows"]]
    below = [r for r in result["rows"] if r["shot"] < floor]
    above = [r for r in result["rows"] if r["shot"] > top]
    return "\n".join([
        "# Noise outside the array's range",
        "",
        f"Made by `{' '.join(['python benchmarks/out_of_range.py', *argv])}` ({result['seconds']:.0f} s). "
        f"{s['images']} photos ({s['photos']}), {crops} each (seed {s['seed']}), "
        f"synthetic noise of variance a x + b; the array ({result['array']}, {result['backend']}, range a = "
        f"{floor:g} to {top:g}) picks the model nearest the image's level and runs it at a, at the range's end "
        "(floor or top), or, below the range, at the floor with a share of its change kept (the output blended "
        "with the input): a / floor, or w = (a x + b) / (floor x + b), the image's noise variance at its mean "
        "level x over the floor's. Read-dominated images are first taken to network_noise's level, as fad-denoise "
        "does. RAW PSNR (dB), mean over the crops; 'shipped' is what fad-denoise and fad-eval do: w below the "
        "range, a above it.",
        "",
        markdown_table(["a", "b", "noisy", "run at a", "run at the range's end", "at the floor, a / floor kept",
                        "shipped"], table),
        "",
        f"Below the range the shipped rule beats running at a by {min(r['shipped'] - r['at_a'] for r in below):+.2f} "
        f"to {max(r['shipped'] - r['at_a'] for r in below):+.2f} dB and the noisy input by "
        f"{min(r['shipped'] - r['noisy'] for r in below):+.2f} to {max(r['shipped'] - r['noisy'] for r in below):+.2f}"
        f" dB. Above it, running at a beats running at the top by "
        f"{min(r['at_a'] - r['at_end'] for r in above):+.2f} to {max(r['at_a'] - r['at_end'] for r in above):+.2f} "
        "dB: the k-sigma transform carries the models past their top, not below their floor.",
        "",
    ])


if __name__ == "__main__":
    main()
