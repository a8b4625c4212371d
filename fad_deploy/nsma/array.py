"""A loaded model array: the sub-range table and one runner per entry (opened on first use).

The array comes from a folder with a manifest.json holding the sub-range table (the
torch checkpoints in models/nsma/, or an exported bundle in export/), or from one
checkpoint, which becomes an array of one model covering that checkpoint's shot range.
Every runner is tiled (:mod:`fad_deploy.runners.tiling`), so frames of any size run with
the memory of one tile: fixed-size models at their input size, the others in tiles of
:data:`~fad_deploy.runners.tiling.DEFAULT_TILE`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FadError
from ..export.manifest import FILE_PREFERENCE, FILE_SUFFIX, entry_tiling, export_hint, pick_model, read_bundle
from ..models.registry import load_checkpoint, models_dir, resolve_model
from ..runners import BACKEND_ALIASES, BACKENDS, load_runner
from ..runners.base import Runner
from ..runners.tiling import TiledRunner, arch_tile_spec
from .select import TABLE_KEY, Selection, SubRange, parse_table, read_manifest, select_model, table_from_manifest

ARRAY_FOLDER = "nsma"  # models/nsma/: the trained array's checkpoints and manifest
MANIFEST = "manifest.json"
SINGLE_MODEL = "fan-student"  # the fallback when no array exists
CHECKPOINT_SUFFIX = ".pt"


def export_dir() -> Path:
    """The repository's export/ folder (beside models/)."""
    return models_dir().parent / "export"


def backend_name(backend: str) -> str:
    name = BACKEND_ALIASES.get(backend, backend)
    if name not in BACKENDS:
        raise FadError(f"unknown backend {backend!r}: choose from {', '.join([*BACKEND_ALIASES, *BACKENDS])}")
    return name


def is_array_folder(path: Path, backend: str | None = None) -> bool:
    """Whether ``path`` holds a model array (with a file for ``backend`` in each model, if given)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        content = read_manifest(manifest)
    except FadError:
        return False
    if not (isinstance(content, dict) and TABLE_KEY in content):
        return False
    return backend is None or all(backend in (m.get("files") or {}) for m in content.get("models") or [{}])


def default_bundle(backend: str | None = None) -> Path:
    """An exported array bundle in export/ if one exists (unless the backend is torch; with a
    backend, one that has its files), else the checkpoints in models/nsma/, else the single
    full-range student."""
    exported = [] if backend == "torch" else sorted(export_dir().glob("*"))
    for candidate in exported:
        if is_array_folder(candidate, backend):
            return candidate
    arrays = [c.name for c in exported if is_array_folder(c)]
    if backend is not None and arrays:  # the checkpoints would only be refused for this backend
        raise FadError(f"no exported array in {export_dir()} has {backend} files ({', '.join(arrays)} lack them): "
                       f"run {export_hint(None, backend)}, or give a backend it has")
    if is_array_folder(models_dir() / ARRAY_FOLDER):
        return models_dir() / ARRAY_FOLDER
    return resolve_model(SINGLE_MODEL)


@dataclass
class ModelArray:
    table: list[SubRange]
    root: Path  # the folder the table's files are relative to
    backend: str
    source: str  # what was loaded, for messages
    _runners: dict[int, Runner] = field(default_factory=dict, repr=False)

    def select(self, shot: float, source: str = "given") -> Selection:
        return select_model(self.table, shot, source)

    def runner(self, index: int) -> Runner:
        if index not in self._runners:
            entry = self.table[index]
            if entry.file.endswith(CHECKPOINT_SUFFIX):
                if self.backend != "torch":
                    raise FadError(f"{self.source} holds torch checkpoints; backend {self.backend!r} needs an "
                                   "exported bundle (fad-export), or use --backend torch")
                runner = load_runner("torch", self.root / entry.file)
                spec = arch_tile_spec(runner.checkpoint.arch, runner.checkpoint.config)
            else:
                if self.backend == "torch":
                    raise FadError(f"{self.source} holds exported models: run them with --backend (e.g. "
                                   f"--backend {file_backend(entry.file)}); the torch backend needs the array's "
                                   f"checkpoints (e.g. the shipped ones, {models_dir() / ARRAY_FOLDER})")
                runner = load_runner(self.backend, self.root, model=entry.name)
                spec = entry_tiling(pick_model(read_bundle(self.root), entry.name, self.root), self.root / MANIFEST)
            self._runners[index] = TiledRunner(runner, spec)
        return self._runners[index]

    def denoise(self, noisy: np.ndarray, noise, index: int, low: float | None = 0.0) -> np.ndarray:
        """Packed noisy RAW (N, 4, h, w) at its noise level(s) (one NoiseParams or one per
        image) with model ``index``, in [``low``, 1] (:meth:`Runner.denoise`)."""
        return self.runner(index).denoise(noisy, noise, low)


def file_backend(file: str) -> str:
    """The backend of a bundle's model file (its suffix), else the int8 TFLite."""
    return next((b for b, suffix in FILE_SUFFIX.items() if file.endswith(suffix) and b in BACKENDS),
                backend_name("tflite"))


