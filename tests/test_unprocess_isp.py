"""Unprocessing (photo -> RAW) and the minimal forward ISP (RAW -> photo): each step
inverts its partner, the whole round trip reproduces a smooth photo, and Malvar
demosaicing beats bilinear on a natural image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fad_deploy.data import unprocess as U
from fad_deploy.data.photos import skimage_photo
from fad_deploy.errors import FadError
from fad_deploy.isp import process as P
from fad_deploy.isp.metrics import psnr

# Measured by benchmarks/data_pipeline.py: 46.3 dB for this photo, blur and camera (45.5 with seed 2).
ROUND_TRIP_PSNR_DB = 44.0
NO_MOSAIC_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def smooth_photo() -> np.ndarray:
    """A real photo blurred (sigma 2) so that one Bayer sample per pixel loses little."""
    img = skimage_photo("astronaut").astype(np.float64)
    return np.clip(gaussian_filter(img, (2.0, 2.0, 0.0)), 0.0, 1.0)[:256, :256]


def test_tone_curve_and_gamma_invert_exactly():
    x = np.linspace(0.0, 1.0, 1001)
    back = P.smoothstep(torch.from_numpy(U.inverse_smoothstep(x))).numpy()
    np.testing.assert_allclose(back, x, atol=1e-12)
    back = P.gamma_compression(torch.from_numpy(U.gamma_expansion(x))).numpy()
    np.testing.assert_allclose(back[x > 1e-3], x[x > 1e-3], atol=1e-12)


def test_random_camera_is_within_the_published_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = U.random_params(rng)
        np.testing.assert_allclose(p.rgb2cam.sum(axis=1), 1.0, atol=1e-12)
        assert U.RED_GAIN_RANGE[0] <= p.red_gain <= U.RED_GAIN_RANGE[1]
        assert U.BLUE_GAIN_RANGE[0] <= p.blue_gain <= U.BLUE_GAIN_RANGE[1]
        np.testing.assert_allclose(p.cam2rgb @ p.rgb2cam, np.eye(3), atol=1e-10)
    assert set(p.as_arrays()) == {"rgb2cam", "cam2rgb", "rgb_gain", "red_gain", "blue_gain"}


def test_highlights_keep_their_gain():
    """Bright pixels are spared the inverse gains (so they don't clip back to grey)."""
    white = np.ones((2, 2, 3))
    np.testing.assert_allclose(U.safe_invert_gains(white, 1.25, 2.0, 1.7), white)
    dark = np.full((2, 2, 3), 0.2)
    np.testing.assert_allclose(U.safe_invert_gains(dark, 1.25, 2.0, 1.7)[0, 0], 0.2 * np.array([1 / 2.0, 1, 1 / 1.7]) / 1.25)


def test_pipeline_without_mosaic_inverts_away_from_highlights(smooth_photo):
    params = U.random_params(np.random.default_rng(1))
    lin = U.apply_ccm(U.gamma_expansion(U.inverse_smoothstep(smooth_photo)), params.rgb2cam)
    raw_rgb = np.clip(U.safe_invert_gains(lin, params.rgb_gain, params.red_gain, params.blue_gain), 0.0, 1.0)
    # Forward ISP steps on the full-colour image (no mosaic, no demosaic).
    gains = np.array([params.red_gain, 1.0, params.blue_gain]) * params.rgb_gain
    t = torch.from_numpy(np.clip(raw_rgb * gains, 0.0, 1.0)).permute(2, 0, 1)[None]
    t = torch.clamp(P.apply_ccm(t, torch.from_numpy(params.cam2rgb)[None]), 0.0, 1.0)
    back = P.smoothstep(P.gamma_compression(t))[0].permute(1, 2, 0).numpy()
    away = lin.mean(axis=-1) < U.HIGHLIGHT_THRESHOLD
    assert away.mean() > 0.9
    assert np.abs(back - smooth_photo)[away].max() < NO_MOSAIC_TOLERANCE


def test_unprocess_then_process_round_trips_a_smooth_photo(smooth_photo):
    params = U.random_params(np.random.default_rng(1))
    raw = U.unprocess(smooth_photo, params)
    assert raw.shape == (4, 128, 128) and raw.dtype == np.float32
    assert 0.0 <= raw.min() and raw.max() <= 1.0
    back = P.process_numpy(raw, params.as_arrays(), tone_map=True)
    assert back.shape == smooth_photo.shape
    assert psnr(back, smooth_photo) > ROUND_TRIP_PSNR_DB
    # Without the tone curve the ISP is UPI's metric pipeline: a different, darker picture.
    assert psnr(P.process_numpy(raw, params.as_arrays()), smooth_photo) < ROUND_TRIP_PSNR_DB - 10


def test_process_batches_and_gradients():
    raw = torch.rand(2, 4, 8, 8, requires_grad=True)
    ones = torch.ones(2)
    rgb = P.process(raw, ones * 2, ones * 1.5, torch.eye(3).expand(2, 3, 3))
    assert rgb.shape == (2, 3, 16, 16)
    rgb.mean().backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()


@pytest.mark.parametrize("demosaic", ["bilinear", "malvar"])
def test_demosaic_reproduces_a_flat_colour_everywhere(demosaic):
    colour = np.array([0.2, 0.5, 0.7])
    raw = U.mosaic(np.broadcast_to(colour, (8, 10, 3)))
    if demosaic == "bilinear":
        rgb = P.demosaic_bilinear(torch.from_numpy(np.ascontiguousarray(raw))[None])[0].permute(1, 2, 0).numpy()
    else:
        rgb = P.demosaic_malvar(raw)
    np.testing.assert_allclose(rgb, np.broadcast_to(colour, (8, 10, 3)), atol=1e-6)


def test_malvar_beats_bilinear_on_a_natural_image():
    linear = U.gamma_expansion(U.inverse_smoothstep(skimage_photo("chelsea").astype(np.float64)))
    raw = U.mosaic(linear)
    bilinear = P.demosaic_bilinear(torch.from_numpy(raw)[None])[0].permute(1, 2, 0).numpy()
    malvar = np.clip(P.demosaic_malvar(raw), 0.0, 1.0)
    # Measured (benchmarks/data_pipeline.py): 38.5 dB bilinear, 42.2 dB Malvar.
    assert psnr(malvar, linear) > psnr(bilinear, linear) + 2.0


def test_preview_gives_back_the_photo_better_than_the_bilinear_isp():
    photo = skimage_photo("coffee")[64:192, 64:192]
    params = U.random_params(np.random.default_rng(3))
    raw = U.unprocess(photo, params)
    pic = P.preview_rgb(raw, params.as_arrays())
    assert pic.shape == (128, 128, 3) and pic.dtype == np.uint8
    # Measured (benchmarks/data_pipeline.py): 30.5 dB preview (Malvar), 27.3 dB bilinear.
    assert psnr(pic / 255.0, photo) > psnr(P.process_numpy(raw, params.as_arrays(), tone_map=True), photo) + 1.0
    assert psnr(pic / 255.0, photo) > 28.0


def test_a_preview_made_in_bands_is_the_one_made_whole(monkeypatch):
    """Bands keep a large frame's preview to a band's memory (a 12 MP one had taken 1.5 GB)."""
    raw = np.random.default_rng(0).random((4, 37, 20))
    meta = U.random_params(np.random.default_rng(3)).as_arrays()
    banded = {}
    for band in (4, 5, 37):
        monkeypatch.setattr(P, "PREVIEW_BAND", band)
        banded[band] = P.preview_rgb(raw, meta)
    assert banded[37].shape == (74, 40, 3)
    np.testing.assert_array_equal(banded[4], banded[37])
    np.testing.assert_array_equal(banded[5], banded[37])


@pytest.mark.parametrize(
    "image,message",
    [
        (np.full((4, 4, 3), np.nan), "NaN"),
        (np.zeros((4, 4, 3), np.uint8), "dtype uint8"),
        (np.full((4, 4, 3), 1.5), "outside"),
        (np.zeros((5, 4, 3)), "odd"),
        (np.zeros((4, 4)), "shape"),
    ],
)
def test_check_rgb_rejects_bad_images(image, message):
    with pytest.raises(FadError, match=message) as e:
        U.unprocess(image, U.random_params(np.random.default_rng(0)))
    assert str(e.value).startswith("image")  # names what it checked
