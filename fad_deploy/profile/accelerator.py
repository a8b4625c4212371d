"""Will a network fit a CNN accelerator, and how fast could it run there (roofline)?

A target is four numbers: on-chip SRAM, MACs per second, DRAM bandwidth, bytes per
activation (and per weight). The report says whether the weights and the activation arena
(memory.py's planner) fit in SRAM and estimates per-layer latency as
max(MACs / MACs-per-second, DRAM bytes / bandwidth). DRAM traffic model:
- weights that fit stay resident across frames (0 bytes per frame), else every layer
  streams its weights once per call;
- activations that fit (next to resident weights) stay on chip, so only the input frame
  is read and the output written; else every op reads its inputs and writes its output.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch.nn as nn

from .graph import DEFAULT_INPUT_SIZE, Graph, Op, trace
from .macs import module_params, op_macs, weight_bytes_int8
from .memory import VIEW_KINDS, profile_memory
from .table import markdown_table

MIB = 1 << 20


@dataclass(frozen=True)
class AcceleratorTarget:
    name: str
    sram_bytes: int
    macs_per_s: float
    dram_bytes_per_s: float
    bytes_per_activation: int = 1
    bytes_per_weight: int = 1
    basis: str = ""  # where the numbers come from


PRESETS = {
    t.name: t for t in (
        AcceleratorTarget(
            "edgetpu", 8 * MIB, 2e12, 0.5e9,
            basis="Google Coral Edge TPU: 4 TOPS int8 = 2e12 MAC/s (datasheet), about 8 MB of on-chip SRAM "
                  "for parameters (Edge TPU compiler docs); host memory over PCIe Gen2 x1, 500 MB/s (M.2 module)"),
        AcceleratorTarget(
            "ethos-u55-256", 2 * MIB, 256 * 500e6, 1e9,
            basis="Arm Ethos-U55 at its largest configuration, 256 int8 MACs/cycle, at an assumed 500 MHz; "
                  "assumed 2 MiB system SRAM and 1 GB/s to external memory (microcontroller class)"),
        AcceleratorTarget(
            "ethos-u65-512", 4 * MIB, 512 * 1e9, 8e9,
            basis="Arm Ethos-U65, 512 int8 MACs/cycle, at an assumed 1 GHz; assumed 4 MiB SRAM and "
                  "8 GB/s DRAM (LPDDR4 x32)"),
        AcceleratorTarget(
            "phone-npu", 8 * MIB, 2.5e12, 34.1e9,
            basis="a generic phone NPU, all numbers assumed: 5 TOPS int8 sustained = 2.5e12 MAC/s, 8 MiB SRAM, "
                  "LPDDR4X-4266 on a 64-bit bus = 34.1 GB/s"),
    )
}


@dataclass
class LayerEstimate:
    name: str
    kind: str
    macs: int
    dram_bytes: int
    compute_s: float
    memory_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "memory" if self.memory_s > self.compute_s else "compute"


@dataclass
class AcceleratorReport:
    target: AcceleratorTarget
    input_shape: tuple[int, ...]
    weight_bytes: int
    arena_bytes: int
    weights_fit: bool
    activations_fit: bool
    layers: list[LayerEstimate]

    @property
    def seconds(self) -> float:
        return sum(layer.seconds for layer in self.layers)

    @property
    def compute_bound_s(self) -> float:
        return sum(layer.compute_s for layer in self.layers)

    def summary(self) -> str:
        t = self.target
        return (f"{t.name}: weights {self.weight_bytes:,} B {'fit' if self.weights_fit else 'do NOT fit'} in "
                f"{t.sram_bytes:,} B SRAM; activation arena {self.arena_bytes:,} B at {t.bytes_per_activation} "
                f"B/element {'fits' if self.activations_fit else 'does NOT fit'} next to them; roofline latency "
                f"{self.seconds * 1e3:.2f} ms (compute alone {self.compute_bound_s * 1e3:.2f} ms) at input "
                f"{'x'.join(map(str, self.input_shape))}")

    def table(self) -> str:
        rows = [[x.name, x.kind, f"{x.macs:,}", f"{x.dram_bytes:,}", f"{x.seconds * 1e6:.1f}", x.bound]
                for x in self.layers if x.macs or x.dram_bytes]
        rows.append(["total", "", f"{sum(x.macs for x in self.layers):,}",
                     f"{sum(x.dram_bytes for x in self.layers):,}", f"{self.seconds * 1e6:.1f}", ""])
        return markdown_table(["layer", "op", "MACs", "DRAM bytes", "roofline us", "bound"], rows)

    def to_dict(self) -> dict:
        return {
            "target": asdict(self.target),
            "input_shape": list(self.input_shape),
            "weight_bytes": self.weight_bytes,
            "arena_bytes": self.arena_bytes,
            "weights_fit": self.weights_fit,
            "activations_fit": self.activations_fit,
            "roofline_ms": self.seconds * 1e3,
            "compute_bound_ms": self.compute_bound_s * 1e3,
            "layers": [{"name": x.name, "kind": x.kind, "macs": x.macs, "dram_bytes": x.dram_bytes,
                        "roofline_us": round(x.seconds * 1e6, 3), "bound": x.bound}
                       for x in self.layers if x.macs or x.dram_bytes],  # free ops (views, shuffles) left out
        }


def weight_bytes(module: nn.Module, bytes_per_weight: int) -> int:
    return weight_bytes_int8(module) if bytes_per_weight == 1 else bytes_per_weight * module_params(module)


def accelerator_report(model: nn.Module | Graph, target: AcceleratorTarget,
                       input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> AcceleratorReport:
    graph = model if isinstance(model, Graph) else trace(model, input_size)
    weights = weight_bytes(graph.model, target.bytes_per_weight)
    arena = profile_memory(graph, bytes_per_element=target.bytes_per_activation).arena_bytes
    weights_fit = weights <= target.sram_bytes
    activations_fit = arena <= target.sram_bytes - (weights if weights_fit else 0)
    layers = []
    for op in graph.ops:
        traffic = _dram_bytes(op, graph, target, weights_fit, activations_fit)
        macs = op_macs(op)
        layers.append(LayerEstimate(op.name, op.kind, macs, traffic, macs / target.macs_per_s,
                                    traffic / target.dram_bytes_per_s))
    return AcceleratorReport(target, graph.input_shape, weights, arena, weights_fit, activations_fit, layers)


def _dram_bytes(op: Op, graph: Graph, target: AcceleratorTarget, weights_fit: bool, activations_fit: bool) -> int:
    act = target.bytes_per_activation
    traffic = 0
    if op.module is not None and not weights_fit:
        traffic += weight_bytes(op.module, target.bytes_per_weight)
    if op.kind == "input" or op.name in graph.outputs:
        traffic += math.prod(op.out_shape) * act  # the frame comes from and goes back to DRAM
    elif not activations_fit and op.kind not in VIEW_KINDS:
        traffic += (sum(math.prod(s) for s in op.in_shapes) + math.prod(op.out_shape)) * act
    return traffic
