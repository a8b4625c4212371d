"""fad-eval: quality of shipped models, exported backends and classical baselines on a
seeded synthetic set (from a folder of photos) or an existing `fad-data synth` set."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..checks import Number, given_options, input_file, input_folder, json_output, non_empty, positive_int, \
    random_seed, read_noise, require_not_model, shot_noise, thread_count
from ..data.noise import READ_BAND, READ_BAND_LOW, below_floor
from ..data.patch_cache import CacheConfig
from ..data.synth import SET_LEVELS, at_network_levels, check_photo_set, folder_images, load_pairs, set_shots, \
    synth_pairs
from ..errors import FadError
from ..evaluate.baselines import BASELINES
from ..fileio import write_json
from ..isp.metrics import SSIM_WINDOW
from ..nsma.select import ROUNDING_RTOL
from ..runners import BACKENDS
from .common import OneLineParser, user_errors

DEFAULT_MODELS = ("teacher", "fan-student", "unet-plain")
DEFAULT_ARRAY = object()  # --nsma without DIR: the shipped array (a str const would meet non_empty)
SET_DEFAULTS = {"crop": 64, "crops_per_image": 3, "seed": 0}  # of a set made from --images
SET_OPTIONS = ("shot_noise", "read_noise", "levels", *SET_DEFAULTS)  # shape a set made from --images; None unless given


def baseline_names(text: str) -> list[str]:
    """The argparse type of --baselines: a comma list of names in BASELINES."""
    names = list(dict.fromkeys(name for name in text.split(",") if name))  # each once, in order
    if text and not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of baselines, got {text!r}")
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baseline {unknown[0]!r}: choose from {', '.join(BASELINES)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fad-eval",
        description="Evaluate denoisers: RAW PSNR/SSIM (4 Bayer planes, data range 1) and RGB PSNR/SSIM after "
        "the minimal ISP (white balance, bilinear demosaic, colour matrix, gamma). The set is made from your "
        "photos (unprocessed, noise at shot levels log-spaced over the training range, seeded) or read from "
        "a `fad-data synth` file. MACs are per megapixel of RAW input (a 4x512x512 packed tensor).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", type=input_folder, help="folder of photos to synthesise the set from")
    src.add_argument("--set", metavar="FILE", type=input_file, help="an existing `fad-data synth` .npz set")
    p.add_argument("models", nargs="*", type=non_empty,
                   help=f"model names or checkpoints (default: {', '.join(DEFAULT_MODELS)}; none with --nsma)")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="backend(s) to run each model on (repeatable; default torch)")
    p.add_argument("--baselines", default="", type=baseline_names,
                   help=f"comma list of classical baselines: {','.join(BASELINES)}")
    p.add_argument("--nsma", nargs="?", const=DEFAULT_ARRAY, metavar="DIR", type=non_empty,
                   help="evaluate the Noise Subrange Model Array (default bundle: models/nsma for torch, its "
                   "export for the exported backends) alone, or beside the models named (before it: it takes "
                   "the folder after it); each image goes to the sub-range model of the level it runs at, as in "
                   "fad-denoise (its annotated shot level, moved up where read noise dominates)")
    p.add_argument("--json", metavar="OUT", type=json_output, help="write results as JSON here")
    p.add_argument("--shot-noise", type=shot_noise, help="fix the shot-noise parameter a (default: a spread)")
    p.add_argument("--read-noise", type=read_noise, help="fix the read-noise parameter b (default: UPI's regression)")
    p.add_argument("--levels", type=positive_int,
                   help=f"number of shot levels over the training range (default {SET_LEVELS})")
    p.add_argument("--crop", type=Number(int, SSIM_WINDOW), help=f"packed crop size (a 2x RGB crop; default "
                   f"{SET_DEFAULTS['crop']}; at least {SSIM_WINDOW}, SSIM's window)")
    p.add_argument("--crops-per-image", type=positive_int,
                   help=f"random crops of each photo (default {SET_DEFAULTS['crops_per_image']})")
    p.add_argument("--seed", type=random_seed,
                   help=f"random seed for the crops, cameras and noise (default {SET_DEFAULTS['seed']})")
    p.add_argument("--threads", type=thread_count, help="torch CPU threads")
    return p


def make_set(args) -> tuple[dict, dict]:
    if args.set:
        pairs = load_pairs(args.set)
        h, w = pairs["noisy"].shape[-2:]
        if min(h, w) < SSIM_WINDOW:
            raise FadError(f"{args.set}: its {h}x{w} frames are smaller than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window")
        return pairs, {"source": str(args.set)}
    # the options not given take their defaults
    args = argparse.Namespace(**{**vars(args), **{k: v for k, v in SET_DEFAULTS.items() if getattr(args, k) is None}})
    cache = CacheConfig()  # evaluation photos get the same preparation as training photos
    check_photo_set(args.images, args.crop, args.crops_per_image, args.levels, args.shot_noise, cache.downscale,
                    cache.max_side)
    shots = set_shots(args.levels, args.shot_noise)
    images = list(folder_images(args.images, cache.downscale, cache.max_side, desc="loading photos"))
    pairs = synth_pairs(images, args.crop, args.crops_per_image, shots, args.seed, args.read_noise)
    info = {"source": str(args.images), "photos": len(images), "crop": args.crop,
            "crops_per_image": args.crops_per_image,
            "shot_levels": [float(s) for s in np.float32(shots)],  # as the set stores them: the per-level keys
            "read_noise": args.read_noise, "seed": args.seed, "images": len(pairs["noisy"])}
    return pairs, info


def model_macs(checkpoint) -> float:
    from ..profile.macs import count_macs

    return round(count_macs(checkpoint.build()).gmacs_per_megapixel, 4)


def is_model(name: str) -> bool:
    """Whether ``name`` is a checkpoint file or a shipped model's name (not an array's folder)."""
    from ..models.registry import resolve_model

    if Path(name).exists():
        return Path(name).is_file() and Path(name).suffix == ".pt"
    try:
        resolve_model(name)
    except FadError:
        return False
    return True


def model_label(ckpt) -> str:
    """A model's name in the tables: an int8 QAT checkpoint's with " int8", beside its float model's."""
    from ..quant.qat import is_quantized

    return f"{ckpt.name} int8" if is_quantized(ckpt) else ckpt.name


