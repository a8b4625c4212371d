"""Blind estimate of the noise parameters (a, b) of variance = a * x + b from one noisy
packed RAW image, in the spirit of Foi et al. 2008 ("Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data").

Each Bayer plane is cut into small blocks. Per block: the mean (the clean level x, since
the noise has zero mean) and the variance of a second-difference residual that cancels
any locally linear signal, which leaves mostly noise. Blocks with texture are rejected
by a roughness test on the other three planes of the same block (their gradient energy
relative to the noise predicted by the current fit must be typical of pure noise). A
line var = a * mean + b (a, b >= 0) is fitted to the kept blocks by weighted least
squares, and fit and selection alternate, starting from the least textured blocks, until
stable. Clipped pixels (black or white level) carry no noise information and are ignored.

Accuracy on unprocessed photos with synthetic noise: benchmarks/nsma_estimator.py and
benchmarks/results/nsma_estimator.md. Fine texture that no residual cancels biases a
upwards at the lowest noise levels (texture adds to the noise); errors downwards are small.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate
from scipy.optimize import nnls

from ..data.noise import NoiseParams
from ..errors import FadError

BLOCK = 8  # block side on a packed plane (a 16x16 Bayer area)
# Separable second difference [1,-2,1] x [1,-2,1]: zero on any locally linear signal;
# divided by its L2 norm (6), so pure noise keeps its variance.
RESIDUAL_KERNEL = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0]) / 6.0
# A block is "smooth" when its texture score is below this quantile of the score of pure noise.
SMOOTH_QUANTILE = 0.9
ITERATIONS = 10
MIN_BLOCKS = 16  # fewer usable blocks than this: no trustworthy estimate
MIN_SMOOTH_FRACTION = 0.05  # fit at least this share of the usable blocks (the least textured)
CLIP_FRACTION = 1e-3  # a plane's min/max repeated on this many pixels is a clipping level
SHOT_FLOOR = 1e-8  # a clean image still needs a positive shot parameter
NULL_SIZE = 512  # side of the pure-noise planes that calibrate the roughness test
TOLERANCE = 1e-4  # relative change of a that ends the iteration


@dataclass(frozen=True)
class NoiseEstimate:
    params: NoiseParams
    blocks_used: int
    blocks_total: int


def _blocks(x: np.ndarray) -> np.ndarray:
    """(h, w) -> (n_blocks, BLOCK * BLOCK), dropping the incomplete border blocks."""
    h, w = x.shape[0] // BLOCK * BLOCK, x.shape[1] // BLOCK * BLOCK
    return x[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK * BLOCK)


def _clipped(plane: np.ndarray) -> np.ndarray:
    """Pixels sitting on a clipping level: the plane's min or max when it repeats a lot and
    holds more pixels than the next level inside it (clipping piles every value beyond the
    level onto it; a flat field stored as a few integer values has its extremes in the tails
    of its noise, each rarer than the level next to it)."""
    mask = np.zeros(plane.shape, dtype=bool)
    low, high = plane.min(), plane.max()
    inner = plane[(plane > low) & (plane < high)]
    neighbours = (inner.min(), inner.max()) if inner.size else (None, None)
    for level, neighbour in zip((low, high), neighbours):
        hit = plane == level
        count = hit.sum()
        if count > CLIP_FRACTION * plane.size and (neighbour is None or count > (plane == neighbour).sum()):
            mask |= hit
    return mask


def block_statistics(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Per plane and block, arrays (4, n_blocks): ``mean`` level, ``variance`` of the
    residual, ``roughness`` (mean squared neighbour difference / 2: the noise variance on
    flat areas, larger on texture) and ``clipped`` (any clipped pixel)."""
    stats = {k: [] for k in ("mean", "variance", "roughness", "clipped")}
    for plane in np.asarray(raw, dtype=np.float64):
        inner = plane[1:-1, 1:-1]  # where the 3x3 residual is defined
        residual = correlate(plane, RESIDUAL_KERNEL, mode="nearest")[1:-1, 1:-1]
        dx = plane[1:-1, 2:] - inner
        dy = plane[2:, 1:-1] - inner
        stats["mean"].append(_blocks(inner).mean(1))
        stats["variance"].append((_blocks(residual) ** 2).mean(1))
        stats["roughness"].append(_blocks(dx**2 + dy**2).mean(1) / 4.0)
        stats["clipped"].append(_blocks(_clipped(plane)[1:-1, 1:-1]).any(1))
    return {k: np.stack(v) for k, v in stats.items()}


