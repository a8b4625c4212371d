"""Which TFLite files of an exported bundle (a `fad-export` folder) go to the phone.

The bundle's manifest names the file per backend and the anchor noise level
(:func:`fad_deploy.export.manifest.locate`); a noise sub-range array also holds the
sub-range table (:mod:`fad_deploy.nsma.select`), from which ``--noise-a`` picks the model
the phone would run, by the same rule the phone applies.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..data.noise import NoiseParams
from ..errors import FadError
from ..models.registry import models_dir
from ..nsma.select import TABLE_KEY, read_manifest, select_model, table_from_manifest

MANIFEST = "manifest.json"
TFLITE_BACKENDS = ("tflite-int8", "tflite-fp32")


@dataclass(frozen=True)
class DeviceModel:
    """One network of a bundle with its TFLite files by backend."""

    name: str
    files: dict[str, Path]  # backend -> .tflite
    anchor: NoiseParams
    shot_range: tuple[float, float] | None
    missing: tuple[str, ...] = ()  # "backend: why" for backends the bundle lacks


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
                   f"bundles in {root}: {', '.join(found) or 'none'})")


def default_bundles(root: Path | None = None) -> list[Path]:
    root = root or default_export_root()
    bundles = sorted(d for d in root.glob("*") if (d / MANIFEST).is_file()) if root.is_dir() else []
    if not bundles:
        raise FadError(f"no exported bundles in {root}: run `fad-export --int8 --target tflite` first, "
                       f"or name a bundle folder")
    return bundles


def locate_tflites(folder: Path, name: str, model: str | None) -> DeviceModel:
    from ..export.manifest import locate

    files, missing, anchor = {}, [], None
    for backend in TFLITE_BACKENDS:
        try:
            files[backend], anchor = locate(folder, backend, model)
        except FadError as e:
            missing.append(f"{backend}: {e}")
    if not files:
        raise FadError(f"{folder}: no TFLite model{f' for {model}' if model else ''} in this bundle "
                       f"({'; '.join(missing)})")
    return DeviceModel(name, files, anchor, None, tuple(missing))


def load_bundle(folder: str | Path, noise_a: float | None = None) -> list[DeviceModel]:
    """The bundle's networks; for a sub-range array with ``noise_a``, only the one it selects."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FadError(f"{folder}: no {MANIFEST}: not a fad-export bundle")
    manifest = read_manifest(folder / MANIFEST)
    if not isinstance(manifest, dict) or TABLE_KEY not in manifest:
        return [locate_tflites(folder, folder.name, None)]
    table = table_from_manifest(manifest)
    if noise_a is not None:
        selection = select_model(table, noise_a, "--noise-a")
        print(selection.reason, file=sys.stderr)
        table = [selection.entry]
    models = []
    for entry in table:
        found = locate_tflites(folder, entry.name, entry.name)
        models.append(DeviceModel(found.name, found.files, found.anchor, (entry.shot_min, entry.shot_max),
                                  found.missing))
    return models
