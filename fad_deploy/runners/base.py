"""The runner interface. Every backend implements :meth:`Runner.run_network` (the model
file on anchor-space input); :meth:`Runner.run` turns its output into the denoised
anchor-space output for every backend alike (exported networks output the residual: it is
added here, in float, to the input or, for int8 models quantized so, to the quantized
input the network saw), and :meth:`Runner.denoise` adds the one shared
pre/post-processing (k-sigma to the model's anchor noise level and back). The export
manifest describes both steps for phones.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np

from ..data.noise import NoiseParams, from_anchor, to_anchor
from ..errors import FadError

IN_CHANNELS = 4  # packed RAW planes R, Gr, Gb, B
RESIDUAL_OUTPUT = "residual"  # a model file's "output" in the export manifest: it predicts the residual
RESIDUAL_NOTE = ("residual in anchor space; denoised = base + output (add in float, before the k-sigma "
                 "inverse), base = the input, or see residual_base: the residual has a noise-sized range, so int8 "
                 "represents it finely")
QUANTIZED_BASE = "quantized input"  # what an int8 model's residual is added to (see quantized_base)
GRID_SHARE = 0.999  # the share of a frame's unclipped pixels an int8 input grid is to hold (as of QAT's inputs)
# ... and at most this part of the grid's top (a frame filling less is run at its own level): chosen on the
# validation photos, where 0.7 and 0.5 cost up to 0.13 and 0.31 dB on frames as they are and did not help bright
# ones on average (benchmarks/results/int8_grid_fit-validation.md)
GRID_FILL = 1.0
QUANTIZED_BASE_RULE = ("int8 files: x = u, or sqrt(max(u, 0)) where input_grid.input_map is 'sqrt', is the "
                       "network input; q = round(x / scale) + zero_point is the int8 input the network gets; where q "
                       "lies in [-128, 127] (before clamping), denoised = b + output with b = (q - zero_point) * scale "
                       "(squared for 'sqrt'), elsewhere u + output. Where input_grid.split is k, the int8 input has 8 "
                       "channels: x is clipped to [min, max], c = min + floor((x - min) / scale) * scale, channels "
                       "0-3 are c and 4-7 k (x - c), each quantized as above, and b = c + (fine channels) / k, "
                       "squared for 'sqrt'. Float files: x = u, denoised = u + output. An int8 file runs a frame at "
                       f"a shot level a' >= a (read noise b kept), in both k-sigma maps: a' = a where the "
                       f"{GRID_SHARE:.1%} quantile x of the frame's pixels below 1 maps to u <= {GRID_FILL:g} * u_top, "
                       "u_top = min(max, (127 - zero_point) * scale), squared for 'sqrt'; else the smallest a' at "
                       "which it does.")
INPUT_BASE = "input"  # what a 16x8 model's residual is added to: its float input (see residual_base)
INPUT_BASE_RULE = ("16x8 files: x = u, or sqrt(max(u, 0)) where input_grid.input_map is 'sqrt', is the network input "
                   "(int16 on the file's input scale); denoised = u + output")


def input_map_of(grid: dict | None) -> str:
    """The input map of an input grid (the manifest's ``residual_base.input_grid``: an int8
    file's, or a 16x8 file's, which names only its map); linear when it names none, and for
    float files, which have no grid."""
    return grid.get("input_map", "linear") if grid else "linear"


def network_input(u, input_map: str):
    """The network's input for anchor-space ``u`` (numpy or torch): ``u`` itself ("linear"), or
    sqrt(max(u, 0)) ("sqrt"), which stabilises the variance: shot noise has one size at every
    intensity, so one int8 step is as fine against the noise in the shadows as in the
    highlights (benchmarks/results/int8_input_map.md)."""
    return u if input_map == "linear" else (u * (u > 0)) ** 0.5


def from_network_input(x, input_map: str):
    """The inverse of :func:`network_input` (where it is invertible)."""
    return x if input_map == "linear" else x * x


def input_channels_of(grid: dict | None) -> int:
    """The channels of a network's input: 8 where its int8 input is split (``grid["split"]``), else 4."""
    return 2 * IN_CHANNELS if grid and grid.get("split") else IN_CHANNELS


