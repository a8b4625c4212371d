"""PSNR and SSIM: SSIM equals scikit-image's Gaussian-window SSIM on RAW planes and RGB."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from fad_deploy.data import unprocess as U
from fad_deploy.data.noise import NoiseParams, add_noise
from fad_deploy.data.photos import skimage_photo
from fad_deploy.isp.metrics import psnr, ssim, ssim_torch

SKIMAGE_AGREEMENT = 1e-3  # issue 2's requirement


def skimage_ssim(a, b, channel_axis):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=channel_axis)


@pytest.fixture(scope="module")
def raw_pair():
    rng = np.random.default_rng(0)
    clean = U.unprocess(skimage_photo("chelsea")[:96, :128], U.random_params(rng))
    return add_noise(clean, NoiseParams(4e-3, 1e-4), rng), clean


def test_psnr_known_values():
    target = np.zeros((4, 8, 8))
    assert psnr(target + 0.01, target) == pytest.approx(40.0)
    assert psnr(target + 0.1, target) == pytest.approx(20.0)
    assert psnr(target + 2.0, target, data_range=255.0) == pytest.approx(10 * np.log10(255.0**2 / 4.0))
    assert psnr(target, target) == float("inf")


def test_ssim_matches_skimage_on_raw_planes(raw_pair):
    noisy, clean = raw_pair
    ours = ssim(noisy, clean, channel_axis=0)
    assert ours == pytest.approx(skimage_ssim(noisy, clean, channel_axis=0), abs=SKIMAGE_AGREEMENT)
    assert 0.0 < ours < 0.99
    assert ssim(clean, clean) == pytest.approx(1.0)


def test_ssim_matches_skimage_on_rgb():
    rng = np.random.default_rng(1)
    photo = skimage_photo("coffee")[:80, :120].astype(np.float64)
    noisy = np.clip(photo + rng.normal(0, 0.05, photo.shape), 0, 1)
    ours = ssim(noisy, photo, channel_axis=-1)
    assert ours == pytest.approx(skimage_ssim(noisy, photo, channel_axis=-1), abs=SKIMAGE_AGREEMENT)


def test_ssim_torch_scores_each_image_of_a_batch(raw_pair):
    noisy, clean = raw_pair
    batch_pred = torch.from_numpy(np.stack([noisy, clean])).double()
    batch_target = torch.from_numpy(np.stack([clean, clean])).double()
    scores = ssim_torch(batch_pred, batch_target)
    assert scores.shape == (2,)
    assert scores[0].item() == pytest.approx(ssim(noisy, clean), abs=1e-9)
    assert scores[1].item() == pytest.approx(1.0)


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((4, 8, 8)), np.zeros((4, 8, 8)))
