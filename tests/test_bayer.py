"""Bayer mosaics: packing, the four CFA patterns, unification to RGGB and
Bayer-preserving augmentation (checked by where each colour lands)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fad_deploy.data.bayer import (
    CFA_PATTERNS,
    RED_OFFSET,
    augment,
    check_even,
    check_pattern,
    pack,
    pack_unified,
    unify_crop,
    unify_pad,
    unpack,
    unpack_unified,
    unpad_to_pattern,
)
from fad_deploy.errors import FadError

R, G, B = 0, 1, 2


def mosaic_of(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an (H, W, 3) image through a CFA of the given pattern."""
    dy, dx = RED_OFFSET[pattern]
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    is_red = (yy % 2 == dy) & (xx % 2 == dx)
    is_blue = (yy % 2 != dy) & (xx % 2 != dx)
    channel = np.where(is_red, R, np.where(is_blue, B, G))
    return np.take_along_axis(rgb, channel[..., None], axis=-1)[..., 0]


def coded_image(h: int, w: int) -> np.ndarray:
    """Each pixel's value says its colour (1000 * (channel + 1)) and its position (y * w + x)."""
    pos = np.arange(h * w, dtype=np.float64).reshape(h, w)
    return np.stack([1000.0 * (c + 1) + pos for c in (R, G, B)], axis=-1)


def colour_codes(planes: np.ndarray) -> list[int]:
    """The colour of each packed plane, asserting each plane holds one colour only."""
    codes = []
    for plane in planes:
        colours = np.unique(plane // 1000)
        assert len(colours) == 1, f"a plane mixes colours {colours}"
        codes.append(int(colours[0]) - 1)
    return codes


def test_pack_layout_and_round_trip():
    rng = np.random.default_rng(0)
    mosaic = rng.random((3, 8, 12))  # batch dimensions pass through
    planes = pack(mosaic)
    assert planes.shape == (3, 4, 4, 6)
    np.testing.assert_array_equal(planes[:, 0], mosaic[:, 0::2, 0::2])  # R
    np.testing.assert_array_equal(planes[:, 1], mosaic[:, 0::2, 1::2])  # Gr
    np.testing.assert_array_equal(planes[:, 2], mosaic[:, 1::2, 0::2])  # Gb
    np.testing.assert_array_equal(planes[:, 3], mosaic[:, 1::2, 1::2])  # B
    np.testing.assert_array_equal(unpack(planes), mosaic)


def test_pack_rejects_odd_sizes_and_unpack_wrong_planes():
    with pytest.raises(FadError, match="7x8"):
        pack(np.zeros((7, 8)))
    with pytest.raises(FadError, match="4 planes"):
        unpack(np.zeros((3, 4, 4)))
    with pytest.raises(FadError, match="even"):
        check_even((8, 9), "photo.png")


def test_unknown_pattern_is_rejected():
    assert check_pattern("grbg") == "GRBG"
    with pytest.raises(FadError, match="XTRANS"):
        check_pattern("XTRANS")
    with pytest.raises(FadError, match="RGBG"):
        unify_pad(np.zeros((4, 4)), "RGBG")


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_unify_crop_gives_rggb(pattern):
    mosaic = mosaic_of(coded_image(10, 14), pattern)
    unified = unify_crop(mosaic, pattern)
    dy, dx = RED_OFFSET[pattern]
    assert unified.shape == (10 - 2 * dy, 14 - 2 * dx)
    assert colour_codes(pack(unified)) == [R, G, G, B]
    np.testing.assert_array_equal(unified[0, 0], mosaic[dy, dx])  # the crop starts at the first red pixel


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_unify_pad_gives_rggb_and_unpads_exactly(pattern):
    mosaic = mosaic_of(coded_image(10, 14), pattern)
    padded = unify_pad(mosaic, pattern)
    dy, dx = RED_OFFSET[pattern]
    assert padded.shape == (10 + 2 * dy, 14 + 2 * dx)
    assert colour_codes(pack(padded)) == [R, G, G, B]
    np.testing.assert_array_equal(unpad_to_pattern(padded, pattern), mosaic)
    planes = pack_unified(mosaic, pattern)
    np.testing.assert_array_equal(planes, pack(padded))
    np.testing.assert_array_equal(unpack_unified(planes, pattern), mosaic)


def test_the_four_patterns_are_distinct_tiles():
    tiles = {p: tuple(mosaic_of(coded_image(2, 2), p).ravel() // 1000 - 1) for p in CFA_PATTERNS}
    assert tiles == {"RGGB": (R, G, G, B), "GRBG": (G, R, B, G), "GBRG": (G, B, R, G), "BGGR": (B, G, G, R)}


def geometric(rgb: np.ndarray, flip_h: bool, flip_v: bool, transpose: bool) -> np.ndarray:
    """The same flips/transpose as :func:`augment`, on the full-colour image, with its crops."""
    out = np.swapaxes(rgb, 0, 1) if transpose else rgb
    if flip_h:
        out = out[:, ::-1][:, 1:-1]
    if flip_v:
        out = out[::-1][1:-1]
    return out


@pytest.mark.parametrize("flip_h,flip_v,transpose", list(itertools.product([False, True], repeat=3)))
def test_augment_keeps_rggb_and_moves_every_pixel_correctly(flip_h, flip_v, transpose):
    rgb = coded_image(12, 16)
    out = augment(mosaic_of(rgb, "RGGB"), flip_h, flip_v, transpose)
    assert colour_codes(pack(out)) == [R, G, G, B]
    # Stronger: the augmented mosaic is exactly the mosaic of the augmented colour image.
    np.testing.assert_array_equal(out, mosaic_of(geometric(rgb, flip_h, flip_v, transpose), "RGGB"))
    assert out.flags.c_contiguous


def test_augment_works_on_batches():
    mosaics = np.stack([mosaic_of(coded_image(8, 8), "RGGB")] * 2)
    out = augment(mosaics, True, True, True)
    assert out.shape == (2, 6, 6)
    assert colour_codes(pack(out[1])) == [R, G, G, B]
