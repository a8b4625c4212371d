"""Measured per-op latency of an exported TFLite model (XNNPACK, this CPU), and a timer
that interleaves rounds of several interpreters so that a shared, noisy machine slows them
alike.

Method (LiteRT's Python API has no op profiler): the model is cut into single-op
sub-models, each a valid .tflite holding one op with its weights, whose activation inputs
become model inputs, at the shapes of the timed input size. Each sub-model runs in its own
interpreter (XNNPACK, like the whole model) on random input, its ``invoke`` timed alone.
A PAD feeding a convolution travels with it (XNNPACK folds such a PAD into the
convolution's padding inside a whole model), so it is timed as one op. The sub-models and
the whole model are timed in interleaved rounds; the sum of the per-op medians against the
whole model's median says how well the cut attributes the time (a sub-model starts with
cold caches for its input, and pays one invoke's fixed cost).

Per op: MACs (one multiply-accumulate per conv tap, per elementwise output and per pooled
input, as :mod:`fad_deploy.profile.macs` counts them) and bytes moved (every input,
weights and biases included, and the output, at their stored types).
"""
from __future__ import annotations

import copy
import functools
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ZERO_MAC_OPS = {"PAD", "CONCATENATION", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "RESHAPE", "QUANTIZE", "DEQUANTIZE",
                "RELU", "RELU6", "GATHER", "STRIDED_SLICE", "SLICE"}
ELEMENTWISE_OPS = {"ADD", "MUL", "SUB"}
CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D"}


@dataclass
class TFLiteOp:
    index: int  # first op of the group in the model's execution order
    ops: tuple[int, ...]  # the ops timed together (a PAD with its convolution)
    name: str  # op type(s), e.g. "PAD+DEPTHWISE_CONV_2D"
    kind: str  # class for summaries, e.g. "conv 3x3 grouped (4 ch/group)"
    out_shape: tuple[int, ...]
    macs: int
    bytes: int


def _load(path_or_bytes) -> bytes:
    return Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)


