"""The patch cache: unprocessed clean RAW patches of every training photo with their ISP
metadata, built once (the expensive part of the data pipeline). Numpy only, so
`fad-data` starts without importing torch; :mod:`.dataset` serves training from it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..checks import check_memory
from ..errors import FadError
from ..fileio import load_npz, save_npz
from .photos import large_enough, load_photo
from .unprocess import random_params, unprocess

# each patch's camera (the ISP parameters its unprocessing drew) and the shape of one entry
META_SHAPES = {"red_gain": (), "blue_gain": (), "rgb_gain": (), "cam2rgb": (3, 3)}
META_KEYS = tuple(META_SHAPES)
# training crops are at most patch - 1 (see dataset.check_crop) and no network here takes crops under 8
MIN_PATCH = 9


@dataclass(frozen=True)
class CacheConfig:
    patch: int = 72  # packed size of cached patches; crops are taken from these
    patches_per_photo: int = 160
    downscale: int = 2  # box-downscale photos first (see load_photo)
    max_side: int = 2048  # cap the downscaled photo's longer side
    seed: int = 0


def unprocess_crops(image: np.ndarray, n: int, patch: int, rng: np.random.Generator):
    """``n`` random RGB crops of one photo (at least 2 * ``patch`` pixels on each side), each
    unprocessed with its own random camera."""
    rgb = 2 * patch
    h, w = image.shape[:2]
    raws, metas = [], []
    for _ in range(n):
        y = 2 * rng.integers(0, (h - rgb) // 2 + 1)  # even offsets keep the mosaic phase
        x = 2 * rng.integers(0, (w - rgb) // 2 + 1)
        params = random_params(rng)
        raws.append(unprocess(image[y : y + rgb, x : x + rgb], params))
        metas.append(params)
    return np.stack(raws), metas


def build_patch_cache(photos: list[Path], out: str | Path, config: CacheConfig = CacheConfig()) -> int:
    """Unprocess random crops of every photo into one .npz (float16 RAW + ISP metadata);
    photos smaller than one crop are skipped (see :func:`.photos.large_enough`). Returns
    the number of photos used."""
    patches, p = len(photos) * config.patches_per_photo, config.patch
    check_memory(2 * patches * 4 * p * p * 2,  # float16, held twice while joined
                 f"a cache of {patches} patches of 4x{p}x{p} ({len(photos)} photos x {config.patches_per_photo})")
    rng = np.random.default_rng(config.seed)
    raws, metas = [], []
    bar = tqdm(photos, desc="unprocessing photos", unit="photo", leave=False)  # an error line replaces it
    with contextlib.closing(bar):
        images = ((str(path), load_photo(path, config.downscale, config.max_side)) for path in bar)
        for _, image in large_enough(images, 2 * config.patch):
            r, m = unprocess_crops(image, config.patches_per_photo, config.patch, rng)
            raws.append(r.astype(np.float16))
            metas += m
    arrays = {
        "raw": np.concatenate(raws),
        "red_gain": np.array([m.red_gain for m in metas], np.float32),
        "blue_gain": np.array([m.blue_gain for m in metas], np.float32),
        "rgb_gain": np.array([m.rgb_gain for m in metas], np.float32),
        "cam2rgb": np.stack([m.cam2rgb for m in metas]).astype(np.float32),
    }
    save_npz(out, **arrays)
    return len(raws)


def check_per_item(arrays: dict[str, np.ndarray], shapes: dict[str, tuple], n: int, path: str | Path,
                   item: str) -> None:
    """Each array named in ``shapes`` holds finite numbers, one entry of that shape per ``item`` (``n``)."""
    for key, shape in shapes.items():
        if arrays[key].dtype.kind not in "fiu":
            raise FadError(f"{path}: {key} holds {arrays[key].dtype} values, not numbers")
        if arrays[key].shape != (n, *shape):
            raise FadError(f"{path}: {key} must have shape {(n, *shape)}, one per {item}, got {arrays[key].shape}")
        if not np.isfinite(arrays[key]).all():
            raise FadError(f"{path}: {key} contains NaN or Inf")


def load_patch_cache(path: str | Path) -> dict[str, np.ndarray]:
    """Read a `fad-data cache` file, checking it is complete and sane."""
    return check_patch_cache(load_npz(path, "patch cache"), path)


def check_patch_cache(cache: dict[str, np.ndarray], path: str | Path) -> dict[str, np.ndarray]:
    """``cache`` (read from ``path``) if it is a complete and sane patch cache, else one error line."""
    missing = {"raw", *META_KEYS} - set(cache)
    if missing:
        raise FadError(f"{path}: not a patch cache (missing {', '.join(sorted(missing))})")
    raw = cache["raw"]
    if raw.dtype.kind != "f" or raw.ndim != 4 or raw.shape[1] != 4 or min(raw.shape) < 1:
        raise FadError(f"{path}: raw must hold float patches of shape (N, 4, h, w), N, h, w >= 1, got {raw.dtype} "
                       f"{raw.shape}")
    check_per_item(cache, {"raw": raw.shape[1:], **META_SHAPES}, len(raw), path, "patch")
    return cache
