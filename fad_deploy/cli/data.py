"""fad-data: fetch real photos, synthesise seeded evaluation sets, build the training
patch cache, and show what a RAW or .npz file holds."""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from ..checks import Number, input_file, input_folder, npz_output, output_folder, positive_int, random_seed, \
    read_noise, require_output, shot_noise
from ..data.patch_cache import META_KEYS, MIN_PATCH, CacheConfig, build_patch_cache, check_patch_cache
from ..data.noise import SHOT_RANGE
from ..data.photos import DEBIAN_PHOTOS, default_cache_dir, fetch_debian_photos, list_photos
from ..data.raw_io import RawImage, read_raw
from ..data.synth import PAIR_KEYS, SET_LEVELS, check_pairs, check_photo_set, folder_images, save_pairs, set_shots, \
    synth_pairs
from ..errors import FadError, count
from ..fileio import load_npz
from ..isp.metrics import SSIM_WINDOW
from .common import OneLineParser, user_errors



def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fad-data",
        description="Data for fad-deploy: fetch photos, make seeded noisy/clean RAW evaluation sets (synth) and "
        "the training patch cache (cache) from them, and show what a RAW or .npz file holds (info). Photos are "
        "'unprocessed' (inverse tone curve, gamma, random colour matrix and gains) into packed RGGB RAW "
        "(4 planes R, Gr, Gb, B at half resolution) and get shot + read noise, variance = a*x + b.",
        epilog="examples: fad-data fetch; fad-data synth --images ~/.cache/fad-deploy/photos/test "
        "--out eval.npz --seed 0; fad-data info IMG_0001.dng",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fetch", help="download the real photos used for training and testing",
                       description="Download the photo packages (" + ", ".join(DEBIAN_PHOTOS) + ") with "
                       "`apt-get download` and unpack them with `dpkg -x` (nothing is installed on the system). "
                       "Photos land in DEST/train/<package> and DEST/test/<package>; packages already there are "
                       "skipped. Needs Debian's apt; elsewhere use --images with your own photos.")
    f.add_argument("--dest", type=output_folder, help="where to put them (default: $FAD_CACHE/photos, "
                   "$FAD_CACHE defaulting to ~/.cache/fad-deploy)")

    s = sub.add_parser("synth", help="write a seeded evaluation set of noisy/clean RAW pairs (.npz)",
                       description="Unprocess random crops of every photo in --images and add noise at each "
                       "level: --levels shot levels log-spaced over the training range "
                       f"a in [{SHOT_RANGE[0]:g}, {SHOT_RANGE[1]:g}] with UPI's read noise b, or one fixed "
                       "--shot-noise (and --read-noise). The same photos, options and --seed give a byte-identical "
                       "file. Keys: noisy, clean (N, 4, crop, crop), shot, read, red_gain, blue_gain, rgb_gain, "
                       "cam2rgb, source.")
    s.add_argument("--images", required=True, type=input_folder,
                   help="folder of photos (JPEG/PNG/TIFF, searched recursively)")
    s.add_argument("--out", required=True, type=npz_output, help="output .npz file")
    s.add_argument("--seed", type=random_seed, default=0, help="random seed for crops, cameras and noise (default 0)")
    s.add_argument("--crop", type=Number(int, SSIM_WINDOW), default=128,
                   help=f"packed crop size h = w (a 2*crop RGB crop of the photo; default 128; at least {SSIM_WINDOW}, "
                        "SSIM's window, for fad-eval to score it)")
    s.add_argument("--crops-per-image", type=positive_int, default=4, help="crops per photo (default 4)")
    s.add_argument("--levels", type=positive_int, help=f"number of shot-noise levels, both ends of the range among "
                   f"them (default {SET_LEVELS}; one: the range's centre in log a)")
    s.add_argument("--shot-noise", type=shot_noise, metavar="A",
                   help="one fixed shot-noise parameter a instead of --levels")
    s.add_argument("--read-noise", type=read_noise, metavar="B",
                   help="fixed read-noise parameter b (default: UPI's regression from a)")
    add_photo_options(s)

    c = sub.add_parser("cache", help="build the training patch cache (.npz) from a folder of photos",
                       description="Unprocess random patches of every photo (each with its own random camera) into "
                       "one .npz of float16 packed RAW plus the ISP metadata; training crops, Bayer-augments and "
                       "adds noise on the fly from it.")
    c.add_argument("--images", required=True, type=input_folder,
                   help="folder of photos (JPEG/PNG/TIFF, searched recursively)")
    c.add_argument("--out", required=True, type=npz_output, help="output .npz file")
    defaults = CacheConfig()
    c.add_argument("--patch", type=Number(int, MIN_PATCH), default=defaults.patch,
                   help=f"packed patch size, at least {MIN_PATCH}; training crops are at most one less "
                   f"(default {defaults.patch})")
    c.add_argument("--patches-per-photo", type=positive_int, default=defaults.patches_per_photo,
                   help=f"random patches cut from each photo (default {defaults.patches_per_photo})")
    c.add_argument("--seed", type=random_seed, default=defaults.seed,
                   help=f"random seed for the patches' places (default {defaults.seed})")
    add_photo_options(c)

    i = sub.add_parser("info", help="show what a RAW file or a fad-deploy .npz holds",
                       description="RAW files (DNG and other LibRaw formats, SIDD .MAT, DND .mat): size, CFA "
                       "pattern, black/white levels, noise profile, white balance. .npz files: evaluation sets "
                       "from `fad-data synth`, patch caches from `fad-data cache`, or any other arrays.")
    i.add_argument("file", type=input_file, help="a RAW file (DNG or another LibRaw format, SIDD .MAT, DND .mat) or "
                   "a fad-deploy .npz")
    i.add_argument("--cfa", help="CFA pattern for .mat files that do not record one (RGGB, GRBG, GBRG, BGGR)")
    return p


