"""The traced graph every profiler reads: torch.fx ops in execution order, with shapes.

The FAN pads to a multiple of 16 and crops back depending on the input shape, so the
network is traced symbolically with :class:`PadToMultiple` kept as one leaf op, then shapes
are propagated for one concrete input on the ``meta`` device (no arithmetic runs, so a
12 MP input costs nothing). Every node is mapped to an op kind from a closed list; any
other op raises :class:`UnsupportedOp` so a profiler can never silently skip work.
"""
from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import FadError
from ..models.layers import PadToMultiple

RAW_PLANES = 4  # packed RGGB: one packed pixel is four RAW pixels
# The paper's "megapixel": one 4x512x512 packed tensor, i.e. 2**20 RAW (Bayer) pixels.
RAW_MEGAPIXEL = RAW_PLANES * 512 * 512
DEFAULT_INPUT_SIZE = (512, 512)  # packed h, w: one RAW megapixel

# Op kinds. Shape arithmetic ("shape") disappears at export and is not listed.
MODULE_KINDS: tuple[tuple[type, str], ...] = (
    (nn.ConvTranspose1d, "conv_transpose"), (nn.ConvTranspose2d, "conv_transpose"),
    (nn.ConvTranspose3d, "conv_transpose"),
    (nn.Conv1d, "conv"), (nn.Conv2d, "conv"), (nn.Conv3d, "conv"),
    (nn.Linear, "linear"),
    (nn.ReLU, "activation"), (nn.ReLU6, "activation"), (nn.LeakyReLU, "activation"),
    (nn.PReLU, "activation"), (nn.Sigmoid, "activation"), (nn.Tanh, "activation"),
    (nn.Hardswish, "activation"), (nn.Hardsigmoid, "activation"), (nn.SiLU, "activation"),
    (nn.GELU, "activation"), (nn.ELU, "activation"), (nn.Hardtanh, "activation"),
    (nn.BatchNorm1d, "affine"), (nn.BatchNorm2d, "affine"),
    (nn.AvgPool2d, "avg_pool"), (nn.AdaptiveAvgPool2d, "avg_pool"), (nn.MaxPool2d, "max_pool"),
    (nn.PixelShuffle, "shuffle"), (nn.PixelUnshuffle, "shuffle"),
    (nn.Upsample, "resize"),
    (PadToMultiple, "pad"), (nn.ZeroPad2d, "pad"), (nn.ReplicationPad2d, "pad"),
    (nn.ReflectionPad2d, "pad"), (nn.ConstantPad2d, "pad"),
    (nn.Identity, "identity"), (nn.Dropout, "identity"), (nn.Flatten, "reshape"),
)
FUNCTION_KINDS: dict = {
    operator.add: "add", operator.iadd: "add", torch.add: "add", operator.sub: "add", torch.sub: "add",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul", operator.truediv: "mul", torch.div: "mul",
    torch.cat: "cat", torch.concat: "cat",
    operator.getitem: "slice",
    F.pad: "pad",
    F.interpolate: "resize",
    F.relu: "activation", F.relu6: "activation", torch.relu: "activation", torch.sigmoid: "activation",
    torch.tanh: "activation", F.hardtanh: "activation", F.leaky_relu: "activation", F.silu: "activation",
    F.gelu: "activation", torch.clamp: "activation",
    F.avg_pool2d: "avg_pool", F.adaptive_avg_pool2d: "avg_pool", F.max_pool2d: "max_pool",
    F.pixel_shuffle: "shuffle", F.pixel_unshuffle: "shuffle",
    torch.flatten: "reshape", torch.reshape: "reshape",
}
METHOD_KINDS = {
    "add": "add", "sub": "add", "mul": "mul", "div": "mul",
    "relu": "activation", "sigmoid": "activation", "tanh": "activation", "clamp": "activation",
    "view": "reshape", "reshape": "reshape", "flatten": "reshape", "contiguous": "identity",
}
# Ops that compute on sizes, not tensors; they vanish from an exported graph.
SHAPE_FUNCTIONS = {getattr, operator.getitem, operator.sub, operator.add, operator.mul, operator.mod,
                   operator.neg, operator.floordiv, len}
SHAPE_METHODS = {"size", "dim"}


class UnsupportedOp(FadError):
    """The network uses an op outside the profilers' closed list."""


@dataclass
class Op:
    """One executed op: its kind, what it reads, and the shape it writes."""

    index: int  # execution order
    name: str  # fx node name (unique)
    kind: str
    target: str  # module path, or function/method name
    inputs: tuple[str, ...]  # names of the tensor ops it reads
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    module: nn.Module | None = None
    first_call: bool = True  # False when a module runs again (its weights were counted already)
    attrs: dict = field(default_factory=dict)  # kind-specific settings (resize mode, pool kernel)

    @property
    def out_numel(self) -> int:
        return math.prod(self.out_shape)


