"""The largest exact tile whose activations fit an accelerator's SRAM. Exact tiling itself
(margin, alignment, tiled inference) lives in :mod:`fad_deploy.runners.tiling`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..errors import FadError
from ..runners.tiling import TileSpec
from .accelerator import AcceleratorTarget, weight_bytes
from .graph import trace
from .memory import profile_memory

MAX_TILE = 8192


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

