"""Sensor noise: generated noise has the variance the model says, UPI's sampling of
(a, b) follows its regression, the k-sigma transform inverts exactly and maps any noise
level onto the anchor's, and camera profiles load from JSON with clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fad_deploy.data import noise as N
from fad_deploy.errors import FadError

FLAT_SIDE = 512  # 262k samples: the variance estimate's relative error is ~0.3 %
VARIANCE_TOLERANCE = 0.03
LEVELS = (0.02, 0.2, 0.8)
PARAMS = (N.NoiseParams(1e-3, 2e-5), N.NoiseParams(1e-2, 4e-4))


@pytest.mark.parametrize("poisson", [False, True])
@pytest.mark.parametrize("params", PARAMS)
def test_noise_variance_matches_the_model(params, poisson):
    rng = np.random.default_rng(0)
    for level in LEVELS:
        clean = np.full((FLAT_SIDE, FLAT_SIDE), level)
        noisy = N.add_noise(clean, params, rng, poisson=poisson)
        assert noisy.dtype == np.float32
        residual = noisy.astype(np.float64) - level
        assert abs(residual.mean()) < 3 * np.sqrt(params.variance(level) / residual.size)  # unbiased
        assert residual.var() == pytest.approx(params.shot * level + params.read, rel=VARIANCE_TOLERANCE)


def test_upi_sampling_follows_the_read_shot_regression():
    rng = np.random.default_rng(0)
    samples = [N.sample_noise_params(rng) for _ in range(4000)]
    log_a = np.log([p.shot for p in samples])
    log_b = np.log([p.read for p in samples])
    assert np.exp(log_a.min()) >= N.SHOT_RANGE[0] and np.exp(log_a.max()) <= N.SHOT_RANGE[1]
    slope, intercept = np.polyfit(log_a, log_b, 1)
    assert slope == pytest.approx(N.READ_SLOPE, abs=0.05)
    assert intercept == pytest.approx(N.READ_INTERCEPT, abs=0.3)
    scatter = np.std(log_b - (N.READ_SLOPE * log_a + N.READ_INTERCEPT))
    assert scatter == pytest.approx(N.READ_SCATTER, rel=0.05)
    # log a is uniform: its quartiles sit a quarter of the way along the log range.
    lo, hi = np.log(N.SHOT_RANGE)
    np.testing.assert_allclose(np.quantile(log_a, [0.25, 0.75]), [lo + (hi - lo) / 4, hi - (hi - lo) / 4], atol=0.1)


def test_sampling_respects_a_restricted_shot_range():
    rng = np.random.default_rng(1)
    shots = [N.sample_noise_params(rng, (1e-3, 2e-3)).shot for _ in range(200)]
    assert 1e-3 <= min(shots) and max(shots) <= 2e-3
    with pytest.raises(FadError, match="range"):
        N.sample_noise_params(rng, (2e-3, 1e-3))
    with pytest.raises(FadError, match="range"):
        N.sample_noise_params(rng, (0.0, 1e-3))


def test_k_sigma_inverts_exactly():
    p = N.NoiseParams(3e-3, 5e-5)
    x = np.random.default_rng(0).uniform(-0.05, 1.0, 1000)
    np.testing.assert_allclose(N.inverse_k_sigma(N.k_sigma(x, p), p), x, rtol=0, atol=1e-12)
    # k-sigma makes the variance equal to the (transformed) value: var(t) = t.
    t = N.k_sigma(0.3, p)
    assert p.variance(0.3) / p.shot**2 == pytest.approx(t)


def test_anchor_mapping_round_trips_and_matches_the_anchor_noise():
    anchor = N.anchor_for_range(N.SHOT_RANGE)
    assert anchor.shot == pytest.approx(np.sqrt(N.SHOT_RANGE[0] * N.SHOT_RANGE[1]))
    assert anchor.read == pytest.approx(float(N.read_from_shot(anchor.shot)))
    rng = np.random.default_rng(0)
    for params in PARAMS:
        x = rng.uniform(0, 1, 100)
        np.testing.assert_allclose(N.from_anchor(N.to_anchor(x, params, anchor), params, anchor), x, atol=1e-12)
        for level in (0.05, 0.5):
            clean = np.full((FLAT_SIDE, FLAT_SIDE), level)
            y = N.to_anchor(N.add_noise(clean, params, rng).astype(np.float64), params, anchor)
            y_clean = N.to_anchor(level, params, anchor)
            assert y.var() == pytest.approx(anchor.shot * y_clean + anchor.read, rel=VARIANCE_TOLERANCE)


def test_built_in_camera_profile_is_pmrid_in_normalised_units():
    profile = N.load_profiles()["pmrid-example"]
    iso = 1600
    k = 0.0005995267 * iso + 0.00868861
    sigma2 = 7.11772e-7 * iso**2 + 6.514934e-4 * iso + 0.11492713
    p = profile.params(iso)
    assert p.shot == pytest.approx(k / 959)
    assert p.read == pytest.approx(sigma2 / 959**2)


def test_user_camera_profile_and_its_errors(tmp_path):
    path = tmp_path / "cams.json"
    path.write_text(json.dumps({
        "_doc": "ignored",
        "my-phone": {"shot": [1e-5, 1e-4], "read": [1e-9, 0.0, 1e-6], "iso_range": [50, 3200]},
    }))
    profiles = N.load_profiles(path)
    assert set(profiles) == {"my-phone"}
    p = profiles["my-phone"].params(100)
    assert p.shot == pytest.approx(1e-5 * 100 + 1e-4)
    assert p.read == pytest.approx(1e-9 * 100**2 + 1e-6)
    with pytest.raises(FadError, match=r"ISO 6400 is outside .*50.0-3200.0.*my-phone"):
        profiles["my-phone"].params(6400)

    path.write_text(json.dumps({"broken": {"shot": [1e-4], "iso_range": [100, 800]}}))
    with pytest.raises(FadError, match="'broken'.*'read'"):
        N.load_profiles(path)
    for bad, message in [({"shot": [float("nan")], "read": [0.0], "iso_range": [100, 800]}, "must be finite numbers"),
                         ({"shot": [1e-4], "read": [0.0], "iso_range": [6400, 100]}, r"iso_range \[6400.0, 100.0\] "
                                                                                       r"must be \[lowest, highest\]"),
                         ({"shot": [1e-4], "read": [0.0], "iso_range": [100, 800], "full_scale": 0}, "full_scale 0")]:
        path.write_text(json.dumps({"odd": bad}))
        with pytest.raises(FadError, match=f"camera profile 'odd': .*{message}"):
            N.load_profiles(path)
    path.write_text("{not json")
    with pytest.raises(FadError, match=f"{path}: not valid JSON"):
        N.load_profiles(path)
    with pytest.raises(FadError, match="missing.json: cannot read"):
        N.load_profiles(tmp_path / "missing.json")


def test_a_read_band_spreads_read_noise_uniformly_around_the_line():
    rng = np.random.default_rng(2)
    band = np.log(10.0)
    samples = [N.sample_noise_params(rng, read_band=band) for _ in range(4000)]
    offset = np.log([p.read for p in samples]) - (N.READ_SLOPE * np.log([p.shot for p in samples]) + N.READ_INTERCEPT)
    assert offset.min() >= -band and offset.max() <= band
    np.testing.assert_allclose(np.quantile(offset, [0.1, 0.5, 0.9]), [-0.8 * band, 0.0, 0.8 * band], atol=0.1)


def test_network_noise_leaves_read_noise_the_networks_learnt_and_moves_the_rest_onto_the_band():
    band = (0.1, 100.0)
    top, bottom = N.read_band_edge(0.012, band[1]), N.read_band_edge(0.012, band[0])
    for mean in (0.1, 0.002, 0.0):  # dark frames too: their read noise was in training
        for given in (N.NoiseParams(0.012, N.read_from_shot(0.012)), N.NoiseParams(0.012, top),
                      N.NoiseParams(0.012, bottom)):
            assert N.network_noise(given, mean, band) is given
    read_dominated = N.NoiseParams(1e-4, 1e-4)  # ~16000 times UPI's line
    run_at = N.network_noise(read_dominated, 0.1, band)
    assert run_at.variance(0.1) == pytest.approx(read_dominated.variance(0.1))  # the same variance at the mean
    assert run_at.read == pytest.approx(N.read_band_edge(run_at.shot, band[1]))  # on the band's top
    assert run_at.shot > read_dominated.shot and run_at.read < read_dominated.read
    just_above = N.network_noise(N.NoiseParams(0.012, top * (1 + 1e-9)), 0.1, band)  # the level moves continuously
    assert just_above.shot == pytest.approx(0.012) and just_above.read == pytest.approx(top)
    far = N.network_noise(N.NoiseParams(1e-9, 1.0), 0.0, band)  # a black frame: its variance at the mean floor
    assert far.variance(N.MEAN_FLOOR) == pytest.approx(1.0 + 1e-9 * N.MEAN_FLOOR)
    assert far.read == pytest.approx(N.read_band_edge(far.shot, band[1]))
    for mean in (0.1, 0.002, 0.0):  # little read noise: a dark frame moves far down, onto the band's bottom
        quiet = N.NoiseParams(0.012, 1e-7)
        run_at = N.network_noise(quiet, mean, band)
        x = max(mean, N.MEAN_FLOOR)
        assert run_at.variance(x) == pytest.approx(quiet.variance(x))
        assert run_at.read == pytest.approx(N.read_band_edge(run_at.shot, band[0]))
        assert run_at.shot < quiet.shot and run_at.read > quiet.read
    just_below = N.network_noise(N.NoiseParams(0.012, bottom * (1 - 1e-9)), 0.1, band)
    assert just_below.shot == pytest.approx(0.012) and just_below.read == pytest.approx(bottom)
    assert N.network_noise(N.NoiseParams(0.012, 0.0), 0.1, (0.0, 100.0)) == N.NoiseParams(0.012, 0.0)  # no bottom
