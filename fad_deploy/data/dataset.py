"""Training data: a dataset that crops, Bayer-augments and adds noise on the fly (cheap)
to patches from the patch cache (:mod:`.patch_cache`, built once, the expensive part).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import FadError
from .bayer import augment, pack, unpack
from .noise import SHOT_RANGE, add_noise, sample_noise_params
from .patch_cache import META_KEYS, CacheConfig, build_patch_cache, load_patch_cache  # noqa: F401 (re-exported)


def check_crop(crop: int, patch: int) -> None:
    """A FadError unless packed crops of ``crop`` fit in cached patches of ``patch``: a Bayer
    flip costs one packed pixel (see :func:`.bayer.augment`)."""
    if crop > patch - 1:
        raise FadError(f"data.crop {crop}: patches of {patch}x{patch} allow crops up to {patch - 1} "
                       "(a Bayer flip takes one pixel)")


def random_crop_augmented(raw: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bayer-preserving random flip/transpose, then a random packed crop of ``size`` (see
    :func:`check_crop`)."""
    flips = rng.integers(0, 2, size=3).astype(bool)
    mosaic = augment(unpack(raw), flip_h=flips[0], flip_v=flips[1], transpose=flips[2])
    planes = pack(mosaic[: mosaic.shape[0] // 2 * 2, : mosaic.shape[1] // 2 * 2])
    h, w = planes.shape[-2:]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return planes[:, y : y + size, x : x + size]


def exposed(clean: np.ndarray, gain: float) -> np.ndarray:
    """Clean RAW as a ``gain`` times longer exposure would have made it: linear, saturating at 1."""
    return np.minimum(clean * gain, 1.0)


class NoisyPatches(torch.utils.data.Dataset):
    """Noisy/clean packed RAW pairs drawn from a patch cache.

    Item ``i`` of epoch ``e`` is a pure function of (seed, e, i), so training resumes
    exactly. ``shot_range`` restricts the sampled shot noise (noise-subrange models).
    ``exposure`` > 1 brightens the share ``exposure_share`` of the clean patches, each by a gain
    drawn log-uniform in [1, exposure] (:func:`exposed`), before their noise: frames brighter
    than the photos' (both attributes may change between batches).
    """

    def __init__(self, cache: dict, crop: int, shot_range=SHOT_RANGE, seed: int = 0, length: int | None = None,
                 read_band: float = 0.0, exposure: float = 1.0, exposure_share: float = 1.0):
        check_crop(crop, min(cache["raw"].shape[-2:]))
        self.cache, self.crop, self.shot_range, self.seed = cache, crop, tuple(shot_range), seed
        self.read_band, self.exposure, self.exposure_share = read_band, exposure, exposure_share
        self.length = length or len(cache["raw"])
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        k = int(rng.integers(0, len(self.cache["raw"])))
        clean = random_crop_augmented(self.cache["raw"][k].astype(np.float32), self.crop, rng)
        noise = sample_noise_params(rng, self.shot_range, self.read_band)
        # (drawn after the crop and level, so items without it stay as they were; the share's draw only where < 1)
        if self.exposure > 1 and (self.exposure_share == 1 or rng.uniform() < self.exposure_share):
            clean = exposed(clean, float(np.exp(rng.uniform(0.0, np.log(self.exposure)))))
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
