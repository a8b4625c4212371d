"""Issue 19's training levers at equal training: each lever is the Table 1 command (FAN, today's
configuration, Charbonnier, from scratch) with a few settings changed, trained --steps steps
and measured against --reference, the same command unchanged (checked on its card), on
quality.py's Table 1 set of held-out photos at 128-pixel crops, per noise level.

Levers:
- photosN: the first N photos of one seeded shuffle of the `fad-data fetch` training photos
  (nested subsets, linked into a folder of the cache; the patch cache keeps 160 patches a
  photo, so fewer photos also means fewer distinct patches): how quality moves with the
  number of training photos;
- crop128: crops of 128 (the network's lowest level sees 8x8, not 4x4) from a cache of
  136-pixel patches (int8_recipe.py's: as many pixels per photo as the default cache),
  4 a step (as many pixels per step as 16 of 64): more context at high noise;
- seedN: the reference's command with another seed (weights, crops and noise): how far a run
  moves by chance, the yardstick for the others.

    python benchmarks/training_levers.py --levers photos3 photos9 crop128 seed1 --steps 9600 \\
        --reference fan-today-charbonnier-steps9600

Writes benchmarks/results/training_levers.{md,json}; the models stay in their run folders,
runs/fan-<lever>-steps<S>/model.pt (cards inside), so a rerun only measures.
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from fad_deploy.cli.eval import run as fad_eval
from fad_deploy.data.photos import default_cache_dir, list_photos
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, resolve_model
from fad_deploy.profile.cpu import cpu_peak
from int8_recipe import LARGE_CACHE, large_patch_cache

RESULTS = Path(__file__).parent / "results"
# quality.py's Table 1 set (photos, levels, crops per photo, seed) at 128-pixel crops, which the 128-pixel
# lever's context can matter on
EVAL = ["--crop", "128", "--crops-per-image", "2", "--levels", "6"]
SHUFFLE_SEED = 0
PHOTOS = re.compile(r"photos(\d+)$")
SEED = re.compile(r"seed(\d+)$")
CROP128 = {"data.cache": str(LARGE_CACHE), "data.crop": "128", "data.batch": "4"}


def subset_folder(photos: list[Path], n: int) -> Path:
    """A cache folder linking the first ``n`` photos of the seeded shuffle (made once)."""
    folder = default_cache_dir() / "photo-subsets" / f"train-{n}of{len(photos)}"
    chosen = [photos[i] for i in np.random.default_rng(SHUFFLE_SEED).permutation(len(photos))[:n]]
    folder.mkdir(parents=True, exist_ok=True)
    for photo in chosen:
        link = folder / f"{photo.parent.name}_{photo.name}"
        if not link.exists():
            link.symlink_to(photo.resolve())
    return folder


def lever_settings(lever: str, photos: list[Path]) -> dict[str, str]:
    """The fad-train settings a lever changes (its data made where needed)."""
    if lever == "crop128":
        large_patch_cache()
        return CROP128
    if seed := SEED.match(lever):
        return {"seed": seed[1]}
    return {"data.photos": str(subset_folder(photos, int(PHOTOS.match(lever)[1])))}


def lever_name(value: str) -> str:
    """argparse type: a known lever."""
    if value != "crop128" and not PHOTOS.match(value) and not SEED.match(value):
        raise argparse.ArgumentTypeError(f"unknown lever {value!r}: photosN (N photos), crop128 or seedN")
    return value


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levers", type=lever_name, nargs="+", required=True, help="photosN, crop128, seedN")
    p.add_argument("--steps", type=int, required=True, help="training steps of every run")
    p.add_argument("--reference", required=True, metavar="MODEL",
                   help="a model trained with the Table 1 command at --steps steps on all the training photos")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", default=str(default_cache_dir() / "photos" / "test"))
    args = p.parse_args(argv)
    photos = list_photos(default_cache_dir() / "photos" / "train")
    if any((m := PHOTOS.match(lever)) and not 1 <= int(m[1]) < len(photos) for lever in args.levers):
        p.error(f"--levers: photosN with N from 1 to {len(photos) - 1} (there are {len(photos)} training photos)")
    if args.steps < 1 or args.threads < 1:
        p.error("--steps and --threads: positive integers")
    reference = load_checkpoint(resolve_model(args.reference))
    cfg, cache = reference.card["config"], reference.card["data"]["patch_cache"]
    if (cfg["schedule"]["steps"], cfg["data"]["photos"], cache) != (args.steps, None, "patches-train.npz"):
        p.error(f"--reference {args.reference}: trained {cfg['schedule']['steps']} steps on {cache}, "
                f"not {args.steps} steps on all the fetched training photos (patches-train.npz)")
    runs, commands = {}, {}
    for lever in args.levers:
        name = f"fan-{lever}-steps{args.steps}"
        settings = lever_settings(lever, photos)
        commands[name] = ["fad-train", "charbonnier", f"name={name}", *(f"{k}={v}" for k, v in settings.items()),
                          f"schedule.steps={args.steps}", "--threads", str(args.threads)]
        runs[name] = Path("runs") / name / "model.pt"
        if not runs[name].is_file():
            print(" ".join(commands[name]), flush=True)
            if subprocess.run(commands[name]).returncode:
                sys.exit(f"training_levers: training {name} failed")
    eval_args = ["--images", args.images, *map(str, runs.values()), args.reference, "--threads", str(args.threads),
                 *EVAL]
    result = fad_eval(eval_args)
    lever_of = dict(zip(runs, args.levers)) | {reference.name: "none (reference)"}
    cards = {name: load_checkpoint(path).card for name, path in runs.items()} | {reference.name: reference.card}
    by = {r["model"]: r for r in result["results"] if r["model"] in lever_of}
    levels = {name: result["per_level"][f"{name} [torch]"] for name in by}
    invocation = (f"--levers {' '.join(args.levers)} --steps {args.steps} --reference {args.reference} "
                  f"--threads {args.threads}")
    subsets = {lever_of[name]: sorted(p.name for p in list_photos(card["config"]["data"]["photos"]))
               for name, card in cards.items() if card["config"]["data"]["photos"]}
    out = {"cpu": cpu_peak().label, "platform": platform.platform(), "invocation": invocation,
           "shuffle_seed": SHUFFLE_SEED, "subsets": subsets, "train_commands": commands, "eval": eval_args,
           "set": result["set"], "training_data": {n: c["data"] for n, c in cards.items()}, "results": by, "per_level": levels}
    write_json(RESULTS / "training_levers.json", out)
    full = by[reference.name]["raw_psnr"]
    rows = ["| lever | model | patches x crop (a step) | RAW PSNR | vs reference | RAW SSIM | RGB PSNR | RGB SSIM |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in by.items():
        data, batch = cards[name]["data"], cards[name]["config"]["data"]["batch"]
        rows.append(f"| {lever_of[name]} | {name} | {data['patches']:,} x {data['crop']} ({batch}) | "
                    f"{r['raw_psnr']:.3f} | {r['raw_psnr'] - full:+.3f} | {r['raw_ssim']:.4f} | {r['rgb_psnr']:.3f} | "
                    f"{r['rgb_ssim']:.4f} |")
    shots = [lv["shot"] for lv in levels[reference.name]]
    per_level = ["| lever | " + " | ".join(f"a={s:.2g}" for s in shots) + " |", "|---|" + "---:|" * len(shots)]
    per_level += [f"| {lever_of[name]} | " + " | ".join(f"{lv['raw_psnr']:.2f}" for lv in lvs) + " |"
                  for name, lvs in levels.items()]
    write_text(RESULTS / "training_levers.md", "\n".join([
        "# Training levers at equal training", "",
        f"Made by `python benchmarks/training_levers.py {invocation}` on {out['cpu']}. Every model is FAN (today's "
        f"configuration) trained from scratch with the Table 1 command for {args.steps} steps, the lever's settings "
        f"changed (the commands in the JSON); {reference.name} is the same command unchanged, on all "
        f"{len(photos)} fetched training photos. photosN: the first N of one seeded shuffle of those photos (names in "
        "the JSON); crop128: crops of 128 from 136-pixel patches, 4 a step (the same pixels); seedN: the reference's "
        "command with seed N (how far a run moves by chance). Held-out set: "
        f"{result['set']['photos']} test photos, {result['set']['crops_per_image']} crops of "
        f"{result['set']['crop']}x{result['set']['crop']} packed each, {len(shots)} shot levels in "
        f"[{shots[0]:.0e}, {shots[-1]:.2g}].", "",
        "\n".join(rows), "", "RAW PSNR per shot level (dB):", "", "\n".join(per_level), ""]))
    print(f"wrote {RESULTS / 'training_levers.md'}")


if __name__ == "__main__":
    main()
