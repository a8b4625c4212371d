"""A per-op CPU latency model (TFLite, XNNPACK) calibrated by measured micro-benchmarks,
where the roofline treats a MAC as a MAC.

Micro-benchmarks: single-op TFLite models built directly in TensorFlow (1x1 conv, dense and
grouped 3x3 convs of stride 1 and 2 with 4 or 16 channels per group, depthwise 3x3 and 5x5,
add, mul, average pool (as the export writes it: a depthwise 2x2 conv of stride 2), concat,
depth-to-space) at FAN's level shapes (its resolutions and widths at one RAW megapixel), fp32
and int8, timed with
:func:`fad_deploy.profile.tflite_ops.interleaved_times`.
Per op kind (the classes of :mod:`fad_deploy.profile.tflite_ops`) and precision the model is

    ms = a + b * MACs + c * bytes moved      (a, b, c >= 0, least squares)

so a kind pays a fixed cost, its own time per MAC and its own time per byte; a kind
without micro-benchmarks falls back to the CPU's peak MAC rate (the plain roofline).
:func:`graph_layers` maps a traced PyTorch network's ops onto the same kinds (activations
fused into their producer, as TFLite does), so `fad-bench --report` predicts per layer.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..export.tf_graph import written_groups, written_layout
from .graph import Graph
from .macs import module_params, op_macs, weight_bytes_int8
from .table import markdown_table
from .tflite_ops import TFLiteOp, conv_kind

# (kind, resolution, channels) at FAN's levels for one RAW megapixel: 512..32 packed pixels.
LEVELS = ((512, 16), (256, 24), (128, 48), (64, 96), (32, 160))
POOL = "depthwise 2x2"  # an average pool as the TFLite export writes it: depthwise 2x2, stride 2 (TFRebuild.pool)
# grouped convs: FAN's 4 channels per group, and 16 or dense, as fad-export writes them by default
# (TFLiteOptions.group_width); 4x4 stride 2: a 3x3 head written on 2x2 blocks of its output (tf_graph.block_kernel)
MICRO_KINDS = ("conv 1x1", "conv 3x3 dense", "conv 3x3 s2 dense", "conv 4x4 s2 dense",
               "conv 3x3 grouped (4 ch/group)", "conv 3x3 s2 grouped (4 ch/group)", "conv 3x3 grouped (16 ch/group)",
               "conv 3x3 s2 grouped (16 ch/group)",
               "depthwise 3x3", "depthwise 5x5", "elementwise add", "elementwise mul", POOL, "data movement")


def group_width(kind: str) -> int | None:
    """The channels per group of a grouped conv kind ("conv 3x3 grouped (4 ch/group)": 4), else None."""
    return int(kind.split("(")[1].split()[0]) if "grouped" in kind else None


FA_SHARED = (4, 8)  # Feature-Align's shared 3x3 conv: the 4 RAW planes to its hidden width


@dataclass(frozen=True)
class Micro:
    kind: str
    size: int  # packed h = w of the input
    channels: int
    out_channels: int | None = None  # convs: default channels

    @property
    def c_out(self) -> int:
        return self.out_channels or self.channels

    @property
    def label(self) -> str:
        return f"{self.kind} {self.size}x{self.size}x{self.channels}" + (
            f"->{self.out_channels}" if self.out_channels else "")


def micro_benchmarks() -> list[Micro]:
    """Every kind at every FAN level (grouped kinds where the level's width holds two groups or
    more), plus the narrow convs FAN runs at every level: Feature-Align's shared 3x3 conv
    (4 -> 8) and its 1x1 heads (8 -> the level's width)."""
    grid = [Micro(kind, size, channels) for kind in MICRO_KINDS for size, channels in LEVELS
            if group_width(kind) is None or channels % group_width(kind) == 0 and channels > group_width(kind)]
    narrow = [Micro("conv 3x3 dense", size, *FA_SHARED) for size, _ in LEVELS]
    heads = [Micro("conv 1x1", size, FA_SHARED[1], channels) for size, channels in LEVELS]
    return grid + narrow + heads


def micro_model(tf, micro: Micro, int8: bool) -> bytes:
    """The single-op .tflite of ``micro`` (random weights; int8: full-integer, random calibration)."""
    rng = np.random.default_rng(0)
    h, c, o = micro.size, micro.channels, micro.c_out
    kind = micro.kind
    two_inputs = kind.startswith("elementwise")
    const = lambda *shape: tf.constant(rng.normal(0, 0.1, shape).astype(np.float32))  # noqa: E731

    def op(x, y=None):
        if kind.startswith("conv "):  # k x k, dense or grouped (the grouped ones keep the width), stride 1 or 2
            k, stride = int(kind.split()[1][0]), 2 if " s2 " in kind else 1
            padding = "SAME" if stride == 1 or k % 2 == 0 else [[0, 0], [k // 2, k // 2], [k // 2, k // 2], [0, 0]]
            depth, out = (group_width(kind), c) if "grouped" in kind else (c, o)
            return tf.nn.bias_add(tf.nn.conv2d(x, const(k, k, depth, out), stride, padding), const(out))
        if kind == POOL:
            quarter = tf.constant(np.full((2, 2, c, 1), 0.25, np.float32))
            return tf.nn.depthwise_conv2d(x, quarter, [1, 2, 2, 1], "VALID")
        if kind.startswith("depthwise"):
            k = int(kind.split()[1][0])
            return tf.nn.bias_add(tf.nn.depthwise_conv2d(x, const(k, k, c, 1), [1, 1, 1, 1], "SAME"), const(c))
        if kind == "elementwise add":
            return x + y
        if kind == "elementwise mul":
            return x * y
        if kind == "data movement":  # SkipShrink.expand: the shrunk skip copied back to the width
            return tf.concat([x] * 4, axis=3)
        raise ValueError(kind)

    spec = [tf.TensorSpec([1, h, h, c], tf.float32)] * (2 if two_inputs else 1)
    fn = tf.function(op, input_signature=spec, autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        converter.representative_dataset = lambda: (
            [rng.random((1, h, h, c), dtype=np.float32) for _ in spec] for _ in range(2))
    with warnings.catch_warnings():  # int8 I/O without input statistics: the ranges come from the calibration
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(converter.convert())


@dataclass
class CpuCostModel:
    """Per (precision, kind): (a ms, b ms per MAC, c ms per byte); ``peak`` MACs/s per precision
    for kinds without micro-benchmarks."""

    coefficients: dict[str, dict[str, list[float]]]
    peak: dict[str, float]
    fits: dict[str, dict[str, dict]] = field(default_factory=dict)  # residuals of each fit
    cpu: str = ""  # the CPU it was calibrated on

    def predict(self, op: TFLiteOp, precision: str) -> float:
        coef = self.coefficients[precision].get(op.kind)
        if coef is None:
            return op.macs / self.peak[precision] * 1e3
        a, b, c = coef
        return a + b * op.macs + c * op.bytes

    def to_dict(self) -> dict:
        return {"coefficients": self.coefficients, "peak_macs_per_s": self.peak, "fits": self.fits,
                "model": "ms = a + b * MACs + c * bytes per op kind and precision"}

    @classmethod
    def load(cls, path: str | Path) -> "CpuCostModel":
        """From benchmarks/cpu_calibration.py's JSON (the model under "model", the CPU under "cpu")."""
        from ..errors import FadError

        try:
            d = json.loads(Path(path).read_text())
            m = d["model"]
            return cls(m["coefficients"], m["peak_macs_per_s"], m.get("fits", {}), d.get("cpu", {}).get("model", "?"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FadError(f"{path}: not a CPU calibration from benchmarks/cpu_calibration.py ({e!r})")


def fit(samples: dict[str, list[tuple[TFLiteOp, float]]], peak: dict[str, float]) -> CpuCostModel:
    """``samples``: precision -> [(micro op, measured ms)]. Non-negative least squares per kind,
    each sample weighted by 1 / its time (relative errors count, not absolute ones)."""
    from scipy.optimize import nnls

    coefficients, fits = {}, {}
    for precision, pairs in samples.items():
        coefficients[precision], fits[precision] = {}, {}
        for kind in sorted({op.kind for op, _ in pairs}):
            ops = [(op, ms) for op, ms in pairs if op.kind == kind]
            x = np.array([[1.0, op.macs, op.bytes] for op, _ in ops])
            y = np.array([ms for _, ms in ops])
            scale = x.max(axis=0)  # columns of comparable size for the solver
            scale[scale == 0] = 1.0
            coef, _ = nnls(x / scale / y[:, None], np.ones_like(y))
            coef = coef / scale
            pred = x @ coef
            coefficients[precision][kind] = [float(v) for v in coef]
            fits[precision][kind] = {"samples": len(ops),
                                     "max_relative_error": float(np.max(np.abs(pred - y) / y))}
    return CpuCostModel(coefficients, peak, fits)


ELEMENT_BYTES = {"fp32": 4, "int8": 1}
FUSED_KINDS = {"activation", "identity", "reshape", "slice", "input", "constant"}  # no kernel of their own


def graph_layers(graph: Graph, precision: str, written_width: float = 0) -> list[TFLiteOp]:
    """The traced network's ops as the kinds, MACs and bytes moved the cost model reads
    (weights at their stored size: int8 with per-channel scales, or fp32), the convs as the
    export writes them: grouped ones with at least ``written_width`` channels per group
    (TFLiteOptions.group_width: adjacent groups merged, zeros included), sibling convs as one
    and their readers over all its channels, narrow convs on 2x2 blocks of their output and a
    DEPTH_TO_SPACE (:func:`written_layout`)."""
    size = ELEMENT_BYTES[precision]
    written = written_layout(graph.model)
    layers = []
    for op in graph.ops:
        if op.kind in FUSED_KINDS or op.target in written.within:
            continue
        kind = {"add": "elementwise add", "mul": "elementwise mul", "avg_pool": POOL}.get(op.kind, "data movement")
        weights, factor, shape, in_shapes, blocked = 0, 1.0, op.out_shape, op.in_shapes, False
        if op.kind == "conv":
            m = op.module
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            groups = written_groups(m, written_width)
            wider_out = written.merged_out.get(op.target, m.out_channels) / m.out_channels
            wider_in = written.reader_in.get(op.target, m.in_channels) / m.in_channels
            macs, weight_factor = written.conv_factors(op.target, m, written_width)
            factor = macs * wider_out
            weights = weight_factor * wider_out * (weight_bytes_int8(m) if precision == "int8"
                                                   else size * module_params(m))
            shape = (*op.out_shape[:1], round(op.out_shape[1] * wider_out), *op.out_shape[2:])
            in_shapes = tuple((*s[:1], round(s[1] * wider_in), *s[2:]) for s in op.in_shapes)
            kernel, stride = m.kernel_size, m.stride[0]
            blocked = op.target in written.blocked
            if blocked:  # (k+1) x (k+1), stride 2, 4x the channels at half the size
                kernel, stride = (kernel[0] + 1, kernel[1] + 1), 2
                shape = (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
            kind = conv_kind(depthwise, *kernel, stride, m.in_channels // groups, m.in_channels)
        moved = size * (sum(math.prod(s) for s in in_shapes) + math.prod(shape)) + weights
        layers.append(TFLiteOp(op.index, (op.index,), op.name, kind, shape, round(factor * op_macs(op)), round(moved)))
        if blocked:
            layers.append(TFLiteOp(op.index, (op.index,), f"{op.name} (DEPTH_TO_SPACE)", "data movement",
                                   op.out_shape, 0, 2 * size * math.prod(op.out_shape)))
    return layers


def layer_report(model: CpuCostModel, graph: Graph, top: int = 12, written_width: float = 0) -> tuple[str, dict]:
    """Markdown (per kind, then the slowest layers) and a dict of the predicted per-layer ms, the
    grouped convs written with at least ``written_width`` channels per group (:func:`graph_layers`)."""
    parts, doc = [], {}
    for precision in ("int8", "fp32"):
        layers = graph_layers(graph, precision, written_width)
        ms = [model.predict(op, precision) for op in layers]
        total = sum(ms)
        kinds = {}
        for op, t in zip(layers, ms):
            k = kinds.setdefault(op.kind, [0, 0, 0.0])
            k[0], k[1], k[2] = k[0] + 1, k[1] + op.macs, k[2] + t
        kind_rows = [[kind, n, f"{macs / 1e6:.1f}", f"{t:.2f}", f"{t / total:.0%}",
                      f"{macs / t / 1e6:.1f}" if t else "-"] for kind, (n, macs, t) in
                     sorted(kinds.items(), key=lambda kv: -kv[1][2])]
        slow = sorted(zip(layers, ms), key=lambda lt: -lt[1])[:top]
        layer_rows = [[op.name, op.kind, "x".join(map(str, op.out_shape)), f"{op.macs:,}", f"{t:.3f}",
                       f"{t / total:.0%}"] for op, t in slow]
        parts += [f"{precision}: {total:.1f} ms predicted at 1 thread.",
                  markdown_table(["kind", "layers", "MMACs", "ms", "share", "GMAC/s"], kind_rows),
                  markdown_table(["slowest layers", "kind", "output", "MACs", "ms", "share"], layer_rows)]
        doc[precision] = {"total_ms": total, "layers": [{"name": op.name, "kind": op.kind, "macs": op.macs,
                                                         "bytes": op.bytes, "ms": t} for op, t in zip(layers, ms)]}
    return "\n\n".join(parts), doc
