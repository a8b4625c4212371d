"""Minimal forward ISP, the inverse of :mod:`fad_deploy.data.unprocess`:
white balance, demosaic, colour matrix, gamma (and optionally the tone curve).

Training-time functions work on torch tensors of packed RAW (N, 4, h, w) so they are
differentiable (RGB losses); :func:`demosaic_malvar` is a numpy routine for pictures.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import convolve

from ..data.bayer import pack, unpack
from ..data.unprocess import GAMMA, GAMMA_FLOOR

_BILINEAR_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0
_BILINEAR_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0


def apply_white_balance(raw: torch.Tensor, red_gain: torch.Tensor, blue_gain: torch.Tensor) -> torch.Tensor:
    """Multiply the R and B planes of packed RAW (N, 4, h, w) by per-image gains (N,)."""
    ones = torch.ones_like(red_gain)
    gains = torch.stack([red_gain, ones, ones, blue_gain], dim=-1)
    return raw * gains[:, :, None, None]


def _cfa_masks(h: int, w: int, device, dtype) -> torch.Tensor:
    """(3, 2h, 2w) masks of where R, G and B are sampled on an RGGB mosaic."""
    planes = torch.eye(4, device=device, dtype=dtype)[:, :, None, None].expand(4, 4, h, w)
    masks = _unpack_t(planes)  # (4, 2h, 2w): one mask per packed plane
    return torch.stack([masks[0], masks[1] + masks[2], masks[3]])


def _unpack_t(planes: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`fad_deploy.data.bayer.unpack` (pixel shuffle in R, Gr, Gb, B order)."""
    return F.pixel_shuffle(planes, 2).squeeze(-3)


def demosaic_bilinear(raw: torch.Tensor) -> torch.Tensor:
    """Packed RGGB (N, 4, h, w) -> linear RGB (N, 3, 2h, 2w) by bilinear interpolation."""
    n, _, h, w = raw.shape
    mosaic = _unpack_t(raw)[:, None]  # (N, 1, 2h, 2w)
    masks = _cfa_masks(h, w, raw.device, raw.dtype)
    sparse = mosaic * masks[None]  # (N, 3, 2h, 2w)
    kernels = torch.stack([_BILINEAR_RB, _BILINEAR_G, _BILINEAR_RB]).to(raw)[:, None]
    # Reflecting one pixel keeps the CFA parity, so borders interpolate like the interior.
    return F.conv2d(F.pad(sparse, (1, 1, 1, 1), mode="reflect"), kernels, groups=3)


