"""MAC and parameter counter over the traced graph (every op, not only convs).

Counting rules (one MAC = one multiply-accumulate; bias adds are not counted, as in fvcore):
- conv: output elements x (input channels / groups) x kernel area (grouped and depthwise
  convs are counted by their real per-group fan-in);
- transposed conv: input elements x (output channels / groups) x kernel area;
- linear: output elements x input features;
- elementwise mul/div and add/sub (Feature-Align's gamma * F + beta, residuals, skip fusion):
  one MAC per output element each, so gamma * F + beta counts 2 per element (an upper
  bound: a fused multiply-add would do it in 1);
- batch-norm (affine): one MAC per element;
- average pooling: kernel area per output element; resize: 0 (nearest), 4 (bilinear),
  16 (bicubic) per output element;
- max pooling, pixel (un)shuffle, pad, cat, slicing, reshape: 0 MACs (listed, memory only);
- activations: 0 MACs, reported as their own column (one op per element).
"Per megapixel" follows the paper: per 4x512x512 packed input, i.e. 2**20 RAW (Bayer) pixels.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch.nn as nn

from .graph import DEFAULT_INPUT_SIZE, Graph, Op, computed_shape, raw_megapixels, trace
from .table import markdown_table

RESIZE_TAPS = {"nearest": 0, "nearest-exact": 0, "bilinear": 4, "linear": 2, "bicubic": 16}
INT8_BIAS_BYTES = 4  # int32 biases, as TFLite's int8 kernels use
INT8_SCALE_BYTES = 4  # one float32 scale per output channel (per-channel weight quantization)
FP32_BYTES = 4
MAC_KINDS = ("conv", "conv_transpose", "linear", "mul", "add", "affine", "avg_pool", "resize")


@dataclass
class LayerCount:
    name: str
    kind: str
    target: str
    out_shape: tuple[int, ...]
    macs: int
    activation_ops: int
    params: int  # counted at the module's first call only


@dataclass
class MacReport:
    input_shape: tuple[int, ...]
    layers: list[LayerCount]
    params: int
    weight_bytes_fp32: int
    weight_bytes_int8: int
    computed_shape: tuple[int, ...]  # the input padded to the network's multiple (graph.computed_shape)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def activation_ops(self) -> int:
        return sum(layer.activation_ops for layer in self.layers)

    @property
    def raw_megapixels(self) -> float:
        return raw_megapixels(self.input_shape)

    @property
    def gmacs_per_megapixel(self) -> float:
        """GMACs per RAW megapixel, i.e. per 4x512x512 packed input (2**20 Bayer pixels), of the
        shape the network computes on (the padding's MACs are not counted against the frame)."""
        return self.macs / 1e9 / raw_megapixels(self.computed_shape)

    def macs_by_kind(self) -> dict[str, int]:
        totals = Counter()
        for layer in self.layers:
            totals[layer.kind] += layer.macs
        return {k: totals[k] for k in MAC_KINDS if totals[k]}

    def table(self) -> str:
        rows = [[layer.name, layer.kind, "x".join(map(str, layer.out_shape)), f"{layer.macs:,}",
                 f"{layer.activation_ops:,}", f"{layer.params:,}"] for layer in self.layers]
        rows.append(["total", "", "", f"{self.macs:,}", f"{self.activation_ops:,}", f"{self.params:,}"])
        return markdown_table(["layer", "op", "output", "MACs", "activation ops", "params"], rows)

    def summary(self) -> str:
        by_kind = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in self.macs_by_kind().items())
        return (f"{self.gmacs_per_megapixel:.4f} GMACs per RAW megapixel (4x512x512 packed input); "
                f"{self.macs / 1e9:.4f} GMACs at input {'x'.join(map(str, self.input_shape))}"
                + (f" (padded to {'x'.join(map(str, self.computed_shape))})" if self.computed_shape != self.input_shape
                   else "") + " "
                f"[{by_kind}]; activation ops {self.activation_ops / 1e9:.4f} G; {self.params:,} parameters, "
                f"{self.weight_bytes_fp32:,} B fp32, {self.weight_bytes_int8:,} B int8")

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "macs": self.macs,
            "gmacs_per_megapixel": self.gmacs_per_megapixel,
            "megapixel_definition": "one 4x512x512 packed input = 2**20 RAW pixels",
            "macs_by_kind": self.macs_by_kind(),
            "activation_ops": self.activation_ops,
            "params": self.params,
            "weight_bytes_fp32": self.weight_bytes_fp32,
            "weight_bytes_int8": self.weight_bytes_int8,
            "layers": [{"name": x.name, "kind": x.kind, "target": x.target, "out_shape": list(x.out_shape),
                        "macs": x.macs, "activation_ops": x.activation_ops, "params": x.params}
                       for x in self.layers],
        }


