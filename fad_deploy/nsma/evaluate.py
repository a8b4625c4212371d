"""The paper's Table 2 analogue: the model array against the single full-range student
on the same seeded set, overall, per sub-range and per shot level, RAW and RGB PSNR/SSIM.

The set has the same number of shot levels inside every sub-range (none on a boundary),
made from held-out photos. The array picks each image's model from its annotated a (as
the paper does); a second array row uses blindly estimated (a, b) instead.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..data.dataset import CacheConfig
from ..data.noise import floor_level
from ..data.photos import SKIMAGE_PHOTOS, default_cache_dir, list_photos, load_photo, skimage_photo
from ..data.synth import noise_list, synth_pairs
from ..evaluate.quality import Scores, denoise_set, score
from ..runners.base import Runner
from .array import ModelArray
from .estimate import estimate_noise
from .select import ShotOutOfRangeWarning, SubRange, keep_share

TEST_PHOTOS = "photos/test"  # under $FAD_CACHE: `fad-data fetch`'s held-out photos


@dataclass(frozen=True)
class SetConfig:
    photos: str | None = None  # folder of photos; default: the fetched test photos, else scikit-image's
    crop: int = 64  # packed crop size
    crops_per_image: int = 3
    levels_per_subrange: int = 3
    seed: int = 0


def subrange_levels(table: list[SubRange], per_subrange: int) -> np.ndarray:
    """``per_subrange`` shot levels inside each sub-range: the centres of equal parts in log a."""
    levels = []
    for e in table:
        lo, hi = math.log(e.shot_min), math.log(e.shot_max)
        levels += [math.exp(lo + (j + 0.5) / per_subrange * (hi - lo)) for j in range(per_subrange)]
    return np.array(levels)


def set_images(cfg: SetConfig) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Photos for the set, prepared like training photos (downscaled), and where they came from."""
    folder = cfg.photos or default_cache_dir() / TEST_PHOTOS
    if cfg.photos or folder.is_dir():
        prep = CacheConfig()
        label = cfg.photos or f"$FAD_CACHE/{TEST_PHOTOS}"
        return [(p.name, load_photo(p, prep.downscale, prep.max_side)) for p in list_photos(folder)], label
    return [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS], "scikit-image photos"


def evaluation_set(table: list[SubRange], cfg: SetConfig = SetConfig()) -> tuple[dict, dict]:
    images, source = set_images(cfg)
    shots = subrange_levels(table, cfg.levels_per_subrange)
    pairs = synth_pairs(images, cfg.crop, cfg.crops_per_image, shots, cfg.seed)
    info = {"photos": source, "images": len(images), "crop": cfg.crop, "crops_per_image": cfg.crops_per_image,
            "shot_levels": [float(s) for s in shots], "seed": cfg.seed, "pairs": len(pairs["noisy"])}
    return pairs, info


def _subset(pairs: dict, sel: np.ndarray) -> dict:
    return {k: v[sel] for k, v in pairs.items()}


def _scores_subset(s: Scores, sel: np.ndarray) -> Scores:
    return Scores(**{k: v[sel] for k, v in vars(s).items()})


def blind(pairs: dict) -> dict:
    """The set with each image's noise level replaced by its blind estimate."""
    estimates = [estimate_noise(noisy).params for noisy in pairs["noisy"]]
    return {**pairs, "shot": np.array([e.shot for e in estimates], np.float32),
            "read": np.array([e.read for e in estimates], np.float32)}


def array_choices(array: ModelArray, pairs: dict) -> np.ndarray:
    """The model index per image, from its noise level in ``pairs``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShotOutOfRangeWarning)  # clamping is the rule here, not news
        return np.array([array.select(float(a)).index for a in pairs["shot"]])


def denoise_from_floor(runner: Runner, pairs: dict, floor: float, desc: str = "") -> np.ndarray:
    """Denoise each image at the noise level ``pairs`` gives it as fad-denoise runs a model whose
    range starts at ``floor`` (:func:`fad_deploy.data.noise.floor_level`: below it, at the floor
    with part of the change kept)."""
    means = pairs["noisy"].mean(axis=(1, 2, 3))
    levels, weights = zip(*(floor_level(n, m, floor) for n, m in zip(noise_list(pairs), means)))
    run = {**pairs, "shot": np.array([n.shot for n in levels], pairs["shot"].dtype),
           "read": np.array([n.read for n in levels], pairs["read"].dtype)}
    return keep_share(pairs["noisy"], denoise_set(runner, run, desc=desc), weights)


def array_denoise(array: ModelArray, pairs: dict, choices: np.ndarray, desc: str = "array") -> np.ndarray:
    """Denoise each image with its chosen model at the noise level ``pairs`` gives it, as
    fad-denoise does."""
    out = np.empty_like(pairs["noisy"])
    for i in np.unique(choices):
        sel = choices == i
        out[sel] = denoise_from_floor(array.runner(int(i)), _subset(pairs, sel), array.table[0].shot_min,
                                      desc=f"{desc}: {array.table[i].name}")
    return out


def compare(array: ModelArray, single: Runner, pairs: dict, single_name: str = "single") -> dict:
    """Metrics of the noisy input, the single model, the array with the annotated noise
    levels and the array with blindly estimated ones (for the model choice and the k-sigma
    transform alike, as `fad-denoise` does without metadata)."""
    annotated = array_choices(array, pairs)
    estimated_pairs = blind(pairs)
    estimated = array_choices(array, estimated_pairs)
    rows = {
        "noisy": score(pairs["noisy"], pairs),
        single_name: score(denoise_set(single, pairs, desc=single_name), pairs),
        "array": score(array_denoise(array, pairs, annotated), pairs),
        "array (estimated a)": score(array_denoise(array, estimated_pairs, estimated, "array, estimated"), pairs),
    }
    per_subrange = []
    for i, e in enumerate(array.table):
        sel = annotated == i
        per_subrange.append({"index": i, "name": e.name, "shot_min": e.shot_min, "shot_max": e.shot_max,
                             "images": int(sel.sum()),
                             **{k: _scores_subset(s, sel).mean() for k, s in rows.items()}})
    return {
        "overall": {k: s.mean() for k, s in rows.items()},
        "per_subrange": per_subrange,
        "per_level": {k: s.per_level(pairs["shot"]) for k, s in rows.items()},
        "selection_accuracy_estimated": round(float(np.mean(annotated == estimated)), 4),
    }
