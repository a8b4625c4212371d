"""Training data: a cache of unprocessed clean RAW patches (built once, the expensive
part) and a dataset that crops, Bayer-augments and adds noise on the fly (cheap).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import FadError
from ..fileio import save_npz
from .bayer import augment, pack, unpack
from .noise import SHOT_RANGE, add_noise, sample_noise_params
from .photos import load_photo
from .unprocess import random_params, unprocess

META_KEYS = ("red_gain", "blue_gain", "rgb_gain", "cam2rgb")


@dataclass(frozen=True)
class CacheConfig:
    patch: int = 72  # packed size of cached patches; crops are taken from these
    patches_per_photo: int = 160
    downscale: int = 2  # box-downscale photos first (see load_photo)
    max_side: int = 2048  # cap the downscaled photo's longer side
    seed: int = 0


def unprocess_crops(image: np.ndarray, n: int, patch: int, rng: np.random.Generator):
    """``n`` random RGB crops of one photo, each unprocessed with its own random camera."""
    rgb = 2 * patch
    h, w = image.shape[:2]
    if h < rgb or w < rgb:
        raise FadError(f"photo of {h}x{w} is smaller than one {rgb}x{rgb} crop")
    raws, metas = [], []
    for _ in range(n):
        y = 2 * rng.integers(0, (h - rgb) // 2 + 1)  # even offsets keep the mosaic phase
        x = 2 * rng.integers(0, (w - rgb) // 2 + 1)
        params = random_params(rng)
        raws.append(unprocess(image[y : y + rgb, x : x + rgb], params))
        metas.append(params)
    return np.stack(raws), metas


def build_patch_cache(photos: list[Path], out: str | Path, config: CacheConfig = CacheConfig()) -> Path:
    """Unprocess random crops of every photo into one .npz (float16 RAW + ISP metadata)."""
    if not photos:
        raise FadError("no photos given for the patch cache")
    rng = np.random.default_rng(config.seed)
    raws, metas = [], []
    for path in tqdm(photos, desc="unprocessing photos", unit="photo"):
        image = load_photo(path, config.downscale, config.max_side)
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
    return Path(out)


def load_patch_cache(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as f:
            cache = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise FadError(f"{path}: cannot read patch cache ({e})")
    missing = {"raw", *META_KEYS} - set(cache)
    if missing:
        raise FadError(f"{path}: not a patch cache (missing {', '.join(sorted(missing))})")
    return cache


def random_crop_augmented(raw: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bayer-preserving random flip/transpose, then a random packed crop of ``size``."""
    flips = rng.integers(0, 2, size=3).astype(bool)
    mosaic = augment(unpack(raw), flip_h=flips[0], flip_v=flips[1], transpose=flips[2])
    planes = pack(mosaic[: mosaic.shape[0] // 2 * 2, : mosaic.shape[1] // 2 * 2])
    h, w = planes.shape[-2:]
    if h < size or w < size:
        raise FadError(f"cached patches of {h}x{w} are smaller than the crop size {size}")
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return planes[:, y : y + size, x : x + size]


class NoisyPatches(torch.utils.data.Dataset):
    """Noisy/clean packed RAW pairs drawn from a patch cache.

    Item ``i`` of epoch ``e`` is a pure function of (seed, e, i), so training resumes
    exactly. ``shot_range`` restricts the sampled shot noise (noise-subrange models).
    """

    def __init__(self, cache: dict, crop: int, shot_range=SHOT_RANGE, seed: int = 0, length: int | None = None):
        self.cache, self.crop, self.shot_range, self.seed = cache, crop, tuple(shot_range), seed
        self.length = length or len(cache["raw"])
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        k = int(rng.integers(0, len(self.cache["raw"])))
        clean = random_crop_augmented(self.cache["raw"][k].astype(np.float32), self.crop, rng)
        noise = sample_noise_params(rng, self.shot_range)
        noisy = add_noise(clean, noise, rng)
        item = {
            "noisy": torch.from_numpy(noisy),
            "clean": torch.from_numpy(np.ascontiguousarray(clean)),
            "shot": torch.tensor(noise.shot, dtype=torch.float32),
            "read": torch.tensor(noise.read, dtype=torch.float32),
        }
        for key in META_KEYS:
            item[key] = torch.as_tensor(self.cache[key][k])
        return item
