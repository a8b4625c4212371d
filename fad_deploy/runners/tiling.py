"""Tiled inference whose output equals the untiled output, over any :class:`Runner`.

Why it can be exact: an output pixel depends only on input pixels within the network's
receptive field, and the U-Net's strided convs and poolings see the same sampling grid in
a tile as in the whole frame when every tile starts at a multiple of the network's total
downsampling factor (``align``, 16 for a 5-level FAN). So the image is first replicate-
padded on the bottom/right to a multiple of ``align`` (exactly what the network does
inside), split into cores of whole ``align`` blocks, and each core is computed from a tile
that extends it by ``margin`` (the receptive-field reach rounded up to ``align``) on every
side that is not the image border. Features padded at a tile edge then never reach the core.
Every tile has the same size; the last one along an axis is shifted inwards to end at the
frame's border, so it sees the same border as the whole frame.

The margin is measured, not derived: a NaN block placed in the input propagates through
every op (NaN * 0 is NaN), so the extent of NaN in the output is the structural reach of
the network, whatever its weights. Export manifests record it (``tiling``) for phones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..errors import FadError
from ..models.layers import PadToMultiple
from ..models.registry import build
from .base import Runner

# Packed pixels per side of the tiles of runners that take any size: bounds a 12 MP frame's
# activation memory (benchmarks/results/denoise_12mp.md) at a 1.3x overlap cost for the FAN.
DEFAULT_TILE = 512
PROBE_BLOCKS = 16  # first probe is this many align-blocks wide; doubled until NaN stays inside
MAX_PROBE = 4096
PLANES = 4  # packed RGGB input planes
# Packed pixels mirrored onto every side of a frame before it is run (and cropped off after):
# the networks' zero padding then falls outside the image, not on its first rows and columns.
BORDER = 16
Span = tuple[int, int, int, int]  # along one axis: tile start, tile end, core start, core end


@dataclass(frozen=True)
class TileSpec:
    margin: int  # packed pixels of context on each inner tile side (a multiple of align)
    align: int  # tiles start at multiples of this (the network's total downsampling)

    @property
    def smallest_tile(self) -> int:
        """The smallest tile side that leaves an inner core beside the margins on both sides."""
        return 2 * self.margin + self.align


def network_align(model: nn.Module) -> int:
    """The multiple the network pads its input to (1 if it does not pad)."""
    pads = [m.multiple for m in model.modules() if isinstance(m, PadToMultiple)]
    return max(pads, default=1)


@torch.no_grad()
def receptive_reach(model: nn.Module, align: int) -> int:
    """Farthest distance (packed pixels) from an aligned input block to an output it changes."""
    model = model.eval()
    pools = [name for name, m in model.named_modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if pools:  # found before probing ever larger frames (up to MAX_PROBE: minutes) for a reach without end
        raise FadError(f"{type(model).__name__}: its global pooling ({pools[0]}) makes every output pixel depend on "
                       "the whole frame; cannot tile exactly")
    size = PROBE_BLOCKS * align
    while size <= MAX_PROBE:
        x = torch.zeros(1, PLANES, size, size)
        c = (size // 2) // align * align
        x[..., c : c + align, c : c + align] = float("nan")
        hit = torch.isnan(model(x)).any(dim=(0, 1))
        rows, cols = hit.any(dim=1).nonzero().flatten(), hit.any(dim=0).nonzero().flatten()
        lo, hi = min(rows[0], cols[0]).item(), max(rows[-1], cols[-1]).item()
        if lo > 0 and hi < size - 1:
            return max(c - lo, hi - (c + align - 1))
        size *= 2
    raise FadError(f"{type(model).__name__}: receptive field wider than {MAX_PROBE} pixels; cannot tile exactly")


def tile_spec(model: nn.Module) -> TileSpec:
    align = network_align(model)
    reach = receptive_reach(model, align)
    return TileSpec(margin=-(-reach // align) * align, align=align)


def arch_tile_spec(arch: str, config: dict | None) -> TileSpec:
    """:func:`tile_spec` of a network described by its architecture and config (weights do not
    matter), e.g. a checkpoint's or an export manifest entry's."""
    return tile_spec(build(arch, config))


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def axis_tiles(length: int, tile: int, margin: int) -> list[Span]:
    """The tiles' spans along one axis of a padded length.

    Cores are ``tile - 2 * margin`` long; every tile is exactly ``tile`` long and covers its
    core plus at least ``margin`` on each side that is not a border (the last tile is shifted
    inwards to end at the border). One tile as long as the axis needs no margin."""
    if tile >= length:
        return [(0, length, 0, length)]
    core = tile - 2 * margin
    if core <= 0:
        raise FadError(f"tile {tile} is too small for a receptive-field margin of {margin} on both sides "
                       f"(needs more than {2 * margin})")
    out = []
    for c0 in range(0, length, core):
        c1 = min(c0 + core, length)
        t1 = min(length, max(c1 + margin, tile))
        out.append((t1 - tile, t1, c0, c1))
    return out


def tile_shape(runner: Runner, padded: tuple[int, int], tile: int) -> tuple[int, int]:
    """(h, w) of the tiles of a frame padded to ``padded`` (multiples of the alignment): the
    runner's fixed input size, else ``tile``; no larger than the frame where the runner runs
    that size (any size, or a fixed-size runner at multiples of its ``multiple``)."""
    size = runner.input_size or (tile, tile)
    if runner.input_size and not (runner.multiple and all(p % runner.multiple == 0 for p in padded)):
        return size  # runs its own size only: a smaller frame is padded up to it
    return min(size[0], padded[0]), min(size[1], padded[1])


def tile_plan(runner: Runner, hw: tuple[int, int], spec: TileSpec,
              tile: int | None = None) -> tuple[tuple[int, int], list[tuple[Span, Span]]]:
    """How :func:`tiled_run` cuts an (h, w) frame: the padded (h, w), and per tile its spans
    along the rows and along the columns."""
    ph, pw = round_up(hw[0], spec.align), round_up(hw[1], spec.align)
    th, tw = tile_shape(runner, (ph, pw), tile or DEFAULT_TILE)
    for name, t in (("height", th), ("width", tw)):
        if t % spec.align:
            raise FadError(f"tile {name} {t} is not a multiple of {spec.align}: the tiles would not share the "
                           f"network's downsampling grid")
    ph, pw = max(ph, th), max(pw, tw)
    return (ph, pw), [(r, q) for r in axis_tiles(ph, th, spec.margin) for q in axis_tiles(pw, tw, spec.margin)]


def tiled_run(runner: Runner, u: np.ndarray, spec: TileSpec, tile: int | None = None,
              progress: bool = False) -> np.ndarray:
    """``runner.run`` on (N, 4, H, W) anchor-space input, tile by tile, equal to one whole run.

    The frame is replicate-padded on the bottom/right to a multiple of ``spec.align`` (and,
    for a runner that takes only its fixed ``input_size``, up to that size), then run in tiles
    of :func:`tile_shape`; the output equals one run on that padded frame, cropped back."""
    h, w = u.shape[-2:]
    (ph, pw), tiles = tile_plan(runner, (h, w), spec, tile)
    padded = np.pad(u, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="edge")
    if len(tiles) == 1:
        return runner.run(padded)[..., :h, :w]
    out = np.empty_like(padded)
    for (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) in tqdm(tiles, desc="tiles", disable=not progress, leave=False):
        res = runner.run(np.ascontiguousarray(padded[..., y0:y1, x0:x1]))
        out[..., cy0:cy1, cx0:cx1] = res[..., cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out[..., :h, :w]


def mirrored(u: np.ndarray, border: int = BORDER) -> np.ndarray:
    """(N, C, H, W) with ``border`` pixels mirrored onto every side (about the edge pixels; packed
    planes keep their colours)."""
    return np.pad(u, ((0, 0), (0, 0), (border, border), (border, border)), mode="reflect")


class TiledRunner(Runner):
    """Any runner, run tile by tile (:func:`tiled_run`) on the frame with :data:`BORDER` pixels
    mirrored onto every side: frames of any size, with the memory of one tile, and the output of
    one run on the whole (padded) frame."""

    def __init__(self, inner: Runner, spec: TileSpec, tile: int | None = None):
        self.inner, self.spec, self.tile = inner, spec, tile  # tile: packed side for any-size runners
        self.anchor, self.backend = inner.anchor, inner.backend

    def border(self, h: int, w: int) -> int:
        """:data:`BORDER`, or 0 where the mirrored frame would need tiles too small for the margins
        (a file exported at a small fixed input runs a frame that fits it in one tile, as it is)."""
        try:
            tile_plan(self.inner, (h + 2 * BORDER, w + 2 * BORDER), self.spec, self.tile)
        except FadError:
            return 0
        return BORDER

    @property
    def input_top(self) -> float | None:
        return self.inner.input_top

    def run_network(self, u: np.ndarray) -> np.ndarray:
        # The inner runner's run() already adds any residual, so this output is final.
        h, w = u.shape[-2:]
        b = self.border(h, w)
        out = tiled_run(self.inner, mirrored(u, b), self.spec, self.tile, progress=True)
        return out[..., b : b + h, b : b + w]


def framed(runner: Runner, checkpoint=None) -> Runner:
    """``runner`` (of ``checkpoint``'s network; default: a torch runner's own) as fad-denoise runs
    a network on frames: tiled, with the mirrored border (:class:`TiledRunner`), so that a model
    scored alone and the same model in an array are scored alike. A network that cannot be tiled
    (global pooling: fad-denoise refuses it) is run on each frame whole, as it is."""
    ckpt = checkpoint or runner.checkpoint
    try:
        return TiledRunner(runner, arch_tile_spec(ckpt.arch, ckpt.config))
    except FadError:
        return runner