def texture_score(roughness: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(4, n) -> (4, n): for each plane, the roughness of the *other three* planes of the
    same block relative to their predicted noise (1 on flat areas). The planes share the
    scene's texture but not its noise, so the test that keeps a block does not favour
    blocks whose own noise happens to be low (which would bias the fit down)."""
    ratio = roughness / predicted
    return (ratio.sum(0, keepdims=True) - ratio) / (len(ratio) - 1)


@functools.cache
def _smooth_threshold() -> float:
    """The SMOOTH_QUANTILE of the texture score on pure unit noise."""
    noise = np.random.default_rng(0).normal(size=(4, NULL_SIZE, NULL_SIZE))
    s = block_statistics(noise)
    return float(np.quantile(texture_score(s["roughness"], np.ones_like(s["roughness"])), SMOOTH_QUANTILE))


def fit_line(mean: np.ndarray, variance: np.ndarray, iterations: int = 5) -> tuple[float, float]:
    """var = a * mean + b with a, b >= 0, by least squares weighted by 1 / predicted var^2
    (a block's variance estimate has a spread proportional to its variance). The first pass
    is unweighted: weighting by the observed variances would favour blocks that are low by
    chance. Without the sign constraint, blocks spanning a narrow range of levels can give
    a steep line with a negative intercept: a many times too large."""
    design = np.stack([mean, np.ones_like(mean)], axis=1)
    weight = np.ones_like(mean)
    floor = 1e-3 * float(np.median(variance))
    for _ in range(iterations):
        root = np.sqrt(weight)
        (a, b), _ = nnls(design * root[:, None], variance * root)
        weight = 1.0 / np.maximum(design @ (a, b), floor) ** 2
    return float(a), float(b)


def smoothest(score: np.ndarray, usable: np.ndarray, threshold: float) -> np.ndarray:
    """Usable blocks whose texture score passes the threshold; on a scene with texture
    everywhere, the MIN_SMOOTH_FRACTION least textured ones instead."""
    smooth = usable & (score < threshold)
    wanted = max(MIN_BLOCKS, int(MIN_SMOOTH_FRACTION * usable.sum()))
    if smooth.sum() < wanted:
        cut = np.sort(score[usable])[min(wanted, usable.sum()) - 1]
        smooth = usable & (score <= cut)
    return smooth


def estimate_noise(raw: np.ndarray, name: str = "image") -> NoiseEstimate:
    """(a, b) of a packed noisy RAW (4, h, w) normalised to [0, 1]."""
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[0] != 4:
        raise FadError(f"{name}: noise estimation needs one packed RAW (4, h, w), got shape {raw.shape}")
    s = block_statistics(raw)
    # A block is usable when none of its 4 planes is clipped (the score reads all four).
    varies = s["variance"] > 0
    usable = np.broadcast_to(~s["clipped"].any(0), s["mean"].shape) & varies
    if varies.sum() < MIN_BLOCKS <= varies.size:
        raise FadError(f"{name}: {varies.sum()} of its {varies.size} {BLOCK}x{BLOCK} blocks vary at all (a flat, "
                       "noise-free or clipped frame): no noise to estimate; give the noise level "
                       "(--shot-noise/--read-noise or --iso/--camera)")
    if usable.sum() < MIN_BLOCKS:
        raise FadError(f"{name}: too small or too clipped to estimate its noise ({usable.sum()} usable "
                       f"{BLOCK}x{BLOCK} blocks); give the noise level (--shot-noise/--read-noise or --iso/--camera)")
    mean, variance = s["mean"], s["variance"]
    # Start from (almost) no noise: no block passes the test, so the first fit uses the least
    # textured blocks and a rises to the lowest self-consistent level from there. (Starting
    # from a fit to all blocks can stick at a level where texture passes for noise.)
    a, b = SHOT_FLOOR, 0.0
    threshold = _smooth_threshold()
    for _ in range(ITERATIONS):
        predicted = np.maximum(a * mean + b, np.finfo(float).tiny)
        smooth = smoothest(texture_score(s["roughness"], predicted), usable, threshold)
        a_new, b = fit_line(mean[smooth], variance[smooth])
        done = abs(a_new - a) <= TOLERANCE * abs(a)
        a = a_new
        if done:
            break
    return NoiseEstimate(NoiseParams(max(a, SHOT_FLOOR), b), int(smooth.sum()), int(mean.size))