def evaluate(args) -> dict:
    from ..evaluate.quality import denoise_set_classical, score  # torch: not needed for --help
    from ..export.manifest import MANIFEST
    from ..models.registry import load_checkpoint, models_dir, resolve_model
    from ..nsma.evaluate import array_choices, array_denoise, denoise_from_floor

    shipped = [] if args.nsma is not None else [m for m in DEFAULT_MODELS if (models_dir() / f"{m}.pt").is_file()]
    names = args.models or shipped  # --nsma alone evaluates just the array
    if not names and not args.baselines and args.nsma is None:
        raise FadError(f"no trained models in {models_dir()} and none given")
    array = next((n for n in names if n == "fan-nsma" or (Path(n) / MANIFEST).is_file()), None)
    if array:  # (fad-bench's name for the exported array)
        raise FadError(f"{array}: a model array, not a model; evaluate it with --nsma "
                       + ("(the shipped array) or --nsma DIR" if array == "fan-nsma" else array))
    exported = next((n for n in names if Path(n).suffix in (".tflite", ".onnx")), None)
    if exported:
        raise FadError(f"{exported}: an exported model file; name its checkpoint with --backend (e.g. "
                       f"{Path(exported).name.split('.')[0]} --backend tflite-int8), or its folder with --nsma")
    if args.nsma not in (None, DEFAULT_ARRAY) and is_model(args.nsma):  # --nsma took the model after it
        raise FadError(f"--nsma {args.nsma}: not a model array folder; --nsma takes the folder after it, so name "
                       f"the models first (fad-eval {args.nsma} --nsma) or give a folder (--nsma DIR)")
    # every model and array is found and read before the set is made
    paths = list(dict.fromkeys(p.resolve() for p in map(resolve_model, names)))  # a model named twice runs once
    models = [(path, load_checkpoint(path)) for path in paths]
    labels = [model_label(ckpt) for _, ckpt in models]
    clash = next((label for label in labels if labels.count(label) > 1), None)
    if clash:
        named = " and ".join(str(p) for p, c in models if model_label(c) == clash)
        raise FadError(f"{named}: two models named {clash!r} would share their rows")
    backends = list(dict.fromkeys(args.backend or ["torch"]))
    arrays = []
    if args.nsma is not None:
        from ..nsma.array import load_array

        folder = None if args.nsma is DEFAULT_ARRAY else args.nsma
        arrays = [load_array(folder, backend) for backend in backends]
    require_not_model(args.json, [path for path, _ in models] + [a.root for a in arrays],
                      "argument --json")
    pairs, info = make_set(args)
    # every runner is made before the scoring, so a missing export stops the run before minutes of work
    from ..runners import load_runner
    from ..runners.tiling import framed

    runs = []
    for path, ckpt in models:
        macs = model_macs(ckpt)
        runs += [(model_label(ckpt), macs, backend, framed(load_runner(backend, path), ckpt), ckpt.shot_range[0])
                 for backend in backends]
    for array in arrays:
        for index in range(len(array.table)):
            array.runner(index)
    run_pairs, moved = at_network_levels(pairs)  # the networks run as fad-denoise runs them
    if moved:
        print(f"fad-eval: {moved} of {len(pairs['noisy'])} images have read noise outside {READ_BAND_LOW:g} to "
              f"{READ_BAND:g} times UPI's line for their shot level: the networks run at network_noise's level for "
              "them, as fad-denoise runs them",
              file=sys.stderr)
    ceilings = {model_label(ckpt): ckpt.shot_range[1] for _, ckpt in models}
    ceilings |= {f"nsma (n={len(a.table)})": a.table[-1].shot_max for a in arrays}
    above = {name: int((run_pairs["shot"] > top * (1 + ROUNDING_RTOL)).sum()) for name, top in ceilings.items()}
    if any(above.values()):
        print("fad-eval: images above a network's noise range run at their own level, beyond the levels it learnt "
              "(fad-denoise warns of them): " + ", ".join(f"{n} of {len(pairs['noisy'])} for {name} (a > "
                                                         f"{ceilings[name]:.3g})" for name, n in above.items() if n),
              file=sys.stderr)
    highest_floor = max([r[-1] for r in runs] + [a.table[0].shot_min for a in arrays], default=0.0)
    below = int(below_floor(run_pairs["shot"], highest_floor).sum())
    if below:
        print(f"fad-eval: {below} of {len(pairs['noisy'])} images lie below a network's noise range "
              f"(a < {highest_floor:g}): "
              "it runs them at its floor and keeps the share of its change that their noise variance is of the "
              "floor's, as fad-denoise runs them", file=sys.stderr)
    rows, per_level = [], {}
    noisy = score(pairs["noisy"], pairs)
    rows.append({"model": "noisy", "backend": "-", **noisy.mean(), "gmacs_per_megapixel": None})
    per_level["noisy"] = noisy.per_level(pairs["shot"])
    for name, macs, backend, runner, floor in runs:
        s = score(denoise_from_floor(runner, run_pairs, floor, desc=f"{name} [{backend}]"), pairs)
        rows.append({"model": name, "backend": backend, **s.mean(), "gmacs_per_megapixel": macs})
        per_level[f"{name} [{backend}]"] = s.per_level(pairs["shot"])
    for array in arrays:
        backend = array.backend
        s = score(array_denoise(array, run_pairs, array_choices(array, run_pairs)), pairs)
        name = f"nsma (n={len(array.table)})"
        macs = model_macs(load_checkpoint(resolve_model(str(array.root / array.table[0].file)))) \
            if array.table[0].file.endswith(".pt") else None
        rows.append({"model": name, "backend": backend, **s.mean(), "gmacs_per_megapixel": macs})
        per_level[f"{name} [{backend}]"] = s.per_level(pairs["shot"])
    for base in args.baselines:
        s = score(denoise_set_classical(BASELINES[base], pairs, desc=base), pairs)
        rows.append({"model": base, "backend": "cpu", **s.mean(), "gmacs_per_megapixel": None})
        per_level[base] = s.per_level(pairs["shot"])
    return {"set": info, "results": rows, "per_level": per_level}


