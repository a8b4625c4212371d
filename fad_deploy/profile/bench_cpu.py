"""`fad-bench --device cpu`: latency of each model on each backend and thread count on this
machine, next to its MACs, parameters, activation arena and the CPU roofline bound.

PyTorch runs the checkpoint; the exported backends run the files of the model's export
folder (``export/<model>/``, written by fad-export). An export folder named instead of a
model (``fan-nsma``, the exported noise sub-range array) stands for each network in it,
PyTorch running the checkpoint it was exported from. A backend whose files are missing is
reported as skipped, never silently dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn as nn
from tqdm import tqdm

from ..checks import check_memory
from ..errors import FadError
from ..export.manifest import INT16_FILE, INT16_FOLDER_SUFFIX, MANIFEST, default_folder_for, entry_source, \
    export_hint, read_bundle
from ..fileio import write_json, write_text
from ..models.registry import build, load_checkpoint, models_dir, resolve_model
from ..quant.graph import Core
from ..runners import BACKENDS, load_runner
from ..runners.base import Runner
from .cpu import CpuPeak, cpu_peak
from .latency import ModelEntry, bench_json, model_entry, packed_megapixels, result_from_times, run_macs

DEFAULT_SIZE = (256, 256)  # packed h, w: a quarter RAW megapixel
DEFAULT_REPEATS, DEFAULT_WARMUP = 10, 3
INPUT_SEED = 0


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = BACKENDS
    threads: tuple[int, ...] = (1,)
    size: tuple[int, int] = DEFAULT_SIZE
    repeats: int = DEFAULT_REPEATS
    warmup: int = DEFAULT_WARMUP
    export_root: Path | None = None  # default: export/ beside models/

    def check(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise FadError(f"unknown backend {unknown[0]!r}: choose from {', '.join(BACKENDS)}")
        if not self.threads or min(self.threads) < 1:
            raise FadError(f"--threads {' '.join(map(str, self.threads))}: thread counts must be at least 1")
        if min(self.size) < 1:
            raise FadError(f"--size {self.size[0]} {self.size[1]}: height and width must be positive")
        if self.repeats < 1 or self.warmup < 0:
            raise FadError(f"--repeats {self.repeats} --warmup {self.warmup}: need at least 1 repeat, warm-up >= 0")


@dataclass(frozen=True)
class BenchModel:
    """One network to measure: its checkpoint (for torch; None when not found), the export
    folder of its other backends and its name there, and for a bundle's network its
    (arch, config) from the manifest."""

    label: str
    checkpoint: Path | None
    export: Path
    model: str | None = None
    spec: tuple[str, dict] | None = None

    def network(self) -> nn.Module:
        """The network (for parameters, MACs, activation memory)."""
        return build(*self.spec) if self.spec else load_checkpoint(self.checkpoint).build()

    def runner(self, backend: str, threads: int) -> Runner:
        if backend == "torch":
            if self.checkpoint is None:
                raise FadError(f"the checkpoint {self.label} was exported from is not in {models_dir()}")
            return load_runner(backend, self.checkpoint, threads)
        folder = self.folder(backend)
        if not folder.is_dir():
            if self.spec or self.checkpoint:
                try:
                    Core(self.network())  # what every export traces
                except FadError as e:
                    raise FadError(f"{self.label}: {e}; only the torch backend runs it")
            if backend == INT16_FILE:
                folder = int16_folder(self.export)  # (where 16x8 files are looked for first)
            written = default_folder_for(self.label, backend)  # where the hint's command writes it
            then = f", then name its folder {written}" if written != folder else ""
            raise FadError(f"no export folder {folder} (run: {export_hint(self.label, backend)}{then})")
        return load_runner(backend, folder, threads, model=self.model)

    def folder(self, backend: str) -> Path:
        """Where ``backend``'s file lies: the export folder, or for 16x8 files the folder fad-export
        writes them to beside it (``<export>-int16``) where that holds them."""
        if backend == INT16_FILE and holds_int16(int16_folder(self.export)):
            return int16_folder(self.export)
        return self.export


def default_export_root() -> Path:
    return models_dir().parent / "export"


def is_bundle(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def int16_folder(export: Path) -> Path:
    """Where fad-export --activations int16 writes the 16x8 files of the models of ``export``."""
    export = export.absolute()
    return export.with_name(export.name + INT16_FOLDER_SUFFIX)


def holds_int16(folder: Path) -> bool:
    """Whether ``folder`` is a bundle with a 16x8 file for each of its models."""
    try:
        return is_bundle(folder) and all(INT16_FILE in e.get("files", {}) for e in read_bundle(folder)["models"])
    except FadError:
        return False


def default_models(export_root: Path | None = None) -> list[str]:
    """The shipped models: every checkpoint directly in models/ and every export folder (the
    exported array, fan-nsma, among them); a folder of 16x8 files beside another's or a
    checkpoint's (:func:`int16_folder`) is that one's backend tflite-int16, not more models."""
    root = export_root or default_export_root()
    checkpoints = {p.stem for p in models_dir().glob("*.pt")}
    bundles = {d.name for d in root.glob("*") if is_bundle(d)}
    names = checkpoints | {name for name in bundles if not (name.removesuffix(INT16_FOLDER_SUFFIX) in
                                                            (bundles | checkpoints) - {name}
                                                            and holds_int16(root / name))}
    if not names:
        raise FadError(f"no shipped models in {models_dir()} and no exports in {root}: name models or checkpoint paths")
    return sorted(names)


def bench_models(names: list[str], export_root: Path | None = None) -> list[BenchModel]:
    """What each name stands for (a bad one fails here, before any work): an export folder
    (a path, or a folder name in the export root) is each network in it; anything else is a
    checkpoint (shipped name or path) with its exports in ``<export root>/<name>/``."""
    root = export_root or default_export_root()
    found = []  # (index of the name given, network)
    for i, name in enumerate(names):
        given = Path(name)
        folder = given if given.is_dir() else root / name
        if given.is_dir() or is_bundle(folder):
            for e in read_bundle(folder)["models"]:
                try:
                    checkpoint = resolve_model(entry_source(e))
                except FadError:
                    checkpoint = None
                found.append((i, BenchModel(e["name"], checkpoint, folder, e["name"], (e["arch"], e["config"]))))
        else:
            label = Path(name).stem if name.endswith(".pt") else name
            found.append((i, BenchModel(label, resolve_model(name), root / label)))
    first = {}
    for i, model in found:
        if first.setdefault(model.label, i) != i:
            raise FadError(f"{names[first[model.label]]} and {names[i]}: two models named {model.label!r} would share "
                           "their rows (a checkpoint is named by its file name, an export folder's networks by theirs)")
    return [model for _, model in found]


def cpu_device(peak: CpuPeak) -> dict:
    import onnxruntime
    import torch

    return {"kind": "cpu", "machine": platform.machine(), "cpu": peak.model, "physical_cores": peak.cores,
            "logical_cpus": os.cpu_count(), "ghz": peak.ghz, "simd": peak.simd, "vnni": peak.vnni,
            "peak_fp32_macs_per_s_per_core": peak.macs_per_s(1), "peak_int8_macs_per_s_per_core":
            peak.macs_per_s(1, int8=True), "peak_derivation": peak.derivation(),
            "load_average_1min": os.getloadavg()[0], "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def run_cpu_bench(models: list[BenchModel], cfg: BenchConfig, progress: bool = True) -> dict:
    cfg.check()
    peak = cpu_peak()
    total = len(models) * len(cfg.backends) * len(cfg.threads)
    profiles = {}  # the networks of an array share one architecture: profiled once
    with tqdm(total=total, desc="fad-bench", disable=not progress, unit="run") as bar:
        entries = [_bench_model(model, cfg, peak, bar, profiles) for model in models]
    if not any(e.results for e in entries):
        reasons = [f"{e.name} {reason}" for e in entries for reason in e.skipped]
        if not reasons:
            raise FadError("nothing could be measured: no models")
        raise FadError(f"nothing could be measured ({len(reasons)} of {total} runs failed; the first: {reasons[0]})")
    return bench_json(cpu_device(peak), entries)


def _bench_model(model: BenchModel, cfg: BenchConfig, peak: CpuPeak, bar, profiles: dict) -> ModelEntry:
    key = json.dumps(model.spec, sort_keys=True) if model.spec else model.label
    if key not in profiles:
        profiles[key] = model_entry(model.label, model.network(), cfg.size)
    entry = dataclasses.replace(profiles[key], name=model.label, results=[], skipped=[])
    check_memory(entry.peak_activation_bytes_fp32, f"{model.label} at {cfg.size[0]}x{cfg.size[1]} (its fp32 "
                 "activations alone)")  # a lower bound: fails fast instead of swapping or being killed
    u = np.random.default_rng(INPUT_SEED).random((1, 4, *cfg.size), dtype=np.float32)
    megapixels = packed_megapixels(*cfg.size)
    for backend in cfg.backends:
        for threads in cfg.threads:
            bar.set_postfix_str(f"{model.label} {backend} x{threads}")
            try:
                runner = model.runner(backend, threads)
                times = runner.time(u, warmup=cfg.warmup, repeats=cfg.repeats)
            except FadError as e:
                entry.skipped.append(f"{backend} x{threads}: {e}")
                bar.update(1)
                continue
            macs = run_macs(entry, runner.base_grid)
            rate = peak.macs_per_s(threads, int8=backend.endswith("int8"))
            bound = macs / rate * 1e3 if rate else None
            entry.results.append(result_from_times(backend, threads, times, megapixels, bound,
                                                   None if macs == entry.macs else macs / megapixels))
            bar.update(1)
    return entry


def write_profiles(models: list[BenchModel], out_dir: Path, size: tuple[int, int],
                   cpu_model=None, written_width: int = 0) -> list[Path]:
    """profile_<model>.md/.json (per-layer MACs, memory timeline, accelerator fit, and with a
    calibrated ``cpu_model`` the per-layer CPU latency, grouped convs as written with
    ``--group-width written_width``) for each model."""
    from .report import profile_model

    written = []
    for model in models:
        md, doc = profile_model(model.label, model.network(), size, cpu_model=cpu_model, written_width=written_width)
        write_text(out_dir / profile_name(model.label, ".md"), md)
        write_json(out_dir / profile_name(model.label, ".json"), doc)
        written.append(out_dir / profile_name(model.label, ".md"))
    return written


def profile_name(label: str, suffix: str) -> str:
    """The file name of a model's --report profile (.md or .json)."""
    return f"profile_{label}{suffix}"
