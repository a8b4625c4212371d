"""`fad-bench --device cpu`: latency of each model on each backend and thread count on this
machine, next to its MACs, parameters, activation arena and the CPU roofline bound.

PyTorch runs the checkpoint; the exported backends run the files of the model's export
folder (``export/<model>/``, written by fad-export). A backend whose files are missing is
reported as skipped, never silently dropped.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import FadError
from ..fileio import write_json, write_text
from ..models.registry import load_checkpoint, models_dir, resolve_model
from ..runners import BACKENDS, load_runner
from .cpu import CpuPeak, cpu_peak
from .latency import ModelEntry, bench_json, model_entry, packed_megapixels, result_from_times

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


def default_models() -> list[str]:
    """The shipped models: every checkpoint directly in models/."""
    names = sorted(p.stem for p in models_dir().glob("*.pt"))
    if not names:
        raise FadError(f"no shipped models in {models_dir()}: name models or checkpoint paths")
    return names


def cpu_device(peak: CpuPeak) -> dict:
    import onnxruntime
    import torch

    return {"kind": "cpu", "machine": platform.machine(), "cpu": peak.model, "physical_cores": peak.cores,
            "logical_cpus": os.cpu_count(), "ghz": peak.ghz, "simd": peak.simd, "vnni": peak.vnni,
            "peak_fp32_macs_per_s_per_core": peak.macs_per_s(1), "peak_int8_macs_per_s_per_core":
            peak.macs_per_s(1, int8=True), "peak_derivation": peak.derivation(),
            "load_average_1min": os.getloadavg()[0], "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def run_cpu_bench(models: list[str], cfg: BenchConfig, progress: bool = True) -> dict:
    cfg.check()
    peak = cpu_peak()
    paths = [(m, resolve_model(m)) for m in models]  # fail on a bad name before any timing
    entries = []
    total = len(paths) * len(cfg.backends) * len(cfg.threads)
    with tqdm(total=total, desc="fad-bench", disable=not progress, unit="run") as bar:
        for name, path in paths:
            entries.append(_bench_model(name, path, cfg, peak, bar))
    return bench_json(cpu_device(peak), entries)


def _bench_model(name: str, path: Path, cfg: BenchConfig, peak: CpuPeak, bar) -> ModelEntry:
    label = Path(name).stem if name.endswith(".pt") else name
    entry = model_entry(label, load_checkpoint(path).build(), cfg.size)
    export = (cfg.export_root or models_dir().parent / "export") / label
    u = np.random.default_rng(INPUT_SEED).random((1, 4, *cfg.size), dtype=np.float32)
    megapixels = packed_megapixels(*cfg.size)
    for backend in cfg.backends:
        source = path if backend == "torch" else export
        for threads in cfg.threads:
            bar.set_postfix_str(f"{label} {backend} x{threads}")
            try:
                if backend != "torch" and not export.is_dir():
                    raise FadError(f"no export folder {export} (run: fad-export {label} --int8 --target all)")
                runner = load_runner(backend, source, threads)
                times = runner.time(u, warmup=cfg.warmup, repeats=cfg.repeats)
            except FadError as e:
                entry.skipped.append(f"{backend} x{threads}: {e}")
                bar.update(1)
                continue
            rate = peak.macs_per_s(threads, int8=backend.endswith("int8"))
            bound = entry.macs / rate * 1e3 if rate else None
            entry.results.append(result_from_times(backend, threads, times, megapixels, bound))
            bar.update(1)
    return entry


def write_profiles(models: list[str], out_dir: Path, size: tuple[int, int]) -> list[Path]:
    """profile_<model>.md/.json (per-layer MACs, memory timeline, accelerator fit) for each model."""
    from .report import profile_model

    written = []
    for name in models:
        label = Path(name).stem if name.endswith(".pt") else name
        md, doc = profile_model(label, load_checkpoint(resolve_model(name)).build(), size)
        write_text(out_dir / f"profile_{label}.md", md)
        write_json(out_dir / f"profile_{label}.json", doc)
        written.append(out_dir / f"profile_{label}.md")
    return written
