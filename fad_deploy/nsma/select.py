"""Pick the model of the array for an image's shot-noise level a.

The choice is made from a sub-range table that is plain data (a list of
{"name", "file", "shot_min", "shot_max"} in the manifest), so a phone can repeat it
without this code; :data:`SELECTION_RULE` states the rule in words for the manifest.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import FadError

TABLE_KEY = "subranges"  # where a manifest holds the table
SELECTION_RULE = (
    "Use the entry with shot_min <= a < shot_max (the last entry also takes a == shot_max). "
    "If a is outside every entry, use the entry nearest in log(a) (the first below the range, "
    "the last above it) and warn that a is out of range. Above the range the model runs at a. "
    "Below it the model runs at a = the first entry's shot_min, b unchanged (a network run far below "
    "the levels it learnt returns garbage), and its output is blended with the input, keeping the share "
    "w = (a x + b) / (shot_min x + b) of its change, x the image's mean level (at least 1e-3): "
    "output = input + w * (network output - input)."
)
# how far outside the table a may lie and count as on its end, not out of range: a range end
# stored in float32 (as fad-data synth sets store a) is rounded by up to 6e-8 relative
ROUNDING_RTOL = 1e-6


class ShotOutOfRangeWarning(UserWarning):
    """The image's shot noise is outside every sub-range: the nearest model is used."""


@dataclass(frozen=True)
class SubRange:
    name: str
    file: str  # model file, relative to the manifest's folder
    shot_min: float
    shot_max: float

    def contains(self, shot: float, last: bool) -> bool:
        return self.shot_min <= shot < self.shot_max or (last and shot == self.shot_max)

    def log_distance(self, shot: float) -> float:
        """How far a is outside this sub-range, in log a (0 inside)."""
        return max(math.log(self.shot_min / shot), math.log(shot / self.shot_max), 0.0)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Selection:
    index: int
    entry: SubRange
    shot: float
    clamped: bool  # a was outside every sub-range
    reason: str


def keep_share(noisy: np.ndarray, denoised: np.ndarray, weight) -> np.ndarray:
    """``noisy`` plus the share ``weight`` (a number, or one per image of an (N, ...) batch) of the
    network's change (see :func:`fad_deploy.data.noise.floor_level`)."""
    weight = np.asarray(weight, np.float32).reshape(np.shape(weight) + (1,) * (noisy.ndim - np.ndim(weight)))
    return np.where(weight < 1, noisy + weight * (denoised - noisy), denoised)  # a whole change: exactly it


def parse_table(entries, where: str) -> list[SubRange]:
    """Validate a table read from JSON: entries with positive, increasing, non-overlapping ranges."""
    if not isinstance(entries, list) or not entries:
        raise FadError(f"{where}: the sub-range table must be a non-empty list")
    table = []
    for i, e in enumerate(entries):
        try:
            entry = SubRange(str(e["name"]), str(e["file"]), float(e["shot_min"]), float(e["shot_max"]))
        except (KeyError, TypeError, ValueError) as err:
            raise FadError(f"{where}: sub-range {i} needs name, file, shot_min and shot_max ({err!r})")
        if not (0 < entry.shot_min < entry.shot_max < math.inf):
            raise FadError(f"{where}: sub-range {i} ({entry.name}) needs 0 < shot_min < shot_max, "
                           f"got {entry.shot_min:g}, {entry.shot_max:g}")
        if table and entry.shot_min < table[-1].shot_max:
            raise FadError(f"{where}: sub-range {i} ({entry.name}) starts at {entry.shot_min:g}, inside the "
                           f"previous one (ends at {table[-1].shot_max:g}); sort them by shot_min without overlap")
        table.append(entry)
    return table


def read_manifest(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise FadError(f"{path}: cannot read manifest ({e.strerror})")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FadError(f"{path}: not a JSON manifest ({e})")


def table_from_manifest(manifest, where: str = "manifest") -> list[SubRange]:
    """The sub-range table of a manifest (a dict, or the path of its JSON file)."""
    if not isinstance(manifest, dict):
        where = str(manifest)
        manifest = read_manifest(manifest)
    if not isinstance(manifest, dict) or TABLE_KEY not in manifest:
        raise FadError(f"{where}: no {TABLE_KEY!r} table (not a model-array manifest)")
    return parse_table(manifest[TABLE_KEY], where)


def select_model(table: list[SubRange], shot: float, source: str = "given") -> Selection:
    """Apply :data:`SELECTION_RULE` to shot level ``shot``; ``source`` says where a came from."""
    if not (shot > 0 and math.isfinite(shot)):
        raise FadError(f"shot-noise level {shot!r} must be a positive number")
    last = len(table) - 1
    inside = [i for i, e in enumerate(table) if e.contains(shot, i == last)]
    i = inside[0] if inside else min(range(len(table)), key=lambda k: table[k].log_distance(shot))
    e = table[i]
    if inside or e.log_distance(shot) <= math.log1p(ROUNDING_RTOL):
        reason = (f"shot noise a={shot:.3g} ({source}) is in sub-range {i} "
                  f"[{e.shot_min:.3g}, {e.shot_max:.3g}] -> {e.name}")
        return Selection(i, e, shot, False, reason)
    side = "below" if shot < e.shot_min else "above"
    reason = (f"shot noise a={shot:.3g} ({source}) is {side} every sub-range "
              f"[{table[0].shot_min:.3g}, {table[-1].shot_max:.3g}]: clamped to the nearest, sub-range {i} "
              f"[{e.shot_min:.3g}, {e.shot_max:.3g}] -> {e.name}"
              + (f", run at a={e.shot_min:.3g} with part of its change kept (see the selection rule)"
                 if shot < table[0].shot_min else ""))
    warnings.warn(reason, ShotOutOfRangeWarning, stacklevel=2)
    return Selection(i, e, shot, True, reason)