def add_photo_options(p: argparse.ArgumentParser) -> None:
    defaults = CacheConfig()
    p.add_argument("--downscale", type=positive_int, default=defaults.downscale,
                   help=f"box-downscale photos first, removing JPEG and camera noise (default {defaults.downscale}, "
                   "as for training)")
    p.add_argument("--max-side", type=positive_int, default=defaults.max_side,
                   help=f"cap the downscaled photo's longer side (default {defaults.max_side})")


def fetch(args) -> None:
    dest = args.dest or require_output(default_cache_dir() / "photos", "folder", "the photo folder (under $FAD_CACHE)")
    found = fetch_debian_photos(dest)
    for split in sorted(found):
        print(f"{split}: {count(len(found[split]), 'photo')} in {dest / split}")
    print(f"total: {count(sum(len(v) for v in found.values()), 'photo')}")


def synth(args) -> None:
    check_photo_set(args.images, args.crop, args.crops_per_image, args.levels, args.shot_noise, args.downscale,
                    args.max_side)
    shots = set_shots(args.levels, args.shot_noise)
    # closing() ends the progress bar before an error message is printed
    with contextlib.closing(folder_images(args.images, args.downscale, args.max_side, desc="synthesising")) as images:
        pairs = synth_pairs(images, args.crop, args.crops_per_image, shots, args.seed, args.read_noise)
    save_pairs(args.out, pairs)
    photos = len(set(pairs["source"].tolist()))
    print(f"{count(len(pairs['noisy']), 'pair')} ({count(photos, 'photo')} x {count(args.crops_per_image, 'crop')} x "
          f"{count(len(shots), 'noise level')}), "
          f"packed 4x{args.crop}x{args.crop}, seed {args.seed} -> {args.out}")


def cache(args) -> None:
    config = CacheConfig(patch=args.patch, patches_per_photo=args.patches_per_photo, downscale=args.downscale,
                         max_side=args.max_side, seed=args.seed)
    photos = build_patch_cache(list_photos(args.images), args.out, config)
    print(f"{count(photos * config.patches_per_photo, 'patch', 'patches')} of 4x{config.patch}x{config.patch} "
          f"from {count(photos, 'photo')} -> {args.out}")


def describe_raw(raw: RawImage) -> list[str]:
    h, w = raw.mosaic_shape
    p = raw.planes
    lines = [
        f"format: {raw.format}",
        f"mosaic: {w}x{h} (width x height), CFA {raw.cfa}" + ("" if raw.cfa == "RGGB" else
                                                               " (unified to RGGB by padding)"),
        f"packed planes (R, Gr, Gb, B): {p.shape[0]}x{p.shape[1]}x{p.shape[2]} float32, "
        f"normalised values {p.min():.4f}..{p.max():.4f}, mean {p.mean():.4f}",
        "black level (R, Gr, Gb, B): " + " ".join(f"{b:g}" for b in raw.black_level) + f", white level {raw.white_level:g}",
        f"noise: shot a={raw.noise.shot:.4g}, read b={raw.noise.read:.4g}" if raw.noise else "noise: not recorded in the file",
        f"white balance: red gain {raw.wb[0]:.4g}, blue gain {raw.wb[1]:.4g}" if raw.wb else "white balance: not recorded",
        "colour matrix: " + ("camera -> sRGB known" if raw.cam2rgb is not None else "not recorded"),
    ]
    return lines


def describe_npz(path: Path) -> list[str]:
    arrays = load_npz(path, "the file")
    if set(PAIR_KEYS) <= set(arrays):
        check_pairs(arrays, path)
        n = len(arrays["noisy"])
        shots = np.unique(arrays["shot"])
        return [
            f"evaluation set (fad-data synth): {count(n, 'noisy/clean pair')} of packed "
            f"{tuple(arrays['noisy'].shape[1:])}",
            f"{count(len(shots), 'shot level')} a = " + ", ".join(f"{s:.4g}" for s in shots),
            f"read b = {arrays['read'].min():.4g}..{arrays['read'].max():.4g}",
            count(len(np.unique(arrays["source"])), "source photo") if "source" in arrays else "sources: not recorded",
        ]
    if {"raw", *META_KEYS} <= set(arrays):
        raw = check_patch_cache(arrays, path)["raw"]
        return [f"patch cache (fad-data cache): {len(raw)} patches of packed {tuple(raw.shape[1:])} {raw.dtype}"]
    return [f"{k}: {a.shape} {a.dtype}" for k, a in arrays.items()] or ["no arrays"]


def info(args) -> None:
    if args.file.suffix.lower() == ".npz":
        if args.cfa:
            raise FadError(f"--cfa {args.cfa}: for RAW files that record no pattern (.mat), not an .npz, whose "
                           "planes are RGGB already")
        lines = describe_npz(args.file)
    else:
        lines = describe_raw(read_raw(args.file, cfa=args.cfa))
    print(f"{args.file}:")
    for line in lines:
        print("  " + line)


COMMANDS = {"fetch": fetch, "synth": synth, "cache": cache, "info": info}


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    COMMANDS[args.command](args)
