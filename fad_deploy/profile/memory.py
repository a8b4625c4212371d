"""Peak activation memory: tensor lifetimes over the execution order, packed into one arena
by a greedy-by-size planner like TFLite's (largest tensor first, each at the lowest offset
that does not overlap a tensor alive at the same time).

Modelling choices, the same as a TFLite interpreter makes:
- the network input and output live in the arena; weights do not (they are read-only);
- views (identity, reshape, a pad or slice that changes nothing) share their input's buffer;
- an activation whose input has no other reader is fused into the producer (TFLite fuses
  ReLU/ReLU6 into CONV_2D/ADD), so it writes in place;
- a tensor is alive from the op that writes it to the last op that reads it, both included;
- offsets are aligned to 64 bytes (TFLite's default tensor alignment).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from ..errors import FadError
from .graph import DEFAULT_INPUT_SIZE, Graph, trace
from .table import markdown_table

ARENA_ALIGNMENT = 64
VIEW_KINDS = ("identity", "reshape")
NO_OP_IF_SAME_SHAPE = ("pad", "slice", "cat")  # a pad/crop by zero, or a cat of one tensor
FUSED_INTO_PRODUCER = ("activation",)
BYTES = {"fp32": 4, "int8": 1}


@dataclass
class Tensor:
    name: str  # the op that writes it
    shape: tuple[int, ...]
    nbytes: int
    first: int  # index of the op that writes it
    last: int  # index of the last op that reads it (inclusive)

    def overlaps(self, other: "Tensor") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryReport:
    input_shape: tuple[int, ...]
    bytes_per_element: int
    tensors: list[Tensor]
    offsets: dict[str, int]
    arena_bytes: int  # what the greedy planner needs
    timeline: list[tuple[str, str, int]]  # (op, kind, live bytes while it runs)

    @property
    def peak_live_bytes(self) -> int:
        """Lower bound of any arena: the most bytes alive at one op."""
        return max(live for _, _, live in self.timeline)

    @property
    def mean_live_bytes(self) -> float:
        """Live bytes averaged over the ops: what long-lived tensors (skips) cost over time."""
        return sum(live for _, _, live in self.timeline) / len(self.timeline)

    @property
    def largest(self) -> Tensor:
        return max(self.tensors, key=lambda t: t.nbytes)

    def summary(self) -> str:
        big = self.largest
        return (f"arena {self.arena_bytes:,} B (greedy by size, {ARENA_ALIGNMENT}-byte aligned), peak live "
                f"{self.peak_live_bytes:,} B, {self.bytes_per_element} B/element, input "
                f"{'x'.join(map(str, self.input_shape))}; largest tensor {big.name} "
                f"{'x'.join(map(str, big.shape))} = {big.nbytes:,} B")

    def timeline_table(self) -> str:
        rows = [[name, kind, f"{live:,}"] for name, kind, live in self.timeline]
        return markdown_table(["op", "kind", "live activation bytes"], rows)

    def to_dict(self) -> dict:
        big = self.largest
        return {
            "input_shape": list(self.input_shape),
            "bytes_per_element": self.bytes_per_element,
            "arena_bytes": self.arena_bytes,
            "peak_live_bytes": self.peak_live_bytes,
            "mean_live_bytes": self.mean_live_bytes,
            "largest_tensor": {"name": big.name, "shape": list(big.shape), "bytes": big.nbytes},
            "timeline": [{"op": n, "kind": k, "live_bytes": b} for n, k, b in self.timeline],
        }


def tensor_lifetimes(graph: Graph, bytes_per_element: int) -> list[Tensor]:
    """One buffer per op that writes new memory, with its lifetime over the execution order."""
    readers: dict[str, int] = {}
    for op in graph.ops:
        for name in op.inputs:
            readers[name] = readers.get(name, 0) + 1
    kinds = {op.name: op.kind for op in graph.ops}
    owner: dict[str, str] = {}  # op name -> name of the buffer it writes into
    tensors: dict[str, Tensor] = {}
    for op in graph.ops:
        if op.kind == "constant":  # a stored tensor, like the weights: not an activation
            continue
        source = op.inputs[0] if op.inputs else None
        if source is not None and _reuses_input(op, source, readers, kinds):
            owner[op.name] = owner[source]
            continue
        owner[op.name] = op.name
        tensors[op.name] = Tensor(op.name, op.out_shape, math.prod(op.out_shape) * bytes_per_element,
                                  op.index, op.index)
    for op in graph.ops:
        for name in op.inputs:
            if name in owner:
                buf = tensors[owner[name]]
                buf.last = max(buf.last, op.index)
    end = len(graph.ops) - 1
    for name in graph.outputs:  # outputs stay until the caller reads them
        tensors[owner[name]].last = end
    return list(tensors.values())


def _reuses_input(op, source: str, readers: dict[str, int], kinds: dict[str, str]) -> bool:
    if source not in kinds or kinds[source] == "constant":
        return False
    if op.kind in VIEW_KINDS:
        return True
    if op.kind in NO_OP_IF_SAME_SHAPE and len(op.inputs) == 1 and op.in_shapes[0] == op.out_shape:
        return True
    return op.kind in FUSED_INTO_PRODUCER and readers[source] == 1 and kinds[source] != "input"


def plan_arena(tensors: list[Tensor], alignment: int = ARENA_ALIGNMENT) -> tuple[dict[str, int], int]:
    """Greedy by size: largest first (ties: earliest first), each at the lowest aligned offset
    that leaves it clear of every already placed tensor whose lifetime overlaps. -> offsets, arena size."""
    placed: list[tuple[int, Tensor]] = []
    offsets: dict[str, int] = {}
    for t in sorted(tensors, key=lambda t: (-t.nbytes, t.first)):
        offset = 0
        for other_offset, other in sorted((p for p in placed if p[1].overlaps(t)), key=lambda p: p[0]):
            if offset + t.nbytes <= other_offset:
                break  # the gap below this neighbour is big enough
            offset = max(offset, _align(other_offset + other.nbytes, alignment))
        placed.append((offset, t))
        offsets[t.name] = offset
    return offsets, max((o + t.nbytes for o, t in placed), default=0)


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def live_timeline(graph: Graph, tensors: list[Tensor]) -> list[tuple[str, str, int]]:
    return [(op.name, op.kind, sum(t.nbytes for t in tensors if t.first <= op.index <= t.last))
            for op in graph.ops]


def profile_memory(model: nn.Module | Graph, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
                   bytes_per_element: int = BYTES["fp32"], alignment: int = ARENA_ALIGNMENT) -> MemoryReport:
    """Activation memory of one inference on a packed (1, 4, h, w) input."""
    graph = model if isinstance(model, Graph) else trace(model, input_size)
    tensors = tensor_lifetimes(graph, bytes_per_element)
    offsets, arena = plan_arena(tensors, alignment)
    return MemoryReport(graph.input_shape, bytes_per_element, tensors, offsets, arena, live_timeline(graph, tensors))


def bottleneck_live_bytes(graph: Graph, report: MemoryReport) -> int:
    """Live bytes at the last op with the smallest spatial output (the U-Net's deepest level,
    just before the decoder): there, most of what is alive is held for skip connections."""
    spatial = [(math.prod(op.out_shape[2:]), -op.index) for op in graph.ops if len(op.out_shape) == 4]
    return report.timeline[-min(spatial)[1]][2]


def compare_peaks(models: dict[str, nn.Module], input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> str:
    """Markdown table of arena, peak, mean and bottleneck live bytes (fp32, int8) of several networks."""
    rows = []
    for name, model in models.items():
        graph = trace(model, input_size)
        fp32, int8 = (profile_memory(graph, bytes_per_element=BYTES[k]) for k in ("fp32", "int8"))
        rows.append([name, f"{fp32.arena_bytes:,}", f"{int8.arena_bytes:,}", f"{int8.peak_live_bytes:,}",
                     f"{int8.mean_live_bytes:,.0f}", f"{bottleneck_live_bytes(graph, int8):,}",
                     f"{int8.largest.name} {int8.largest.nbytes:,}"])
    return markdown_table(["network", "arena fp32 B", "arena int8 B", "peak live int8 B", "mean live int8 B",
                           "live at bottleneck int8 B", "largest tensor (int8 B)"], rows)


def tflite_allocation(path: str | Path, threads: int = 1, xnnpack: bool = True) -> dict:
    """What the LiteRT interpreter really allocates for ``path``: process RSS growth (psutil)
    across allocate_tensors() and the first invoke(), measured in a fresh Python process so
    nothing else shares the heap; plus the summed bytes of every activation tensor (outputs
    of ops and the input) without any reuse."""
    path = Path(path)
    if not path.is_file():
        raise FadError(f"{path}: TFLite model not found")
    code = (f"from fad_deploy.profile.memory import _measure_tflite; "
            f"_measure_tflite({str(path)!r}, {int(threads)}, {bool(xnnpack)})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise FadError(f"{path}: LiteRT could not run the model ({done.stderr.strip().splitlines()[-1][:200]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_tflite(path: str, threads: int, xnnpack: bool) -> None:
    import numpy as np
    import psutil
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    proc = psutil.Process()
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    rss0 = proc.memory_info().rss
    interpreter = Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
    rss_loaded = proc.memory_info().rss
    interpreter.allocate_tensors()
    rss_allocated = proc.memory_info().rss
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    interpreter.invoke()
    rss_invoked = proc.memory_info().rss
    print(json.dumps({
        "xnnpack": xnnpack,
        "input_shape": [int(d) for d in inp["shape"]],
        "rss_model_load_bytes": rss_loaded - rss0,
        "rss_allocate_tensors_bytes": rss_allocated - rss_loaded,
        "rss_first_invoke_bytes": rss_invoked - rss_allocated,
        "rss_allocate_and_invoke_bytes": rss_invoked - rss_loaded,
        "activation_tensor_bytes_no_reuse": _activation_bytes(interpreter),
    }))


def _activation_bytes(interpreter) -> int | None:
    """Sum of the bytes of the input and every op output (None where ops are hidden by a delegate)."""
    try:
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the only per-op view LiteRT offers
    except AttributeError:
        return None
    written = {int(i) for op in ops for i in op["outputs"]}
    written |= {int(d["index"]) for d in interpreter.get_input_details()}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return int(sum(math.prod(details[i]["shape"]) * details[i]["dtype"]().itemsize for i in written if i in details))
