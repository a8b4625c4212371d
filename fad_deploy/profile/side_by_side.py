"""Whole TFLite models timed side by side on this CPU: every model, precision and thread
count in one process, rounds interleaved (a shared, noisy machine slows them alike), with
the CPU's SIMD flags and the share of CPU time other processes took meanwhile. Used by
benchmarks/fan_vs_pmrid.py and benchmarks/fan_config_search.py; compare ratios of one run."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from ..models.registry import build
from .cpu import cpu_peak
from .macs import count_macs
from .tflite_ops import interleaved_times, interpreter

PRECISIONS = ("fp32", "int8")
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16")


def cpu_record() -> dict:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    peak = cpu_peak()
    return {"model": peak.model, "cores": peak.cores, "logical_cpus": os.cpu_count(), "ghz": peak.ghz,
            "flags": {f: f in flags for f in SIMD_FLAGS}, "machine": platform.machine()}


def simd_flags(cpu: dict) -> str:
    """The SIMD flags a :func:`cpu_record` found, comma-separated (for result files)."""
    return ", ".join(f for f, on in cpu["flags"].items() if on)


class OtherLoad:
    """Share of the machine's CPU time that other processes used while the block ran
    (/proc/stat's busy time minus this process's own CPU time); ``record`` after the block."""

    def __enter__(self):
        self.start = self._busy(), os.times(), time.time(), os.getloadavg()[0]
        return self

    @staticmethod
    def _busy() -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc):
        busy0, t0, wall0, load0 = self.start
        t1 = os.times()
        own = sum(getattr(t1, k) - getattr(t0, k) for k in ("user", "system", "children_user", "children_system"))
        wall = time.time() - wall0
        other = max(0.0, self._busy() - busy0 - own)
        self.record = {"seconds": round(wall, 1),
                       "other_processes_cpu_share": round(other / (wall * os.cpu_count()), 3),
                       "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def time_models(models: dict[str, dict], size: tuple[int, int], threads: tuple[int, ...], rounds: int,
                per_round: int) -> tuple[list[dict], dict]:
    """``models``: name -> {"fp32"/"int8": .tflite path, "arch", "config"}. Each file resized
    to packed ``size``; only ``invoke`` is timed. Rows per (model, precision, threads) with
    the median, ms per RAW megapixel, GMACs per megapixel (PyTorch graph) and GMAC/s; and
    the machine load during the timing."""
    runs, keys = {}, {}
    for name, m in models.items():
        for p in PRECISIONS:
            for t in threads:
                key = f"{name} {p} x{t}"
                runs[key] = interpreter(Path(m[p]).read_bytes(), t, size).invoke
                keys[key] = (name, p, t)
    with OtherLoad() as load:
        times = interleaved_times(runs, rounds, per_round)
    macs = {name: count_macs(build(m["arch"], m["config"]), size) for name, m in models.items()}
    rows = []
    for key, (name, p, t) in keys.items():
        ms = float(np.median(times[key]))
        rows.append({"model": name, "precision": p, "threads": t, "median_ms": ms,
                     "p90_ms": float(np.percentile(times[key], 90)), "runs": len(times[key]),
                     "ms_per_megapixel": ms / macs[name].raw_megapixels,
                     "gmacs_per_megapixel": macs[name].gmacs_per_megapixel, "params": macs[name].params,
                     "gmac_per_s": macs[name].macs / ms / 1e6})
    return rows, load.record


def ratios(rows: list[dict], a: str, b: str) -> dict[tuple[str, int], float]:
    """(precision, threads) -> model a's median time / model b's."""
    by = {(r["model"], r["precision"], r["threads"]): r["median_ms"] for r in rows}
    return {(p, t): by[a, p, t] / by[b, p, t] for (m, p, t) in by if m == a}