def apply_ccm(rgb: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) image times a per-image (N, 3, 3) colour matrix."""
    return torch.einsum("nij,njhw->nihw", ccm, rgb)


def gamma_compression(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, min=GAMMA_FLOOR) ** (1.0 / GAMMA)


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    return 3.0 * x**2 - 2.0 * x**3


def process(raw, red_gain, blue_gain, cam2rgb, rgb_gain=None, tone_map: bool = False) -> torch.Tensor:
    """Packed RAW (N, 4, h, w) -> sRGB (N, 3, 2h, 2w) in [0, 1].

    Without ``tone_map`` this is UPI's minimal ISP used for RGB metrics; with it (and
    ``rgb_gain``) it also re-applies the digital gain and the tone curve, which exactly
    inverts :func:`fad_deploy.data.unprocess.unprocess` away from clipped highlights.
    """
    x = apply_white_balance(raw, red_gain, blue_gain)
    if rgb_gain is not None:
        x = x * rgb_gain[:, None, None, None]
    x = torch.clamp(x, 0.0, 1.0)
    x = demosaic_bilinear(x)
    x = apply_ccm(x, cam2rgb)
    x = torch.clamp(x, 0.0, 1.0)
    x = gamma_compression(x)
    if tone_map:
        x = smoothstep(x)
    return x


def process_numpy(raw: np.ndarray, meta: dict, tone_map: bool = False) -> np.ndarray:
    """One packed RAW (4, h, w) and its unprocessing metadata -> (2h, 2w, 3) sRGB."""
    t = lambda k: torch.as_tensor(np.asarray(meta[k], dtype=np.float32))[None]  # noqa: E731
    rgb = process(
        torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))[None],
        t("red_gain"),
        t("blue_gain"),
        t("cam2rgb"),
        t("rgb_gain") if tone_map else None,
        tone_map,
    )
    return rgb[0].permute(1, 2, 0).numpy()


# ---- Malvar-He-Cutler (2004) demosaic, for pictures ----------------------------------
_G_AT_RB = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8
# Colour at a green pixel whose row holds that colour: strong horizontal taps.
_C_AT_G_ROW = np.array(
    [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]]
) / 8
_C_AT_G_COL = _C_AT_G_ROW.T
_C_AT_OPPOSITE = np.array(
    [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]
) / 8


def demosaic_malvar(raw: np.ndarray) -> np.ndarray:
    """Packed RGGB (4, h, w) -> linear RGB (2h, 2w, 3), gradient-corrected (Malvar et al. 2004)."""
    m = unpack(np.asarray(raw, dtype=np.float64))
    # 'mirror' reflects about the edge pixel, which keeps the CFA parity of padded pixels.
    conv = {name: pack(convolve(m, k, mode="mirror")) for name, k in
            {"g": _G_AT_RB, "row": _C_AT_G_ROW, "col": _C_AT_G_COL, "opp": _C_AT_OPPOSITE}.items()}
    r_p, gr_p, gb_p, b_p = pack(m)
    # Planes: 0 = R site, 1 = Gr site (R row, B column), 2 = Gb site (B row, R column), 3 = B site.
    red = np.stack([r_p, conv["row"][1], conv["col"][2], conv["opp"][3]])
    green = np.stack([conv["g"][0], gr_p, gb_p, conv["g"][3]])
    blue = np.stack([conv["opp"][0], conv["col"][1], conv["row"][2], b_p])
    return np.stack([unpack(red), unpack(green), unpack(blue)], axis=-1)


PREVIEW_BAND = 128  # packed rows of a preview made at a time: made whole, a 12 MP frame's temporaries took 1.5 GB
PREVIEW_CONTEXT = 2  # packed rows read beyond a band's ends: more than the 5x5 demosaic kernels reach


def preview_rgb(raw: np.ndarray, meta: dict) -> np.ndarray:
    """A display-quality sRGB picture (Malvar demosaic, tone curve) as uint8 (2h, 2w, 3), made in
    bands of rows (each with the rows around it the demosaic reads: the same picture as made whole)."""
    raw = np.asarray(raw)
    h = raw.shape[1]
    bands = []
    for start in range(0, h, PREVIEW_BAND):
        stop = min(h, start + PREVIEW_BAND)
        first, last = max(0, start - PREVIEW_CONTEXT), min(h, stop + PREVIEW_CONTEXT)
        bands.append(preview_band(raw[:, first:last], meta)[2 * (start - first):2 * (stop - first)])
    return np.concatenate(bands)


def preview_band(raw: np.ndarray, meta: dict) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    gains = np.array([meta["red_gain"], 1.0, 1.0, meta["blue_gain"]], dtype=np.float64)
    gains = gains * float(meta.get("rgb_gain", 1.0))
    x = np.clip(raw * gains[:, None, None], 0.0, 1.0)
    rgb = np.clip(demosaic_malvar(x), 0.0, 1.0) @ np.asarray(meta["cam2rgb"], dtype=np.float64).T
    rgb = np.clip(rgb, 0.0, 1.0)
    rgb = np.maximum(rgb, GAMMA_FLOOR) ** (1.0 / GAMMA)
    rgb = 3.0 * rgb**2 - 2.0 * rgb**3
    return (rgb * 255.0 + 0.5).astype(np.uint8)
