"""Which TFLite files of an export bundle (a `fad-export` folder) go to the phone.

The bundle's manifest lists its networks with their files per backend, anchor and shot
range (:mod:`fad_deploy.export.manifest`). A noise sub-range array also holds the
sub-range table (:mod:`fad_deploy.nsma.select`), from which ``--noise-a`` picks the model
the phone would run, by the same rule the phone applies.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..data.noise import NoiseParams
from ..errors import FadError, fold
from ..export.manifest import MANIFEST, entry_base_grid, entry_outputs_residual, entry_source, locate, read_bundle
from ..models.registry import models_dir
from ..nsma.select import TABLE_KEY, select_model, table_from_manifest

TFLITE_BACKENDS = ("tflite-int8", "tflite-fp32")


@dataclass(frozen=True)
class DeviceModel:
    """One network of a bundle with its TFLite files by backend."""

    name: str
    checkpoint: str  # the source checkpoint's name, for parameter and MAC counts
    files: dict[str, Path]  # backend -> .tflite
    anchor: NoiseParams
    shot_range: tuple[float, float]
    missing: tuple[str, ...] = ()  # "backend: why" for TFLite backends the bundle lacks
    residual: bool = False  # the files output the residual (manifest "output"): the runner adds the input
    base_grid: dict | None = None  # ... or, for the int8 file, the quantized input (manifest "residual_base")


def default_export_root() -> Path:
    """export/ beside models/, where `fad-export` writes bundles (as `fad-bench --device cpu`)."""
    return models_dir().parent / "export"


def resolve_bundle(name_or_path: str, root: Path | None = None) -> Path:
    root = root or default_export_root()
    for candidate in (Path(name_or_path), root / name_or_path):
        if candidate.is_dir():
            return candidate
    found = sorted(d.name for d in root.glob("*") if (d / MANIFEST).is_file()) if root.is_dir() else []
    raise FadError(f"{name_or_path}: no such export bundle (run `fad-export --int8 --target tflite` first; "
                   f"bundles in {root}: {fold(found, name_or_path) or 'none'})")


def default_bundles(root: Path | None = None) -> list[Path]:
    root = root or default_export_root()
    bundles = sorted(d for d in root.glob("*") if (d / MANIFEST).is_file()) if root.is_dir() else []
    if not bundles:
        raise FadError(f"no exported bundles in {root}: run `fad-export --int8 --target tflite` first, "
                       f"or name a bundle folder")
    return bundles


def device_model(folder: Path, entry: dict) -> DeviceModel:
    files, missing, anchor = {}, [], None
    for backend in TFLITE_BACKENDS:
        try:
            files[backend], anchor = locate(folder, backend, entry["name"])
        except FadError as e:
            missing.append(f"{backend}: {e}")
    if not files:
        raise FadError(f"{folder}: no TFLite file for {entry['name']} (export with `fad-export --target tflite`)")
    lo, hi = entry["shot_range"]
    return DeviceModel(entry["name"], entry_source(entry), files, anchor, (float(lo), float(hi)), tuple(missing),
                       entry_outputs_residual(entry), entry_base_grid(entry, "tflite-int8"))


def load_bundle(folder: str | Path, noise_a: float | None = None) -> list[DeviceModel]:
    """The bundle's networks; for a sub-range array with ``noise_a``, only the one it selects."""
    folder = Path(folder)
    manifest = read_bundle(folder)
    entries = manifest["models"]
    if noise_a is not None and TABLE_KEY in manifest:
        selection = select_model(table_from_manifest(manifest), noise_a, "--noise-a")
        if not selection.clamped:  # a clamped choice was a warning already
            print(selection.reason, file=sys.stderr)
        entries = [e for e in entries if e["name"] == selection.entry.name]
        if not entries:
            raise FadError(f"{folder / MANIFEST}: sub-range model {selection.entry.name!r} is not among its models")
    elif noise_a is not None:
        for e in entries:
            lo, hi = e["shot_range"]
            if not lo <= noise_a <= hi:
                print(f"warning: a={noise_a:g} is outside {e['name']}'s shot range [{lo:g}, {hi:g}]", file=sys.stderr)
    return [device_model(folder, e) for e in entries]