def split_input_macs(graph: Graph) -> int:
    """The MACs a split int8 input adds to ``graph``'s (fad_deploy.quant.split): every conv that
    reads the network input (through padding) reads the remainder's channels as well, as many
    MACs again."""
    reads_input, extra = {graph.ops[0].name}, 0
    for op in graph.ops[1:]:
        if not reads_input.intersection(op.inputs):
            continue
        if op.kind in ("pad", "identity"):
            reads_input.add(op.name)
        elif op.kind == "conv":
            extra += op_macs(op)
    return extra


def op_macs(op: Op) -> int:
    """Multiply-accumulates of one op (the rules in the module docstring)."""
    out = op.out_numel
    if op.kind == "conv":
        weight = op.module.weight.shape  # (out, in / groups, *kernel)
        return out * weight[1] * math.prod(weight[2:])
    if op.kind == "conv_transpose":
        weight = op.module.weight.shape  # (in, out / groups, *kernel)
        return math.prod(op.in_shapes[0]) * weight[1] * math.prod(weight[2:])
    if op.kind == "linear":
        return out * op.module.in_features
    if op.kind in ("mul", "add", "affine"):
        return out
    if op.kind == "avg_pool":
        if isinstance(op.module, nn.AdaptiveAvgPool2d) or (op.module is None and "kernel_size" not in op.attrs):
            return math.prod(op.in_shapes[0])  # every input is summed once
        kernel = op.module.kernel_size if op.module is not None else op.attrs["kernel_size"]
        return out * math.prod(_pair(kernel))
    if op.kind == "resize":
        mode = op.module.mode if op.module is not None else op.attrs["mode"]
        return out * RESIZE_TAPS[mode]
    return 0


def _pair(k) -> tuple[int, int]:
    return tuple(k) if isinstance(k, (tuple, list)) else (k, k)


def module_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weight_bytes_int8(model: nn.Module) -> int:
    """int8 weights with one fp32 scale per output channel, int32 biases, other params 1 byte."""
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                total += INT8_BIAS_BYTES * p.numel()
            elif p.dim() >= 2:
                channels = getattr(module, "out_channels", getattr(module, "out_features", p.shape[0]))
                total += p.numel() + INT8_SCALE_BYTES * channels
            else:
                total += p.numel()
    return total


def count_macs(model: nn.Module | Graph, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> MacReport:
    """Per-layer MACs, activation ops and parameters of ``model`` for a packed (1, 4, h, w) input."""
    graph = model if isinstance(model, Graph) else trace(model, input_size)
    layers = [
        LayerCount(op.name, op.kind, op.target, op.out_shape, op_macs(op),
                   op.out_numel if op.kind == "activation" else 0,
                   module_params(op.module) if op.module is not None and op.first_call else 0)
        for op in graph.ops if op.kind != "input"
    ]
    params = module_params(graph.model)
    return MacReport(graph.input_shape, layers, params, FP32_BYTES * params, weight_bytes_int8(graph.model),
                     computed_shape(graph))
