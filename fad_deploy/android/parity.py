"""On-device denoise check: the same noisy RAW through the phone and through the host's
LiteRT interpreter, both via :meth:`Runner.denoise` (same k-sigma pre/post-processing)."""
from __future__ import annotations

import math

import numpy as np

from ..data.noise import NoiseParams, read_from_shot
from ..data.photos import skimage_photo
from ..data.synth import synth_pairs
from ..isp.metrics import psnr
from ..runners.base import Runner

# A validation photo (scikit-image's, never a training photo) at a fixed seed.
PARITY_PHOTO, PARITY_SEED = "astronaut", 0


def fit_to(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Crop (N, 4, h, w) to ``hw``, mirroring the edges where the photo is too small."""
    x = x[..., : hw[0], : hw[1]]
    pad = ((0, 0), (0, 0), (0, hw[0] - x.shape[2]), (0, hw[1] - x.shape[3]))
    return np.pad(x, pad, mode="symmetric") if any(p[1] for p in pad) else x


def parity_input(hw: tuple[int, int], shot: float) -> tuple[np.ndarray, np.ndarray, NoiseParams]:
    """(noisy, clean, noise) packed RAW of size ``hw`` at shot level ``shot``."""
    photo = skimage_photo(PARITY_PHOTO)
    crop = min(max(hw), min(photo.shape[:2]) // 2)
    pairs = synth_pairs([(PARITY_PHOTO, photo)], crop, crops_per_image=1, shots=[shot], seed=PARITY_SEED)
    noise = NoiseParams(float(shot), float(read_from_shot(shot)))
    return fit_to(pairs["noisy"], hw), fit_to(pairs["clean"], hw), noise


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: identical outputs (infinite PSNR) are reported as None."""
    return round(value, 2) if math.isfinite(value) else None


def parity_check(device: Runner, host: Runner, noisy: np.ndarray, clean: np.ndarray, noise: NoiseParams) -> dict:
    ours, reference = device.denoise(noisy, noise), host.denoise(noisy, noise)
    return {
        "psnr_db": finite_or_none(psnr(ours, reference)),  # device vs host output; None = identical
        "max_abs_diff": float(np.abs(ours - reference).max()),
        "device_denoise_psnr_db": finite_or_none(psnr(ours, clean)),
        "host_denoise_psnr_db": finite_or_none(psnr(reference, clean)),
        "input": f"{PARITY_PHOTO} (scikit-image), packed {noisy.shape[2]}x{noisy.shape[3]}, "
                 f"a={noise.shot:.3g}, b={noise.read:.3g}, seed {PARITY_SEED}",
    }
