"""Sensor noise: heteroscedastic shot + read noise, camera noise profiles and the
k-sigma transform (Wang et al. 2020, PMRID).

Noise model, on RAW values x in [0, 1]: variance(x) = a * x + b, with a the shot
(signal-dependent) and b the read (signal-independent) parameter.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import FadError

# UPI's sampling of (a, b): log a uniform, log b linear in log a plus Gaussian scatter.
SHOT_RANGE = (1e-4, 0.012)
READ_SLOPE, READ_INTERCEPT, READ_SCATTER = 2.18, 1.20, 0.26


@dataclass(frozen=True)
class NoiseParams:
    shot: float  # a
    read: float  # b

    def variance(self, x):
        return self.shot * np.maximum(x, 0.0) + self.read


def read_from_shot(shot, scatter: float = 0.0):
    """The mean UPI read level for a shot level (plus optional log-scatter)."""
    return np.exp(READ_SLOPE * np.log(shot) + READ_INTERCEPT + scatter)


def read_scatter(rng: np.random.Generator, read_band: float = 0.0) -> float:
    """The log-offset of the read level from UPI's line: UPI's Gaussian scatter, or (``read_band``
    > 0) uniform in [-read_band, read_band], so read noise off the line (other sensors, other
    gains) is seen as often as on it (ln 10 = 2.30: from 0.1x to 10x the line)."""
    return rng.uniform(-read_band, read_band) if read_band > 0 else rng.normal(0.0, READ_SCATTER)


def sample_noise_params(rng: np.random.Generator, shot_range: tuple[float, float] = SHOT_RANGE,
                        read_band: float = 0.0) -> NoiseParams:
    """Sample (a, b): a log-uniformly in the shot range, b from UPI's read-noise regression
    (see :func:`read_scatter`)."""
    lo, hi = shot_range
    if not 0 < lo <= hi:
        raise FadError(f"shot-noise range {shot_range} must satisfy 0 < min <= max")
    log_a = rng.uniform(np.log(lo), np.log(hi))
    b = read_from_shot(np.exp(log_a), read_scatter(rng, read_band))
    return NoiseParams(float(np.exp(log_a)), float(b))


def add_noise(raw: np.ndarray, params: NoiseParams, rng: np.random.Generator, poisson: bool = False) -> np.ndarray:
    """Add shot + read noise to clean RAW.

    Gaussian approximation (UPI) by default: x + N(0, a x + b). With ``poisson`` the shot
    part is exact: a * Poisson(x / a) + N(0, b) (PMRID).
    """
    raw = np.asarray(raw, dtype=np.float64)
    if poisson:
        shot = params.shot * rng.poisson(np.maximum(raw, 0.0) / params.shot)
        noisy = shot + rng.normal(0.0, np.sqrt(params.read), raw.shape)
    else:
        noisy = raw + rng.normal(0.0, 1.0, raw.shape) * np.sqrt(params.variance(raw))
    return noisy.astype(np.float32)


# ---- k-sigma transform ---------------------------------------------------------------

def k_sigma(x, params: NoiseParams):
    """x -> x / a + b / a^2: the noise variance of the result equals its value."""
    return x / params.shot + params.read / params.shot**2


def inverse_k_sigma(t, params: NoiseParams):
    """Exact inverse of :func:`k_sigma`."""
    return (t - params.read / params.shot**2) * params.shot


def to_anchor(x, params: NoiseParams, anchor: NoiseParams):
    """Map RAW with noise ``params`` to the anchor noise level (PMRID).

    The result has variance anchor.shot * y + anchor.read, whatever the image's own
    level, so one network serves every noise level. Linear in x (works on tensors too).
    """
    return inverse_k_sigma(k_sigma(x, params), anchor)


def from_anchor(y, params: NoiseParams, anchor: NoiseParams):
    """Exact inverse of :func:`to_anchor`: back to the image's own RAW scale."""
    return inverse_k_sigma(k_sigma(y, anchor), params)


MEAN_FLOOR = 1e-3  # the mean level network_noise assumes at least (a black frame would make a unbounded)
FLOOR_RTOL = 1e-6  # see below_floor
# read noise from READ_BAND_LOW to READ_BAND times UPI's line is run as it is; outside, the level is moved onto
# the band's nearer edge (network_noise); both chosen on the validation photos (scikit-image's,
# benchmarks/read_dominated.py). The bottom, 0.6, is two of the training scatters below the line (e^-0.52): the read
# noise the networks were trained on runs as it is (bottoms up to 2 gain more on dark frames there, but move it)
READ_BAND_LOW, READ_BAND = 0.6, 100.0
BISECTIONS = 60  # network_noise's search for a' (in log a': far below float64's resolution after 60 halvings)


def read_band_edge(shot, multiple: float = READ_BAND):
    """The read noise ``multiple`` times UPI's line at shot level(s) ``shot`` (the band's edges:
    READ_BAND_LOW and READ_BAND)."""
    return multiple * read_from_shot(shot)