def table(rows: list[dict]) -> str:
    lines = [f"{'model':<24} {'backend':<12} {'RAW PSNR':>9} {'RAW SSIM':>9} {'RGB PSNR':>9} {'RGB SSIM':>9} {'GMACs/MP':>9}"]
    for r in rows:
        macs = f"{r['gmacs_per_megapixel']:.3f}" if r["gmacs_per_megapixel"] is not None else "-"
        lines.append(f"{r['model']:<24} {r['backend']:<12} {r['raw_psnr']:>9.3f} {r['raw_ssim']:>9.4f} "
                     f"{r['rgb_psnr']:>9.3f} {r['rgb_ssim']:>9.4f} {macs:>9}")
    return "\n".join(lines)


def run(argv=None) -> dict:
    """Parse, evaluate, print the table and write the JSON; returns the result."""
    p = parser()
    args = p.parse_args(argv)
    ignored = given_options(p, args, SET_OPTIONS)
    if args.set and ignored:
        raise FadError(f"{', '.join(ignored)}: for a set made from --images; --set FILE is evaluated as it is")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = evaluate(args)
    print(table(result["results"]))
    print("(GMACs per megapixel of RAW input = per 4x512x512 packed tensor)")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


@user_errors
def main(argv=None) -> None:
    run(argv)
