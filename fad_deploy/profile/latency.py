"""Latency results and the one JSON schema every `fad-bench` device writes:

    {"device": {...}, "models": [{"name", "params", "macs_per_megapixel",
     "peak_activation_bytes_int8", "peak_activation_bytes_fp32",
     "results": [{"backend", "threads", "median_ms", "p90_ms", "megapixels", ...}]}]}

``megapixels`` and ``macs_per_megapixel`` use the paper's RAW megapixel (one 4x512x512
packed input). A result row of an int8 file with a split input (fad_deploy.quant.split) has
its own ``macs_per_megapixel``: the network's plus the convs reading the input again (see
:func:`fad_deploy.profile.macs.split_input_macs`). Result rows add ``ms_per_megapixel`` and,
where the device's peak is known, ``roofline_bound_ms`` (MACs / peak MACs per second) and
``roofline_ratio`` (median / bound). The CPU path (cli/bench.py) and the adb path (android/)
both build it with these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch.nn as nn

from .graph import RAW_PLANES, computed_shape, raw_megapixels, trace
from .macs import count_macs, split_input_macs
from .memory import BYTES, profile_memory
from .table import markdown_table


@dataclass
class Result:
    backend: str
    threads: int
    median_ms: float
    p90_ms: float
    megapixels: float  # RAW megapixels of the timed input
    roofline_bound_ms: float | None = None
    macs_per_megapixel: float | None = None  # where the file's differ from the network's (a split int8 input)

    @property
    def ms_per_megapixel(self) -> float:
        return self.median_ms / self.megapixels

    def to_dict(self) -> dict:
        bound = self.roofline_bound_ms
        return {"backend": self.backend, "threads": self.threads, "median_ms": round(self.median_ms, 3),
                "p90_ms": round(self.p90_ms, 3), "megapixels": self.megapixels,
                "ms_per_megapixel": round(self.ms_per_megapixel, 3),
                "roofline_bound_ms": None if bound is None else round(bound, 4),
                "roofline_ratio": None if bound is None else round(self.median_ms / bound, 2),
                **({} if self.macs_per_megapixel is None else {"macs_per_megapixel": round(self.macs_per_megapixel)})}


def result_from_times(backend: str, threads: int, times_ms: list[float], megapixels: float,
                      roofline_bound_ms: float | None = None, macs_per_megapixel: float | None = None) -> Result:
    """Median and 90th percentile of per-run wall-clock times (after warm-up)."""
    return Result(backend, threads, float(np.median(times_ms)), float(np.percentile(times_ms, 90)), megapixels,
                  roofline_bound_ms, macs_per_megapixel)


@dataclass
class ModelEntry:
    name: str
    params: int
    macs_per_megapixel: float
    peak_activation_bytes_int8: int
    peak_activation_bytes_fp32: int
    input_shape: tuple[int, ...]  # the timed (and profiled) packed input
    macs: int  # at input_shape
    split_macs: int = 0  # what a split int8 input adds at input_shape (split_input_macs)
    results: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # backends that could not run, and why

    def to_dict(self) -> dict:
        return {"name": self.name, "params": self.params, "macs_per_megapixel": round(self.macs_per_megapixel),
                "peak_activation_bytes_int8": self.peak_activation_bytes_int8,
                "peak_activation_bytes_fp32": self.peak_activation_bytes_fp32,
                "input_shape": list(self.input_shape), "macs": self.macs,
                "results": [r.to_dict() for r in self.results], "skipped": self.skipped}


def model_entry(name: str, model: nn.Module, input_size: tuple[int, int]) -> ModelEntry:
    """Parameters, MACs per RAW megapixel and peak activation arena (greedy planner) at ``input_size``."""
    graph = trace(model, input_size)
    macs = count_macs(graph)
    int8, fp32 = (profile_memory(graph, bytes_per_element=BYTES[k]).arena_bytes for k in ("int8", "fp32"))
    return ModelEntry(name, macs.params, macs.macs / raw_megapixels(computed_shape(graph)), int8, fp32,
                      graph.input_shape, macs.macs, split_input_macs(graph))


def run_macs(entry: ModelEntry, base_grid: dict | None) -> int:
    """The MACs of one run of ``entry`` by a runner with int8 input grid ``base_grid`` (None: a
    float file): the network's, and where the input is split, the convs reading it again."""
    return entry.macs + (entry.split_macs if base_grid and base_grid.get("split") else 0)


def bench_json(device: dict, models: list[ModelEntry]) -> dict:
    return {"device": device, "models": [m.to_dict() for m in models]}


def packed_megapixels(height: int, width: int, batch: int = 1) -> float:
    return raw_megapixels((batch, RAW_PLANES, height, width))


def results_table(doc: dict) -> str:
    """Markdown table of a bench JSON document (from any device)."""
    rows = []
    for m in doc["models"]:
        for r in m["results"]:
            macs, ratio = r.get("macs_per_megapixel", m.get("macs_per_megapixel")), r.get("roofline_ratio")
            rows.append([m["name"], r["backend"], r["threads"], f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
                         f"{r['median_ms'] / r['megapixels']:.1f}", "" if macs is None else f"{macs / 1e9:.3f}",
                         "" if ratio is None else f"{ratio:.1f}x"])
    return markdown_table(["model", "backend", "threads", "median ms", "p90 ms", "ms/MP", "GMACs/MP",
                           "vs roofline"], rows)
