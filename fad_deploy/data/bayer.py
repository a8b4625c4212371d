"""Bayer mosaics: 4-plane packing, CFA patterns, unification to RGGB and
Bayer-preserving augmentation (Liu et al. 2019, "Learning raw image denoising with
Bayer pattern unification and Bayer preserving augmentation").

A mosaic is a 2-D array (H, W); a packed image is (..., 4, H/2, W/2) with planes in
the order R, Gr, Gb, B of an RGGB mosaic.
"""
from __future__ import annotations

import numpy as np

from ..errors import FadError

# Offset (row, col) of the red pixel inside the 2x2 tile, per CFA pattern.
RED_OFFSET = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}
CFA_PATTERNS = tuple(RED_OFFSET)


def check_pattern(pattern: str) -> str:
    pattern = str(pattern).upper()
    if pattern not in RED_OFFSET:
        raise FadError(f"unknown CFA pattern {pattern!r}: expected one of {', '.join(CFA_PATTERNS)}")
    return pattern


def check_even(shape, what: str = "image") -> None:
    h, w = shape[-2], shape[-1]
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise FadError(f"{what} has size {h}x{w}: a Bayer mosaic needs even height and width")


def pack(mosaic: np.ndarray) -> np.ndarray:
    """(..., H, W) RGGB mosaic -> (..., 4, H/2, W/2) planes R, Gr, Gb, B."""
    check_even(mosaic.shape, "mosaic")
    return np.stack(
        [mosaic[..., 0::2, 0::2], mosaic[..., 0::2, 1::2], mosaic[..., 1::2, 0::2], mosaic[..., 1::2, 1::2]],
        axis=-3,
    )


def unpack(planes: np.ndarray) -> np.ndarray:
    """(..., 4, h, w) planes -> (..., 2h, 2w) RGGB mosaic; inverse of :func:`pack`."""
    if planes.shape[-3] != 4:
        raise FadError(f"packed RAW must have 4 planes, got shape {planes.shape}")
    h, w = planes.shape[-2:]
    out = np.empty(planes.shape[:-3] + (2 * h, 2 * w), dtype=planes.dtype)
    out[..., 0::2, 0::2] = planes[..., 0, :, :]
    out[..., 0::2, 1::2] = planes[..., 1, :, :]
    out[..., 1::2, 0::2] = planes[..., 2, :, :]
    out[..., 1::2, 1::2] = planes[..., 3, :, :]
    return out


def unify_crop(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Crop one row and/or column so that the mosaic starts with R (training-time unification).

    The result is 2 pixels smaller in each shifted dimension so it stays even.
    """
    dy, dx = RED_OFFSET[check_pattern(pattern)]
    h, w = mosaic.shape[-2:]
    return mosaic[..., dy : h - 2 + dy if dy else h, dx : w - 2 + dx if dx else w]


def unify_pad(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Reflect-pad one row/column at each shifted side so the mosaic becomes RGGB.

    Reflecting one pixel copies the pixel two away, which has the same colour. :func:`unpad_to_pattern` undoes it.
    """
    dy, dx = RED_OFFSET[check_pattern(pattern)]
    # One pixel before a shifted axis puts red at the top-left; one after keeps it even.
    pad = [(0, 0)] * (mosaic.ndim - 2) + [(dy, dy), (dx, dx)]
    return np.pad(mosaic, pad, mode="reflect")


def unpad_to_pattern(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Undo :func:`unify_pad`: return the original pattern's pixels."""
    dy, dx = RED_OFFSET[check_pattern(pattern)]
    h, w = mosaic.shape[-2:]
    return mosaic[..., dy : h - dy, dx : w - dx]


def pack_unified(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """A mosaic in any Bayer pattern -> RGGB planes (unify_pad, then pack); see :func:`unpack_unified`."""
    return pack(unify_pad(mosaic, pattern))


def unpack_unified(planes: np.ndarray, pattern: str) -> np.ndarray:
    """Inverse of :func:`pack_unified`: RGGB planes -> the mosaic in its original pattern."""
    return unpad_to_pattern(unpack(planes), pattern)


def augment(mosaic: np.ndarray, flip_h: bool, flip_v: bool, transpose: bool) -> np.ndarray:
    """Bayer-preserving flip/transpose of an RGGB mosaic; the result is RGGB again.

    Flipping moves the red pixel; cropping one row/column restores RGGB (so a flipped
    axis loses 2 pixels). Transposing an RGGB mosaic keeps R and B in place.
    """
    out = mosaic
    if transpose:
        out = np.swapaxes(out, -1, -2)
    if flip_h:
        out = out[..., :, ::-1]
        out = out[..., :, 1:-1]  # columns now start with G: drop one at each side
    if flip_v:
        out = out[..., ::-1, :]
        out = out[..., 1:-1, :]
    return np.ascontiguousarray(out)