def split_channels(x: np.ndarray, grid: dict) -> np.ndarray:
    """The split int8 input (``grid["split"]`` = k) of network input ``x`` (N, 4, h, w): ``x``
    clipped to the grid's range, rounded down onto the grid (its minimum lies on it), and k
    times the remainder, in [0, k scale), concatenated on the channel axis. Each conv reading it
    weighs the remainder by 1 / k (:mod:`fad_deploy.quant.split`), so the network sees ``x`` to
    scale / k with every tensor int8."""
    lo, scale = grid["min"], grid["scale"]
    x = np.clip(x, lo, grid["max"])
    coarse = lo + np.floor((x - lo) / scale) * scale
    return np.concatenate([coarse, (x - coarse) * grid["split"]], 1)


def int8_input(u, grid: dict | None):
    """The input an int8 network of ``grid`` (None: a float network) gets for anchor-space
    ``u``: :func:`network_input`, split where the grid says so (:func:`split_channels`)."""
    x = network_input(u, input_map_of(grid))
    return split_channels(x, grid) if grid and grid.get("split") else x


def rounded(x: np.ndarray, grid: dict) -> tuple[np.ndarray, np.ndarray]:
    """``x`` on the int8 grid (clamped to its range), and where it lay inside the range."""
    level = np.round(x / grid["scale"]) + grid["zero_point"]
    return (np.clip(level, -128, 127) - grid["zero_point"]) * grid["scale"], (level >= -128) & (level <= 127)


def quantized_base(u: np.ndarray, grid: dict) -> np.ndarray:
    """What an int8 network's residual is added to: its int8 input as it saw it (dequantized,
    merged where split, through the inverse input map), and the input itself where it lies
    outside the int8 range. The network can remove the input's rounding error as it removes
    noise; added to the float input, that error would pass to the output untouched (see
    benchmarks/results/int8_recipe.md)."""
    u, input_map = np.asarray(u, np.float32), input_map_of(grid)
    grid = {**grid, "scale": np.float32(grid["scale"])}
    x = network_input(u, input_map)
    seen, inside = rounded(x, grid)
    if grid.get("split"):
        split, _ = rounded(split_channels(x, grid), grid)
        seen = split[:, :IN_CHANNELS] + split[:, IN_CHANNELS:] / grid["split"]
    return np.where(inside, from_network_input(seen, input_map), u).astype(np.float32)


def grid_top(grid: dict | None) -> float | None:
    """The largest anchor-space input ``u`` an int8 input grid holds (None: a float or 16x8 file)."""
    if not grid or "scale" not in grid:
        return None
    top = min(grid.get("max", np.inf), (127 - grid["zero_point"]) * grid["scale"])
    return float(from_network_input(top, input_map_of(grid)))


FIT_STEPS = 40  # bisection steps of grid_level (log a to 2^-40 of its bracket), and at most as many doublings


def grid_level(noisy: np.ndarray, noise: NoiseParams, anchor: NoiseParams, top: float) -> NoiseParams:
    """The level to run an int8 network at for one frame ``noisy`` (values in [0, 1]) with noise
    ``noise``, so that GRID_SHARE of its unclipped pixels map to at most ``top`` in anchor space
    (GRID_FILL of its input grid's top: see :meth:`Runner.levels`): ``noise`` where they do, else
    the smallest larger shot level (read noise kept) at which they do. Above its grid an int8
    network sees its largest input and returns the noisy pixel as it is, and activations beyond
    the ranges QAT learnt are clipped (a bright area at the low-noise end of a model's range, or
    much read noise, left noisy); told of a little more noise than there is, it smooths a little
    more (benchmarks/results/int8_grid_fit-*.md)."""
    unclipped = noisy[noisy < 1.0]
    if unclipped.size == 0:
        return noise
    x = float(np.quantile(unclipped, GRID_SHARE))

    def fits(shot: float) -> bool:
        return float(to_anchor(x, NoiseParams(shot, noise.read), anchor)) <= top

    if fits(noise.shot):
        return noise
    lo, hi = noise.shot, 2 * noise.shot  # u falls as a grows, towards -b_A / a_A (below a grid's top above 0)
    for _ in range(FIT_STEPS):
        if fits(hi):
            break
        lo, hi = hi, 2 * hi
    for _ in range(FIT_STEPS):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return NoiseParams(hi, noise.read)


def residual_base(u: np.ndarray, grid: dict | None) -> np.ndarray:
    """What a network's residual is added to: :func:`quantized_base` for an int8 input grid;
    the input itself for float files and for a grid that names only an input map (a 16x8
    file, whose int16 input the network sees to far below the noise)."""
    return quantized_base(u, grid) if grid and "scale" in grid else np.asarray(u, np.float32)


