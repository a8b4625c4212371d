"""PSNR and SSIM on packed RAW (4 planes) and on RGB after the minimal ISP.

SSIM follows Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5) and population
covariances, averaged over the valid (uncropped) area and the channels: the same
numbers as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``. Torch is imported where it is used, so the
CLIs read :data:`SSIM_WINDOW` (their smallest crop) without it.
"""
from __future__ import annotations

import numpy as np

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scikit-image's truncation of the window
SSIM_WINDOW = 2 * SSIM_RADIUS + 1  # the smallest image side SSIM scores (it filters 'valid')
K1, K2 = 0.01, 0.03


def psnr(pred, target, data_range: float = 1.0) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mse = float(np.mean((pred - target) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * np.log10(data_range**2 / mse)


def _gaussian_window(device=None) -> torch.Tensor:
    import torch

    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def ssim_torch(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of (N, C, H, W) images, one value per image (N,)."""
    import torch.nn.functional as F

    c = pred.shape[1]
    g = _gaussian_window(pred.device).to(pred.dtype)
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(x):  # 'valid' filtering == reflect-filtering then cropping the radius
        return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(pred * target) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))


def ssim(pred: np.ndarray, target: np.ndarray, channel_axis: int = 0, data_range: float = 1.0) -> float:
    """SSIM of one multi-channel image (channels on ``channel_axis``), numpy in, float out."""
    import torch

    p = torch.from_numpy(np.moveaxis(np.asarray(pred, dtype=np.float64), channel_axis, 0))[None]
    t = torch.from_numpy(np.moveaxis(np.asarray(target, dtype=np.float64), channel_axis, 0))[None]
    if min(p.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} pixels, got {tuple(p.shape[-2:])}")
    return float(ssim_torch(p, t, data_range)[0])
