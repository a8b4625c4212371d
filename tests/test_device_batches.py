"""Batches made with torch on the training device: the same Bayer flips as the NumPy
augmentation, the same noise model and ranges, a pure function of (seed, step, rank)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fad_deploy.data.bayer import augment, pack, unpack
from fad_deploy.data.device_batches import DeviceBatches, bayer_augment
from fad_deploy.data.noise import READ_INTERCEPT, READ_SLOPE
from fad_deploy.data.patch_cache import META_KEYS

PATCH, CROP = 12, 8


def fake_cache(n: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"raw": rng.uniform(0.0, 1.0, (n, 4, PATCH, PATCH)).astype(np.float32),
            "red_gain": rng.uniform(1.9, 2.4, n), "blue_gain": rng.uniform(1.5, 1.9, n),
            "rgb_gain": rng.uniform(0.8, 1.2, n), "cam2rgb": rng.uniform(-1, 1, (n, 3, 3))}


@pytest.mark.parametrize("transpose, flip_h, flip_v", list(itertools.product([False, True], repeat=3)))
def test_bayer_flips_equal_the_numpy_augmentation(transpose, flip_h, flip_v):
    x = fake_cache()["raw"][:2]
    want = pack(augment(unpack(x), flip_h=flip_h, flip_v=flip_v, transpose=transpose))[..., :PATCH - 1, :PATCH - 1]
    flag = lambda on: torch.tensor([on, on])  # noqa: E731
    got = bayer_augment(torch.from_numpy(x), flag(transpose), flag(flip_h), flag(flip_v))
    np.testing.assert_array_equal(got.numpy(), want)


def test_flags_apply_per_image():
    x = torch.from_numpy(fake_cache()["raw"][:2])
    got = bayer_augment(x, torch.tensor([True, False]), torch.tensor([False, True]), torch.tensor([False, False]))
    alone = [bayer_augment(x[i : i + 1], *(torch.tensor([f]) for f in flags))
             for i, flags in enumerate([(True, False, False), (False, True, False)])]
    assert torch.equal(got, torch.cat(alone))


def test_batches_are_a_pure_function_of_seed_step_and_rank():
    data = DeviceBatches(fake_cache(), CROP, seed=3)
    a, b = data.batch(5, 4), data.batch(5, 4)
    assert set(a) == {"noisy", "clean", "shot", "read", *META_KEYS}
    assert a["noisy"].shape == a["clean"].shape == (4, 4, CROP, CROP) and a["cam2rgb"].shape == (4, 3, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["noisy"], data.batch(6, 4)["noisy"])
    assert not torch.equal(data.batch(5, 4, world=2, rank=0)["noisy"], data.batch(5, 4, world=2, rank=1)["noisy"])
    assert not torch.equal(a["noisy"], DeviceBatches(fake_cache(), CROP, seed=4).batch(5, 4)["noisy"])


def test_crops_come_from_the_cached_patches():
    cache = fake_cache(n=1)
    clean = DeviceBatches(cache, CROP).batch(0, 16)["clean"].numpy()
    values = set(np.round(cache["raw"].ravel(), 6))
    assert set(np.round(clean.ravel(), 6)) <= values  # moved, never interpolated


@pytest.mark.parametrize("read_band", [0.0, np.log(10.0)])
def test_noise_follows_the_model_inside_the_ranges(read_band):
    shot_range = (1e-3, 4e-3)
    data = DeviceBatches(fake_cache(), CROP, shot_range=shot_range, read_band=read_band)
    b = data.batch(0, 256)
    a, read = b["shot"].double(), b["read"].double()
    assert shot_range[0] <= a.min() and a.max() <= shot_range[1]
    offset = read.log() - (READ_SLOPE * a.log() + READ_INTERCEPT)
    if read_band:
        assert offset.abs().max() <= read_band and offset.std() > 1.0  # uniform over +-2.3: sd 1.33
    else:
        assert offset.std() == pytest.approx(0.26, rel=0.2)  # UPI's scatter
    variance = a.view(-1, 1, 1, 1) * b["clean"].double() + read.view(-1, 1, 1, 1)
    z = (b["noisy"].double() - b["clean"].double()) / variance.sqrt()
    assert abs(float(z.mean())) < 0.02 and float(z.var()) == pytest.approx(1.0, abs=0.03)