def interpreter(model: bytes, threads: int, size: tuple[int, int] | None = None, delegate: bool = True):
    """An allocated LiteRT interpreter (XNNPACK unless ``delegate`` is False), its input
    resized to packed ``size``, holding random input. Only without the delegate do the
    tensor details show every intermediate shape after a resize (XNNPACK plans them inside)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=model, num_threads=threads, experimental_op_resolver_type=resolver)
    if size is not None:
        inp = interp.get_input_details()[0]
        if tuple(inp["shape"][1:3]) != tuple(size):
            interp.resize_tensor_input(inp["index"], [1, *size, int(inp["shape"][3])])
    interp.allocate_tensors()
    for d in interp.get_input_details():  # random input at the tensor's type
        rng = np.random.default_rng(d["index"])
        if d["dtype"] == np.float32:
            data = rng.random(d["shape"], dtype=np.float32)
        else:
            info = np.iinfo(d["dtype"])
            data = rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(d["dtype"])
        interp.set_tensor(d["index"], data)
    return interp


def conv_kind(depthwise: bool, kh: int, kw: int, stride: int, per_group: int, in_channels: int) -> str:
    """The class of a convolution for summaries and the calibrated CPU model (stride shown
    where it changes the kernel XNNPACK runs: strided grouped and dense convs)."""
    if depthwise:
        return f"depthwise {kh}x{kw}"
    s = f" s{stride}" if stride > 1 else ""
    if per_group != in_channels:
        return f"conv {kh}x{kw}{s} grouped ({per_group} ch/group)"
    return f"conv {kh}x{kw}{s}" + (" dense" if kh * kw > 1 else "")


def _op_kind(name: str, filt: tuple[int, ...] | None, in_channels: int, options) -> str:
    if name in CONV_OPS:
        depthwise = name == "DEPTHWISE_CONV_2D"
        return conv_kind(depthwise, filt[1], filt[2], options.strideH, 1 if depthwise else filt[3], in_channels)
    if name in ELEMENTWISE_OPS:
        return "elementwise " + name.lower()
    if name == "AVERAGE_POOL_2D":
        return "average pool"
    return "data movement"


@functools.lru_cache(maxsize=4)
def _parsed(model: bytes, size: tuple[int, int] | None):
    """(flatbuffer object tree, op details, tensor details by index at input ``size``); read-only."""
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    interp = interpreter(model, 1, size, delegate=False)
    return tree, interp._get_ops_details(), {t["index"]: t for t in interp.get_tensor_details()}


def model_ops(model: bytes, size: tuple[int, int] | None = None) -> list[TFLiteOp]:
    """The model's ops (PADs grouped with the convolution they feed) with shapes at ``size``,
    MACs and bytes moved."""
    tree, details, tensors = _parsed(model, size)
    sg = tree.subgraphs[0]
    consumers = defaultdict(list)
    for i, d in enumerate(details):
        for t in d["inputs"]:
            consumers[t].append(i)

    def nbytes(t: int) -> int:
        return int(math.prod(tensors[t]["shape"])) * np.dtype(tensors[t]["dtype"]).itemsize

    ops, absorbed = [], set()
    for i, d in enumerate(details):
        if i in absorbed:
            continue
        group = [i]
        out = d["outputs"][0]
        if d["op_name"] == "PAD" and len(consumers[out]) == 1 and details[consumers[out][0]]["op_name"] in CONV_OPS:
            group.append(consumers[out][0])
            absorbed.add(consumers[out][0])
        last = details[group[-1]]
        name = "+".join(details[g]["op_name"] for g in group)
        out_shape = tuple(int(v) for v in tensors[last["outputs"][0]]["shape"])
        out_elems = math.prod(out_shape)
        kind, macs = "data movement", 0
        op_name = last["op_name"]
        if op_name in CONV_OPS:
            filt = tuple(int(v) for v in tensors[last["inputs"][1]]["shape"])
            in_channels = int(tensors[last["inputs"][0]]["shape"][3])
            per_output = filt[1] * filt[2] * (filt[3] if op_name == "CONV_2D" else 1)
            macs = out_elems * per_output
            kind = _op_kind(op_name, filt, in_channels, sg.operators[group[-1]].builtinOptions)
        elif op_name in ELEMENTWISE_OPS:
            macs, kind = out_elems, _op_kind(op_name, None, 0, None)
        elif op_name == "AVERAGE_POOL_2D":
            o = sg.operators[group[-1]].builtinOptions
            macs, kind = out_elems * o.filterHeight * o.filterWidth, "average pool"
        elif op_name not in ZERO_MAC_OPS:
            raise ValueError(f"op {i} {op_name}: not in the per-op profiler's list")
        produced = {t for g in group for t in details[g]["outputs"]}
        moved = sum(nbytes(t) for g in group for t in details[g]["inputs"] if t >= 0 and t not in produced)
        moved += nbytes(last["outputs"][0])
        ops.append(TFLiteOp(i, tuple(group), name, kind, out_shape, macs, moved))
    return ops


def cut(model: bytes, ops: tuple[int, ...], size: tuple[int, int] | None = None) -> bytes:
    """A .tflite holding only ``ops`` (consecutive producers/consumers), at the tensor shapes
    the whole model has for input ``size``: activation inputs become model inputs, the last
    op's outputs the model outputs; weights are kept, metadata dropped."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree, _, tensor_details = _parsed(model, size)
    shapes = {i: [int(v) for v in t["shape"]] for i, t in tensor_details.items()}
    sg = tree.subgraphs[0]

    def constant(t: int) -> bool:
        data = tree.buffers[sg.tensors[t].buffer].data
        return data is not None and len(data) > 0

    produced = {t for i in ops for t in sg.operators[i].outputs}
    used = list(dict.fromkeys(t for i in ops for t in (*sg.operators[i].inputs, *sg.operators[i].outputs) if t >= 0))
    new_index = {t: k for k, t in enumerate(used)}
    buffers = [schema.BufferT()]
    tensors = []
    for t in used:
        tensor = copy.copy(sg.tensors[t])
        tensor.shape, tensor.shapeSignature = shapes[t], None
        buffers.append(tree.buffers[tensor.buffer] if constant(t) else schema.BufferT())
        tensor.buffer = len(buffers) - 1
        tensors.append(tensor)
    operators = []
    for i in ops:
        op = copy.copy(sg.operators[i])
        op.inputs = [new_index[t] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [new_index[t] for t in op.outputs]
        operators.append(op)
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, operators
    sub.inputs = [new_index[t] for t in used if t not in produced and not constant(t)]
    sub.outputs = [new_index[t] for t in sg.operators[ops[-1]].outputs]
    out = schema.ModelT()
    out.version, out.operatorCodes, out.subgraphs, out.buffers = tree.version, tree.operatorCodes, [sub], buffers
    out.description = b"single-op cut"
    builder = flatbuffers.Builder(1024)
    builder.Finish(out.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def interleaved_times(runs: dict[str, Callable[[], None]], rounds: int, per_round: int,
                      warmup: int = 1) -> dict[str, list[float]]:
    """Milliseconds of each call, in ``rounds`` rounds that run every entry ``per_round``
    times, the order rotated each round (no entry always first after another's heat)."""
    keys = list(runs)
    for key in keys:
        for _ in range(warmup):
            runs[key]()
    times = {k: [] for k in keys}
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            for _ in range(per_round):
                start = time.perf_counter()
                runs[key]()
                times[key].append((time.perf_counter() - start) * 1e3)
    return times


def per_op_times(model_path, size: tuple[int, int], threads: int, rounds: int, per_round: int
                 ) -> tuple[list[TFLiteOp], dict[int, float], float]:
    """(ops, median ms per op group keyed by its first op, median ms of the whole model)."""
    model = _load(model_path)
    ops = model_ops(model, size)
    interps = {op.index: interpreter(cut(model, op.ops, size), threads) for op in ops}
    whole = interpreter(model, threads, size)
    runs = {str(k): v.invoke for k, v in interps.items()} | {"whole": whole.invoke}
    times = interleaved_times(runs, rounds, per_round)
    medians = {int(k): float(np.median(v)) for k, v in times.items() if k != "whole"}
    return ops, medians, float(np.median(times["whole"]))


def kind_summary(ops: list[TFLiteOp], medians: dict[int, float]) -> list[dict]:
    """Per op kind: count, MACs, ms and their shares, GMAC/s; slowest kind first."""
    total_ms, total_macs = sum(medians.values()), sum(op.macs for op in ops) or 1
    kinds = defaultdict(lambda: {"ops": 0, "macs": 0, "bytes": 0, "ms": 0.0})
    for op in ops:
        k = kinds[op.kind]
        k["ops"] += 1
        k["macs"] += op.macs
        k["bytes"] += op.bytes
        k["ms"] += medians[op.index]
    rows = [{"kind": name, **k, "mac_share": k["macs"] / total_macs, "time_share": k["ms"] / total_ms,
             "gmac_per_s": k["macs"] / k["ms"] / 1e6 if k["ms"] else 0.0} for name, k in kinds.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def op_rows(ops: list[TFLiteOp], medians: dict[int, float]) -> list[dict]:
    total_ms = sum(medians.values())
    return [{"index": op.index, "op": op.name, "kind": op.kind, "out_shape": list(op.out_shape), "macs": op.macs,
             "bytes": op.bytes, "ms": medians[op.index], "share": medians[op.index] / total_ms,
             "gmac_per_s": op.macs / medians[op.index] / 1e6 if op.macs else 0.0} for op in ops]
