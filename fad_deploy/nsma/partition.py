"""Noise sub-ranges of the Noise Subrange Model Array (paper section 3.3, equations 5, 6):
the shot-noise range [a_min, a_max] split into n parts of equal width in log a,

    log a_min_i = log a_min + i / n * (log a_max - log a_min)
    log a_max_i = log a_min + (i + 1) / n * (log a_max - log a_min),   i = 0 .. n-1.
"""
from __future__ import annotations

import math

from ..data.noise import SHOT_RANGE
from ..errors import FadError

ARRAY_SIZE = 4  # the paper's n (Table 2)


def subranges(n: int = ARRAY_SIZE, shot_range: tuple[float, float] = SHOT_RANGE) -> list[tuple[float, float]]:
    """The ``n`` sub-ranges (a_min_i, a_max_i). Neighbours share their boundary exactly
    and the outer ends are exactly the range's ends, so the sub-ranges tile the range."""
    lo, hi = (float(v) for v in shot_range)
    if not (isinstance(n, int) and n >= 1):
        raise FadError(f"the model array needs a whole number of sub-ranges >= 1, got {n!r}")
    if not (0 < lo < hi and math.isfinite(hi)):
        raise FadError(f"shot-noise range {shot_range} must satisfy 0 < min < max")
    span = math.log(hi) - math.log(lo)
    edges = [lo] + [math.exp(math.log(lo) + i / n * span) for i in range(1, n)] + [hi]
    return list(zip(edges[:-1], edges[1:]))