def bundle_table(manifest: dict, where: str) -> list[SubRange]:
    """The sub-range table of an exported array's manifest; one exported model (fad-export MODEL)
    is an array of one, run from its quantized TFLite file where it has one."""
    if not isinstance(manifest, dict) or TABLE_KEY in manifest:
        return table_from_manifest(manifest, where)
    models = manifest.get("models")
    if not (isinstance(models, list) and len(models) == 1 and isinstance(models[0], dict)):
        raise FadError(f"{where}: no {TABLE_KEY!r} table and not one exported model: not a model array's manifest")
    model, files = models[0], models[0].get("files") or {}
    file = next((files[b].get("file") for b in FILE_PREFERENCE if isinstance(files.get(b), dict)), None)
    if file is None:
        raise FadError(f"{where}: its one model has no TFLite or ONNX file")
    shot_range = model.get("shot_range") or [None, None]
    return parse_table([{"name": model.get("name"), "file": file, "shot_min": shot_range[0],
                         "shot_max": shot_range[-1]}], where)


def load_array(path: str | Path | None = None, backend: str | None = None) -> ModelArray:
    """The array in folder ``path`` (or one checkpoint; default: :func:`default_bundle`).
    ``backend`` defaults to torch for checkpoints and, for exported bundles, to the file their
    sub-range table names (the quantized TFLite: int8, or int16 in a 16x8 bundle)."""
    if backend is not None:
        backend = backend_name(backend)
    path = default_bundle(backend) if path is None else Path(path)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise FadError(f"{path}: no {MANIFEST}: not a model array folder")
        table = bundle_table(read_manifest(path / MANIFEST), str(path / MANIFEST))
        exported = not all(e.file.endswith(CHECKPOINT_SUFFIX) for e in table)
        chosen = backend or (file_backend(table[0].file) if exported else "torch")
        return ModelArray(table, path, chosen, str(path))
    if not path.exists() and not path.suffix and len(path.parts) > 1:  # a path, not a shipped model's name
        raise FadError(f"{path}: no such model array folder or checkpoint")
    if path.suffix and path.suffix != CHECKPOINT_SUFFIX:
        raise FadError(f"{path}: not a model array: give an array folder (with {MANIFEST}), an exported model's "
                       f"folder or a {CHECKPOINT_SUFFIX} checkpoint" + (f" (this file's folder is one: {path.parent})"
                                                                         if (path.parent / MANIFEST).is_file() else ""))
    checkpoint_path = resolve_model(str(path))
    ckpt = load_checkpoint(checkpoint_path)
    entry = SubRange(ckpt.name, checkpoint_path.name, *ckpt.shot_range)
    chosen = backend or "torch"
    if chosen != "torch":
        raise FadError(f"{checkpoint_path} is a torch checkpoint: use --backend torch or an exported bundle")
    return ModelArray([entry], checkpoint_path.parent, chosen, str(checkpoint_path))
