"""Tiled inference whose output equals the untiled output, over any :class:`Runner`.

Why it can be exact: an output pixel depends only on input pixels within the network's
receptive field, and the U-Net's strided convs and poolings see the same sampling grid in
a tile as in the whole frame when every tile starts at a multiple of the network's total
downsampling factor (``align``, 16 for a 5-level FAN). So the image is first replicate-
padded on the bottom/right to a multiple of ``align`` (exactly what the network does
inside), split into cores of whole ``align`` blocks, and each core is computed from a tile
that extends it by ``margin`` (the receptive-field reach rounded up to ``align``) on every
side that is not the image border. Features padded at a tile edge then never reach the core.

The margin is measured, not derived: a NaN block placed in the input propagates through
every op (NaN * 0 is NaN), so the extent of NaN in the output is the structural reach of
the network, whatever its weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..errors import FadError
from ..models.layers import PadToMultiple
from ..runners.base import Runner
from .accelerator import AcceleratorTarget, weight_bytes
from .graph import RAW_PLANES, trace
from .memory import profile_memory

DEFAULT_TILE = 512  # packed pixels per side for runners that take any size
PROBE_BLOCKS = 16  # first probe is this many align-blocks wide; doubled until NaN stays inside
MAX_PROBE = 4096
MAX_TILE = 8192


@dataclass(frozen=True)
class TileSpec:
    margin: int  # packed pixels of context on each inner tile side (a multiple of align)
    align: int  # tiles start at multiples of this (the network's total downsampling)


def network_align(model: nn.Module) -> int:
    """The multiple the network pads its input to (1 if it does not pad)."""
    pads = [m.multiple for m in model.modules() if isinstance(m, PadToMultiple)]
    return max(pads, default=1)


@torch.no_grad()
def receptive_reach(model: nn.Module, align: int) -> int:
    """Farthest distance (packed pixels) from an aligned input block to an output it changes."""
    model = model.eval()
    size = PROBE_BLOCKS * align
    while size <= MAX_PROBE:
        x = torch.zeros(1, RAW_PLANES, size, size)
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


def axis_tiles(length: int, tile: int, margin: int, fixed: bool) -> list[tuple[int, int, int, int]]:
    """(tile start, tile end, core start, core end) along one axis of a padded length.

    Cores are ``tile - 2 * margin`` long; a tile covers its core plus ``margin`` on both sides,
    clipped at the borders. ``fixed``: every tile is exactly ``tile`` long (shifted inwards
    at the far border), for runners with a fixed input size."""
    core = tile - 2 * margin
    if core <= 0:
        raise FadError(f"tile {tile} is too small for a receptive-field margin of {margin} on both sides "
                       f"(needs more than {2 * margin})")
    out = []
    for c0 in range(0, length, core):
        c1 = min(c0 + core, length)
        t0, t1 = max(0, c0 - margin), min(length, c1 + margin)
        if fixed:
            t0 = max(0, t1 - tile)
            t1 = t0 + tile
        out.append((t0, t1, c0, c1))
    return out


def tiled_run(runner: Runner, u: np.ndarray, spec: TileSpec, tile: int | None = None,
              progress: bool = False) -> np.ndarray:
    """``runner.run`` on (N, 4, H, W) anchor-space input, tile by tile, equal to one whole run.

    Fixed-size runners (``runner.input_size``) get tiles of exactly that size; an image smaller
    than it is replicate-padded up to it (exactness then only holds where the network would
    see the same zero-padded borders, so prefer a dynamic backend for small images)."""
    n, c, h, w = u.shape
    fixed = runner.input_size
    th, tw = fixed if fixed else (tile or DEFAULT_TILE,) * 2
    for name, t in (("height", th), ("width", tw)):
        if t % spec.align:
            raise FadError(f"tile {name} {t} is not a multiple of {spec.align}: the tiles would not share the "
                           f"network's downsampling grid")
    ph, pw = _round_up(h, spec.align), _round_up(w, spec.align)
    if fixed:
        ph, pw = max(ph, th), max(pw, tw)
    padded = np.pad(u, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="edge")
    if not fixed and ph <= th and pw <= tw:
        return runner.run(padded)[..., :h, :w]
    rows = axis_tiles(ph, th, spec.margin, bool(fixed))
    cols = axis_tiles(pw, tw, spec.margin, bool(fixed))
    out = np.empty_like(padded)
    tiles = [(r, q) for r in rows for q in cols]
    for (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) in tqdm(tiles, desc="tiles", disable=not progress, leave=False):
        res = runner.run(np.ascontiguousarray(padded[..., y0:y1, x0:x1]))
        out[..., cy0:cy1, cx0:cx1] = res[..., cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out[..., :h, :w]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class TileFit:
    tile: int  # packed pixels per side
    core: int  # new output pixels per side (tile minus both margins)
    arena_bytes: int
    weight_bytes: int
    weights_on_chip: bool

    @property
    def overhead(self) -> float:
        """MACs spent per useful output MAC (the overlap recomputed by neighbouring tiles)."""
        return (self.tile / self.core) ** 2


def largest_tile(model: nn.Module, target: AcceleratorTarget, spec: TileSpec) -> TileFit:
    """The largest square tile (a multiple of ``spec.align``) whose activation arena fits the
    target's SRAM, next to the weights when those fit too."""
    weights = weight_bytes(model, target.bytes_per_weight)
    budget = target.sram_bytes - (weights if weights <= target.sram_bytes else 0)

    def arena(tile: int) -> int:
        return profile_memory(trace(model, (tile, tile)), bytes_per_element=target.bytes_per_activation).arena_bytes

    lo, hi = 2 * spec.margin // spec.align + 1, MAX_TILE // spec.align  # in align blocks
    if arena(lo * spec.align) > budget:
        raise FadError(f"{target.name}: even the smallest exact tile ({lo * spec.align} px, margin {spec.margin}) "
                       f"needs {arena(lo * spec.align):,} B of activations, over the {budget:,} B of SRAM left")
    while lo < hi:  # the arena grows with the tile: bisect on the largest fitting block count
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if arena(mid * spec.align) <= budget else (lo, mid - 1)
    tile = lo * spec.align
    return TileFit(tile, tile - 2 * spec.margin, arena(tile), weights, weights <= target.sram_bytes)

