"""Seeded evaluation sets: noisy/clean RAW pairs with their noise parameters and the
ISP metadata needed for RGB metrics (``fad-data synth``, validation, ``fad-eval``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from ..checks import check_memory, read_noise, shot_noise
from ..errors import FadError
from ..fileio import load_npz, save_npz
from .noise import READ_BAND, READ_BAND_LOW, SHOT_RANGE, NoiseParams, add_noise, network_noise, read_from_shot
from .patch_cache import META_SHAPES, check_per_item
from .photos import large_enough, list_photos, load_photo, prepared_shape, smaller_than
from .unprocess import random_params, unprocess

PAIR_KEYS = ("noisy", "clean", "shot", "read", "red_gain", "blue_gain", "rgb_gain", "cam2rgb")
# the shape of one pair's entry in each array beside noisy/clean
PAIR_META_SHAPES = {"shot": (), "read": (), **META_SHAPES}
# what a pair's noisy and clean values may span: RAW normalised to [0, 1], with room for noise
# below black and above white; values beyond it mean a set stored at another scale (e.g. raw DN)
PAIR_VALUE_RANGE = (-1.0, 2.0)
NOISE_RATIO_MAX = 25.0  # a pair's noise may have at most this many times the variance its levels say (5x the std)
NOISE_ROOM_SDS = 8  # noisy values may lie this many of their noise's std beyond it (a Gaussian: p ~ 1e-15)


def shot_levels(n: int, shot_range=SHOT_RANGE) -> np.ndarray:
    """``n`` shot-noise levels log-spaced over the range (both ends included; one level: its centre
    in log a, not its lowest end, where every model's floor lies)."""
    if n == 1:
        return np.array([math.sqrt(shot_range[0] * shot_range[1])])
    return np.exp(np.linspace(np.log(shot_range[0]), np.log(shot_range[1]), n))


SET_LEVELS = 6  # shot levels of an evaluation set when neither their number nor one level is given


def set_level_count(levels: int | None, shot: float | None = None) -> int:
    """How many shot levels an evaluation set has: 1 for the one ``shot`` given, else ``levels``
    (SET_LEVELS when None); both given is a FadError (--levels and --shot-noise)."""
    if shot is not None and levels is not None:
        raise FadError("--levels spreads the shot noise over levels, --shot-noise fixes one level: give one of them")
    return 1 if shot is not None else SET_LEVELS if levels is None else levels


def set_shots(levels: int | None, shot: float | None = None) -> np.ndarray:
    """Shot levels of an evaluation set: the one ``shot`` given, else :func:`set_level_count`
    of them log-spaced over the range."""
    count = set_level_count(levels, shot)
    if shot is not None:
        if not shot > 0:
            raise FadError(f"shot noise {shot}: must be positive")
        return np.array([float(shot)])
    if count < 1:
        raise FadError(f"{count} noise levels: need at least 1")
    return shot_levels(count)


def check_set_size(photos: int, crop: int, crops_per_image: int, levels: int | None,
                   shot: float | None = None) -> None:
    """A FadError, before any work, when the set :func:`synth_pairs` would make from ``photos``
    photos at :func:`set_shots`' levels (of ``levels`` and ``shot``) does not fit in memory
    (noisy and clean float32 pairs, held twice while stacked). No photo: nothing to check (making
    the set says why)."""
    if not photos:
        return
    levels = set_level_count(levels, shot)
    pairs = photos * crops_per_image * levels
    check_memory(2 * 2 * pairs * 4 * crop * crop * 4, f"a set of {pairs} pairs of 4x{crop}x{crop} ({photos} photos x "
                 f"{crops_per_image} crops x {levels} noise levels)")


def check_photo_set(folder: str | Path, crop: int, crops_per_image: int, levels: int | None, shot: float | None,
                    downscale: int, max_side: int | None) -> None:
    """:func:`check_set_size` for a set of the photos in ``folder`` (prepared so) that hold the crop,
    after the levels asked for (:func:`set_level_count`): every FadError making it would end in,
    before any work."""
    set_level_count(levels, shot)
    check_set_size(photos_for_crop(folder, crop, downscale, max_side), crop, crops_per_image, levels, shot)


def photos_for_crop(folder: str | Path, crop: int, downscale: int, max_side: int | None) -> int:
    """How many photos of ``folder``, prepared so, are large enough for a packed ``crop`` (see
    :func:`synth_pairs`), from their headers; none (all read) is the FadError making the set would
    end in, before any work."""
    folder = Path(folder)
    shapes = {path.relative_to(folder).as_posix(): prepared_shape(path, downscale, max_side)
              for path in list_photos(folder)}
    fitting = sum(shape is not None and min(shape) >= 2 * crop for shape in shapes.values())
    if not fitting and None not in shapes.values():
        raise FadError("no photo is large enough for "
                       + smaller_than(2 * crop, [f"{name} ({h}x{w})" for name, (h, w) in shapes.items()]))
    return fitting


def folder_images(folder: str | Path, downscale: int, max_side: int | None,
                  desc: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name relative to ``folder``, RGB image) for every photo, loaded one at a time (progress bar if ``desc``)."""
    folder = Path(folder)
    photos = list_photos(folder)
    for path in tqdm(photos, desc=desc, unit="photo", disable=desc is None, leave=False):
        yield path.relative_to(folder).as_posix(), load_photo(path, downscale, max_side)


def noise_list(pairs: dict) -> list[NoiseParams]:
    """Each pair's noise level, from a set :func:`synth_pairs` made."""
    return [NoiseParams(float(a), float(b)) for a, b in zip(pairs["shot"], pairs["read"])]


def synth_pairs(images: Iterable[tuple[str, np.ndarray]], crop: int, crops_per_image: int, shots, seed: int,
                read: float | None = None) -> dict[str, np.ndarray]:
    """Every crop at every shot level: deterministic given the images and ``seed``.

    ``crop`` is the packed size (a 2*crop RGB crop); smaller images are skipped (see
    :func:`.photos.large_enough`). Read noise follows UPI's regression at each shot level
    unless fixed by ``read``. ``images`` is iterated once (may be lazy).
    """
    if crop < 1 or crops_per_image < 1:
        raise FadError(f"crop {crop} and crops per image {crops_per_image}: both must be at least 1")
    if read is not None and not read >= 0:
        raise FadError(f"read noise {read}: must not be negative")
    rng = np.random.default_rng(seed)
    out = {k: [] for k in PAIR_KEYS}
    sources = []
    rgb = 2 * crop
    for name, image in large_enough(images, rgb):
        h, w = image.shape[:2]
        for _ in range(crops_per_image):
            y, x = 2 * rng.integers(0, (h - rgb) // 2 + 1), 2 * rng.integers(0, (w - rgb) // 2 + 1)
            params = random_params(rng)
            clean = unprocess(image[y : y + rgb, x : x + rgb], params)
            for shot in shots:
                noise = NoiseParams(float(shot), float(read if read is not None else read_from_shot(shot)))
                out["noisy"].append(add_noise(clean, noise, rng))
                out["clean"].append(clean)
                out["shot"].append(noise.shot)
                out["read"].append(noise.read)
                out["red_gain"].append(params.red_gain)
                out["blue_gain"].append(params.blue_gain)
                out["rgb_gain"].append(params.rgb_gain)
                out["cam2rgb"].append(params.cam2rgb)
                sources.append(name)
    arrays = {k: np.asarray(np.stack(v), dtype=np.float32) for k, v in out.items()}
    arrays["source"] = np.asarray(sources)
    return arrays


def save_pairs(path: str | Path, pairs: dict[str, np.ndarray]) -> None:
    save_npz(path, **pairs)


def at_network_levels(pairs: dict[str, np.ndarray],
                      band: tuple[float, float] = (READ_BAND_LOW, READ_BAND)) -> tuple[dict, int]:
    """``pairs`` with each image's (shot, read) replaced by :func:`.noise.network_noise`'s level for
    it (what fad-denoise runs the networks at), and how many images that changed."""
    given = noise_list(pairs)
    levels = [network_noise(n, m, band) for n, m in zip(given, pairs["noisy"].mean(axis=(1, 2, 3)))]
    changed = sum(level != n for level, n in zip(levels, given))
    return {**pairs, "shot": np.array([n.shot for n in levels]), "read": np.array([n.read for n in levels])}, changed


def load_pairs(path: str | Path) -> dict[str, np.ndarray]:
    """Read a `fad-data synth` set, checking it is complete and sane."""
    return check_pairs(load_npz(path, "evaluation set"), path)


CAM2RGB_MIN_DET = 1e-6  # a colour matrix nearer singular maps colours onto a plane (zeros: every picture black)


def check_pairs(pairs: dict[str, np.ndarray], path: str | Path) -> dict[str, np.ndarray]:
    """``pairs`` (read from ``path``) if they are a complete and sane set, else one error line."""
    missing = set(PAIR_KEYS) - set(pairs)
    if missing:
        raise FadError(f"{path}: not a fad-data synth set (missing {', '.join(sorted(missing))})")
    noisy, clean = pairs["noisy"], pairs["clean"]
    if noisy.ndim != 4 or noisy.shape[1] != 4 or noisy.shape != clean.shape or min(noisy.shape[2:]) < 1:
        raise FadError(f"{path}: noisy/clean must both be (N, 4, h, w) with h, w >= 1, got {noisy.shape} and "
                       f"{clean.shape}")
    if not len(noisy):
        raise FadError(f"{path}: the set holds no pairs")
    check_per_item(pairs, {"noisy": noisy.shape[1:], "clean": noisy.shape[1:], **PAIR_META_SHAPES}, len(noisy), path,
                   "pair")
    for key in ("noisy", "clean"):
        if pairs[key].dtype.kind != "f":
            raise FadError(f"{path}: {key} holds {pairs[key].dtype} values; a set holds float RAW normalised to "
                           "[0, 1] (black level 0, white level 1)")
    for key, number in (("shot", shot_noise), ("read", read_noise)):  # as every noise option takes them
        for value in (float(pairs[key].min()), float(pairs[key].max())):
            try:
                number.check(value)
            except ValueError:
                raise FadError(f"{path}: {key} noise must be {number} (variance a x + b of RAW in [0, 1]), got "
                               f"{value:g}") from None
    for key in ("red_gain", "blue_gain", "rgb_gain"):  # the ISP the RGB metrics see (NaN and Inf fail too)
        if not (np.all(pairs[key] > 0) and np.all(np.isfinite(pairs[key]))):
            raise FadError(f"{path}: {key} must hold positive numbers, got values from {pairs[key].min():g} to "
                           f"{pairs[key].max():g}")
    determinants = np.linalg.det(pairs["cam2rgb"].astype(np.float64))
    if not np.all(np.isfinite(determinants) & (np.abs(determinants) > CAM2RGB_MIN_DET)):
        raise FadError(f"{path}: cam2rgb must hold invertible colour matrices (a camera's, mapping its colours "
                       "to sRGB), got a singular or non-finite one")
    # the noisy values' room grows with the noise
    std = float(np.sqrt(pairs["shot"].max() * PAIR_VALUE_RANGE[1] + pairs["read"].max()))
    for key, room in (("noisy", NOISE_ROOM_SDS * std), ("clean", 0.0)):
        low, high = pairs[key].min(), pairs[key].max()
        if low < PAIR_VALUE_RANGE[0] - room or high > PAIR_VALUE_RANGE[1] + room:
            raise FadError(f"{path}: {key} spans [{low:g}, {high:g}], not RAW normalised to [0, 1] (black level 0, "
                           "white level 1)" + (f" with noise of std up to {std:.3g}" if room else ""))
    clean = clean.astype(np.float64)
    said = pairs["shot"].reshape(-1, 1, 1, 1) * np.maximum(clean, 0) + pairs["read"].reshape(-1, 1, 1, 1)
    ratio = ((noisy - clean) ** 2).mean(axis=(1, 2, 3)) / said.mean(axis=(1, 2, 3))
    worst = int(np.argmax(ratio))
    if ratio[worst] > NOISE_RATIO_MAX:
        raise FadError(f"{path}: pair {worst}'s noise has {ratio[worst]:.3g} times the variance its shot and read "
                       "noise say (a x + b): noisy and clean are not one image with that noise, or not normalised "
                       "alike")
    return pairs


# 8 crops per photo: 40 patches a level, so a level's mean PSNR drop has a standard error of
# 0.01-0.05 dB for an int8 model (0.01-0.09 with 2 crops, which also read 0.01-0.06 dB low
# on every shipped sub-range model: benchmarks/results/int8_generalisation.md)
VALIDATION_SEED, VALIDATION_CROP, VALIDATION_CROPS, VALIDATION_LEVELS = 1234, 64, 8, 6
SUBRANGE_LEVELS = 4  # shot levels of a sub-range model's own validation set
RANGE_RTOL = 1e-6


def validation_pairs(seed: int = VALIDATION_SEED, crop: int = VALIDATION_CROP) -> dict[str, np.ndarray]:
    """The fixed validation set used during training: scikit-image's bundled photos
    (never part of the training photos), 8 crops each at 6 shot levels."""
    from .photos import SKIMAGE_PHOTOS, skimage_photo

    images = [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS]
    return synth_pairs(images, crop, crops_per_image=VALIDATION_CROPS, shots=shot_levels(VALIDATION_LEVELS),
                       seed=seed)


def validation_shots(shot_range: tuple[float, float]) -> np.ndarray:
    """The shot levels of a model's validation set: :func:`validation_pairs`' when the model's
    noise range holds them all, else the centres of equal log-a bins of its sub-range."""
    full = shot_levels(VALIDATION_LEVELS)
    lo, hi = (float(v) for v in shot_range)
    if lo <= full.min() * (1 + RANGE_RTOL) and full.max() <= hi * (1 + RANGE_RTOL):
        return full
    return np.exp(np.linspace(np.log(lo), np.log(hi), 2 * SUBRANGE_LEVELS + 1)[1::2])


def validation_set(shot_range: tuple[float, float], crops: int = VALIDATION_CROPS) -> tuple[dict, str]:
    """Seeded validation patches for a model and their description: the standard set
    (:func:`validation_pairs`) for a full-range model, else the same photos, crops and seed
    at :func:`validation_shots` inside its sub-range, so a sub-range model is judged where
    it is meant to run. Fewer ``crops`` per photo only to measure what the default buys."""
    shots = validation_shots(shot_range)
    if np.array_equal(shots, shot_levels(VALIDATION_LEVELS)) and crops == VALIDATION_CROPS:
        return validation_pairs(), f"fad_deploy.data.synth.validation_pairs(seed={VALIDATION_SEED})"
    from .photos import SKIMAGE_PHOTOS, skimage_photo

    lo, hi = (float(v) for v in shot_range)
    images = [(n, skimage_photo(n)) for n in SKIMAGE_PHOTOS]
    pairs = synth_pairs(images, VALIDATION_CROP, crops, shots, VALIDATION_SEED)
    return pairs, (f"validation_pairs' photos and seed, {crops} crops each, at {len(shots)} shot levels inside "
                   f"the model's range [{lo:.3g}, {hi:.3g}]")