def check_packed(noisy: np.ndarray, name: str = "input") -> np.ndarray:
    noisy = np.asarray(noisy)
    if noisy.ndim != 4 or noisy.shape[1] != 4:
        raise FadError(f"{name}: expected packed RAW of shape (N, 4, h, w), got {noisy.shape}")
    if not np.issubdtype(noisy.dtype, np.floating):
        raise FadError(f"{name}: expected float RAW normalised to [0, 1], got dtype {noisy.dtype}")
    if not np.isfinite(noisy).all():
        raise FadError(f"{name}: contains NaN or Inf")
    return noisy.astype(np.float32, copy=False)


def preprocess(noisy: np.ndarray, noise: NoiseParams, anchor: NoiseParams) -> np.ndarray:
    """Normalised RAW at the image's noise level -> network input at the anchor level."""
    return to_anchor(noisy, noise, anchor).astype(np.float32)


def postprocess(out: np.ndarray, noise: NoiseParams, anchor: NoiseParams, low: float | None = 0.0) -> np.ndarray:
    """Network output -> denoised RAW at the image's scale, in [``low``, 1] (``low`` None: kept
    below 0, the black level, as a RAW file holds it: clipping there would lift dark areas)."""
    return np.clip(from_anchor(out, noise, anchor), low, 1.0).astype(np.float32)


def noise_arrays(noise, n: int) -> NoiseParams:
    """One NoiseParams for the batch, broadcastable over (N, 4, h, w)."""
    if isinstance(noise, NoiseParams):
        noise = [noise] * n
    if len(noise) != n:
        raise FadError(f"got {len(noise)} noise levels for {n} images")
    return NoiseParams(np.array([p.shot for p in noise], np.float64).reshape(-1, 1, 1, 1),
                       np.array([p.read for p in noise], np.float64).reshape(-1, 1, 1, 1))


class Runner(ABC):
    """A loaded model on one backend."""

    backend: str = "?"
    anchor: NoiseParams
    input_size: tuple[int, int] | None = None  # fixed packed (h, w), or None if any size runs
    multiple: int | None = None  # a fixed-size runner also runs multiples of this (None: input_size only)
    residual: bool = False  # run_network outputs the residual (see RESIDUAL_NOTE), not the denoised input
    base_grid: dict | None = None  # input grid: int8 (the residual goes onto the quantized input) or an input map

    @abstractmethod
    def run_network(self, u: np.ndarray) -> np.ndarray:
        """The model on its input, packed (N, 4, h, w) float32 (anchor-space RAW, or an int8
        network's input map of it: :func:`network_input`) -> its raw output, same shape (the
        residual when ``residual`` is set, else the denoised input)."""

    def run(self, u: np.ndarray) -> np.ndarray:
        """Denoised anchor-space output (N, 4, h, w) for anchor-space input, on every backend."""
        y = self.run_network(int8_input(u, self.base_grid))
        if not self.residual:
            return y
        return y + residual_base(u, self.base_grid)

    grid_fill: float | None = GRID_FILL  # the part of an int8 input grid a frame may fill (None: not fitted)

    @property
    def input_top(self) -> float | None:
        """The largest anchor-space input the network's int8 input grid holds (None: any)."""
        return grid_top(self.base_grid)

    def levels(self, noisy: np.ndarray, noise) -> list[NoiseParams]:
        """The level to run the network at for each frame of ``noisy`` with its noise level(s):
        its own, raised where it would fill more than ``grid_fill`` of an int8 input grid
        (:func:`grid_level`)."""
        noise = [noise] * len(noisy) if isinstance(noise, NoiseParams) else list(noise)
        top = self.input_top
        if top is None or self.grid_fill is None or len(noise) != len(noisy):  # (a count mismatch: noise_arrays)
            return noise
        return [grid_level(frame, n, self.anchor, self.grid_fill * top) for frame, n in zip(noisy, noise)]

    def denoise(self, noisy: np.ndarray, noise, low: float | None = 0.0) -> np.ndarray:
        """Packed noisy RAW normalised to [0, 1] with its noise level(s) -> denoised RAW in [``low``,
        1] (:func:`postprocess`), each frame run at :meth:`levels`."""
        noisy = check_packed(noisy)
        params = noise_arrays(self.levels(noisy, noise), len(noisy))
        return postprocess(self.run(preprocess(noisy, params, self.anchor)), params, self.anchor, low)

    def time(self, u: np.ndarray, warmup: int = 3, repeats: int = 10) -> list[float]:
        """Wall-clock milliseconds of :meth:`run` after ``warmup`` calls."""
        for _ in range(warmup):
            self.run(u)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.run(u)
            times.append((time.perf_counter() - t) * 1e3)
        return times