@dataclass
class Graph:
    model: nn.Module  # the meta-device copy that was traced (shapes only, no weight values)
    input_shape: tuple[int, ...]
    ops: list[Op]  # execution order; ops[0] is the input
    outputs: tuple[str, ...]


def computed_shape(graph: Graph) -> tuple[int, ...]:
    """The packed shape the network computes on: its input padded to the network's multiple,
    where it pads (MACs per megapixel are the network's own on that, whatever the padding)."""
    return next((op.out_shape for op in graph.ops if isinstance(op.module, PadToMultiple)), graph.input_shape)


def raw_megapixels(packed_shape) -> float:
    """RAW megapixels (units of 4x512x512 packed) of a packed (N, 4, h, w) shape."""
    return math.prod(packed_shape) / RAW_MEGAPIXEL


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PadToMultiple) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, batch: int = 1,
          channels: int = RAW_PLANES) -> Graph:
    """Trace ``model`` for a (batch, channels, h, w) input and classify every op."""
    meta = copy.deepcopy(model).to("meta").eval()
    if _Tracer().is_leaf_module(meta, ""):  # a bare layer: trace it as one op, not its functional body
        meta = nn.Sequential(meta)
    try:
        gm = fx.GraphModule(meta, _Tracer().trace(meta))
    except Exception as e:  # noqa: BLE001 - fx raises many types for untraceable code
        raise UnsupportedOp(f"{type(model).__name__}: cannot trace the network with torch.fx "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:160]})")
    for node in gm.graph.nodes:  # unsupported layers fail here, before they get to run
        if node.op == "call_module":
            _module_kind(gm.get_submodule(node.target), node.target)
    shape = (batch, channels, *input_size)
    try:
        ShapeProp(gm).propagate(torch.empty(shape, device="meta"))
    except Exception as e:  # noqa: BLE001 - the network rejects this input shape
        raise FadError(f"{type(model).__name__} cannot run on a {'x'.join(map(str, shape))} input "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:160]})")
    return Graph(meta, shape, *_ops(gm))


def _ops(gm: fx.GraphModule) -> tuple[list[Op], tuple[str, ...]]:
    ops: list[Op] = []
    tensors: dict[str, tuple[int, ...]] = {}
    seen_modules: set[int] = set()
    outputs: tuple[str, ...] = ()
    for node in gm.graph.nodes:
        if node.op == "output":
            outputs = tuple(n.name for n in node.all_input_nodes if n.name in tensors)
            continue
        shape = _tensor_shape(node)
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        kind = _kind(node, module, shape)
        if kind == "shape":
            continue
        inputs = tuple(n.name for n in node.all_input_nodes if n.name in tensors)
        first = module is None or id(module) not in seen_modules
        if module is not None:
            seen_modules.add(id(module))
        ops.append(Op(len(ops), node.name, kind, _target_name(node), inputs, tuple(tensors[i] for i in inputs),
                      shape, module, first, _attrs(node, kind)))
        tensors[node.name] = shape
    return ops, outputs


def _tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(int(d) for d in meta.shape) if hasattr(meta, "shape") else None


def _target_name(node: fx.Node) -> str:
    if node.op in ("call_module", "call_method", "placeholder", "get_attr"):
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def _kind(node: fx.Node, module: nn.Module | None, shape) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "get_attr":
        return "constant"
    if node.op == "call_module":
        return _module_kind(module, node.target)
    if shape is None and (node.target in SHAPE_FUNCTIONS or node.target in SHAPE_METHODS):
        return "shape"
    kinds = FUNCTION_KINDS if node.op == "call_function" else METHOD_KINDS
    try:
        kind = kinds.get(node.target)
    except TypeError:  # unhashable target
        kind = None
    if kind is None or shape is None:
        raise UnsupportedOp(f"unsupported op {_target_name(node)!r} at node {node.name!r}: the profilers handle "
                            "conv, transposed conv, linear, add/sub, mul/div, cat, slicing, pad, resize, "
                            "pooling, pixel (un)shuffle, reshape and activations")
    return kind


def _module_kind(module: nn.Module, path: str) -> str:
    for cls, kind in MODULE_KINDS:
        if isinstance(module, cls):
            return kind
    raise UnsupportedOp(f"unsupported module {type(module).__name__} at {path!r}: the profilers handle "
                        f"{', '.join(sorted({c.__name__ for c, _ in MODULE_KINDS}))}")


def _attrs(node: fx.Node, kind: str) -> dict:
    """Settings a counting rule needs from a functional call (modules carry their own)."""
    if node.op != "call_function":
        return {}
    if kind == "resize":
        return {"mode": node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")}
    if kind == "avg_pool" and node.target is F.avg_pool2d:
        return {"kernel_size": node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else None)}
    return {}