def network_noise(noise: NoiseParams, mean_level: float,
                  band: tuple[float, float] = (READ_BAND_LOW, READ_BAND)) -> NoiseParams:
    """The noise level to run a k-sigma network at, for an image with noise ``noise`` whose
    pixels average ``mean_level`` x. Read noise inside ``band`` (b from band[0] to band[1] times
    UPI's line e^c a^s) is left as it is: the networks learnt it, dark frames included. Outside, the
    level (a', b') on the band's nearer edge k with the same variance at x: a' x + k e^c a'^s = a x + b,
    b' = k e^c a'^s (one a' solves it: the left side grows with a'). The k-sigma map then keeps black
    where the networks saw it (b' / a'^2 inside the band): above the band the image's own 1/a scale
    would take its input far outside anything they saw, and a read-dominated image would come out as
    noisy as it went in; below it a dark frame at a high shot level would sit under the smallest
    inputs they saw (benchmarks/results/read_dominated.md)."""
    low, high = band
    x = max(float(mean_level), MEAN_FLOOR)
    variance = float(noise.variance(x))
    if noise.read > read_band_edge(noise.shot, high):
        return level_on_edge(variance, x, high, (noise.shot, variance / x))
    bottom = float(read_band_edge(noise.shot, low))
    if noise.read < bottom:
        # at a' = a r (r <= 1) the left side is at most r (a x + bottom): below a x at this r
        r = noise.shot * x / (2 * (noise.shot * x + bottom))
        return level_on_edge(variance, x, low, (noise.shot * r, noise.shot))
    return noise


def level_on_edge(variance: float, x: float, multiple: float, bracket: tuple[float, float]) -> NoiseParams:
    """The level (a', multiple e^c a'^s) of variance ``variance`` at x, a' found by bisection in log a'
    inside ``bracket`` (the variance at x is below ``variance`` at its low end, above at its high end)."""
    lo, hi = math.log(bracket[0]), math.log(bracket[1])
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if math.exp(mid) * x + read_band_edge(math.exp(mid), multiple) > variance:
            hi = mid
        else:
            lo = mid
    shot = math.exp(lo)
    return NoiseParams(shot, variance - shot * x)


def below_floor(shot, floor: float):
    """Whether shot level(s) ``shot`` lie below ``floor``; a level on it but for float32 rounding
    (as fad-data sets store a: up to 6e-8 relative) is on it."""
    return np.asarray(shot) < floor * (1 - FLOOR_RTOL)


def floor_level(noise: NoiseParams, mean_level: float, floor: float) -> tuple[NoiseParams, float]:
    """The level to run a network whose noise range starts at shot level ``floor`` at, for an image
    with noise ``noise`` whose pixels average ``mean_level``, and the share of the network's change
    to keep. At or above the floor: (noise, 1). Below it: (floor, b), since a network run far below
    the levels it learnt returns garbage, and w = (a x + b) / (floor x + b), the image's noise
    variance at x over the one the network is told of; the network then over-smooths, the more so
    the smaller w, and output = input + w (network output - input) keeps w of its change
    (benchmarks/results/out_of_range*.md)."""
    if not below_floor(noise.shot, floor):
        return noise, 1.0
    x = max(float(mean_level), MEAN_FLOOR)
    run = NoiseParams(float(floor), noise.read)
    return run, float(noise.variance(x) / run.variance(x))


def anchor_at(shot: float) -> NoiseParams:
    """The anchor noise level for a shot level, read noise from UPI's regression."""
    return NoiseParams(float(shot), float(read_from_shot(shot)))


def anchor_for_range(shot_range: tuple[float, float]) -> NoiseParams:
    """Anchor at the geometric centre of a shot range."""
    return anchor_at(float(np.sqrt(shot_range[0] * shot_range[1])))


# ---- camera noise profiles -----------------------------------------------------------

@dataclass(frozen=True)
class CameraProfile:
    """Noise of one sensor as a function of ISO, in normalised units (x in [0, 1]).

    ``shot`` and ``read`` are polynomial coefficients in ISO, highest power first
    (numpy.polyval order), already divided by the white level (and its square for read).
    """

    name: str
    shot: tuple[float, ...]
    read: tuple[float, ...]
    iso_range: tuple[float, float]

    def params(self, iso: float) -> NoiseParams:
        lo, hi = self.iso_range
        if not lo <= iso <= hi:
            raise FadError(f"ISO {iso} is outside the calibrated range {lo}-{hi} of camera profile {self.name!r}")
        return NoiseParams(float(np.polyval(self.shot, iso)), float(np.polyval(self.read, iso)))


def profile_from_dict(name: str, d: dict) -> CameraProfile:
    """Build a profile from JSON. ``full_scale`` (white - black level) converts DN units."""
    try:
        scale = float(d.get("full_scale", 1.0))
        if not scale > 0:
            raise ValueError(f"full_scale {scale:g} is not above 0")
        shot = tuple(float(c) / scale for c in d["shot"])
        read = tuple(float(c) / scale**2 for c in d["read"])
        iso_range = (float(d["iso_range"][0]), float(d["iso_range"][1]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:  # (AttributeError: not an object)
        raise FadError(f"camera profile {name!r}: needs 'shot', 'read' coefficient lists and 'iso_range' ({e})")
    if not all(math.isfinite(c) for c in (scale, *shot, *read, *iso_range)):
        raise FadError(f"camera profile {name!r}: its full_scale, coefficients and iso_range must be finite numbers")
    if not 0 < iso_range[0] <= iso_range[1]:
        raise FadError(f"camera profile {name!r}: iso_range {list(iso_range)} must be [lowest, highest] ISO, above 0")
    return CameraProfile(name, shot, read, iso_range)


def load_profiles(path: str | Path | None = None) -> dict[str, CameraProfile]:
    """Camera profiles from a JSON file (default: the ones shipped with the package)."""
    if path is None:
        text = resources.files("fad_deploy.data").joinpath("camera_profiles.json").read_text()
        source = "built-in camera_profiles.json"
    else:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise FadError(f"{path}: cannot read camera profiles ({e.strerror})")
        except UnicodeDecodeError:
            raise FadError(f"{path}: not a JSON file of camera profiles (not text)") from None
        source = str(path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise FadError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})")
    if not isinstance(raw, dict):
        raise FadError(f"{source}: camera profiles are a JSON object of named profiles")
    return {name: profile_from_dict(name, d) for name, d in raw.items() if not name.startswith("_")}
