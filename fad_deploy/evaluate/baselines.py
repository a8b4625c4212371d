"""Classical denoisers on packed RAW, each applied per Bayer plane after a
variance-stabilising transform, so that they see unit-variance Gaussian noise.

Generalised Anscombe transform (Makitalo & Foi) for variance a*x + b:
    f(x) = (2 / a) * sqrt(max(a * x + 3/8 * a^2 + b, 0)),
whose noise has unit variance; inverted algebraically (a small bias at very low counts).
"""
from __future__ import annotations

import numpy as np

from ..data.noise import NoiseParams

NLM_PATCH, NLM_DISTANCE = 5, 6  # window sizes of non-local means
NLM_H = 0.8  # filter strength relative to the (unit) noise sigma


def gat(x: np.ndarray, noise: NoiseParams) -> np.ndarray:
    a, b = noise.shot, noise.read
    return 2.0 / a * np.sqrt(np.maximum(a * x + 0.375 * a**2 + b, 0.0))


def inverse_gat(y: np.ndarray, noise: NoiseParams) -> np.ndarray:
    a, b = noise.shot, noise.read
    return ((a * y / 2.0) ** 2 - 0.375 * a**2 - b) / a


def _per_plane(noisy: np.ndarray, noise: NoiseParams, denoise_plane) -> np.ndarray:
    """Denoise a packed (4, h, w) RAW plane by plane in the stabilised domain."""
    y = gat(noisy.astype(np.float64), noise)
    out = np.stack([denoise_plane(plane) for plane in y])
    return np.clip(inverse_gat(out, noise), 0.0, 1.0).astype(np.float32)


def nlm(noisy: np.ndarray, noise: NoiseParams) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return _per_plane(noisy, noise, lambda p: denoise_nl_means(
        p, patch_size=NLM_PATCH, patch_distance=NLM_DISTANCE, h=NLM_H, sigma=1.0, fast_mode=True))


def bm3d(noisy: np.ndarray, noise: NoiseParams) -> np.ndarray:
    """BM3D (the `bm3d` package; about 90 s per megapixel on one core)."""
    import bm3d as bm3d_pkg

    return _per_plane(noisy, noise, lambda p: bm3d_pkg.bm3d(p, sigma_psd=1.0))


BASELINES = {"nlm": nlm, "bm3d": bm3d}
