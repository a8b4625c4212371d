"""ONNX export: float32, or int8 QDQ from the fake-quant network; one file (no external
data), simplified with onnxsim, checked with onnx.checker (full check). Both take any
N, h, w: the replicate padding to the network's multiple is inside the graph. Both output
the residual (the network without its final input add; see :mod:`fad_deploy.quant.graph`)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from ..errors import FadError
from ..models.registry import Checkpoint
from ..quant.graph import Core, Padded
from ..quant.qat import fake_quant_model, full_range_weights, require_residual
from ..quant.split import input_channels
from ..runners.base import IN_CHANNELS
from ..runners.onnx_runner import ANCHOR_READ_KEY, ANCHOR_SHOT_KEY

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "noisy", "residual"
DYNAMIC_AXES = {0: "n", 2: "h", 3: "w"}
TRACE_SIZE = 64  # packed size of the example input used for tracing


def uint8_weights(model) -> int:
    """Store int8 weight grids as uint8 with zero point 128 (the same grid, shifted).

    onnxruntime's u8 x s8 int8 convolutions saturate 16-bit pair sums on x86 CPUs without
    VNNI (AVX2 vpmaddubsw), which costs about 17 dB of parity; u8 x u8 kernels do not.
    Returns the number of weight quantizers rewritten.
    """
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    weight_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits
                and n.input[2] in inits and numpy_helper.to_array(inits[n.input[2]]).dtype == np.int8]
    for name in {n.input[2] for n in weight_q}:
        zp = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
        inits[name].CopyFrom(numpy_helper.from_array(zp.astype(np.uint8), name))
    outputs = {n.output[0] for n in weight_q}
    for vi in model.graph.value_info:
        if vi.name in outputs:
            vi.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return len(weight_q)


def export_onnx(ckpt: Checkpoint, int8: bool, metadata: dict[str, str],
                fixed_size: tuple[int, int] | None = None) -> tuple[bytes, dict]:
    """The .onnx bytes and a description for the manifest. int8 needs a quantized checkpoint.
    ``fixed_size`` exports a static (1, 4, h, w) graph instead (for converters that need one)."""
    import onnx
    import onnxsim

    channels = input_channels(ckpt) if int8 else IN_CHANNELS
    if int8:
        require_residual(ckpt)
        model = full_range_weights(fake_quant_model(ckpt))
    else:
        net = ckpt.build().eval()
        model = Padded(Core(net, residual=True), net.pad).eval()
    example = torch.zeros(1, channels, *(fixed_size or (TRACE_SIZE, TRACE_SIZE)))
    dynamic = None if fixed_size else {INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the shape arithmetic of the padding
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic)
    proto, ok = onnxsim.simplify(onnx.load_from_string(buf.getvalue()))
    if not ok:
        raise FadError(f"{ckpt.name}: onnxsim could not validate the simplified ONNX model")
    rewritten = uint8_weights(proto) if int8 else 0
    meta = {ANCHOR_SHOT_KEY: repr(ckpt.anchor.shot), ANCHOR_READ_KEY: repr(ckpt.anchor.read), **metadata}
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name, proto.producer_version = "fad-deploy", metadata.get("version", "")
    onnx.checker.check_model(proto, full_check=True)
    ops = sorted({n.op_type for n in proto.graph.node})
    def shape(c: int) -> list:
        return [1, c, *fixed_size] if fixed_size else ["n", c, "h", "w"]

    info = {"input": {"name": INPUT_NAME, "shape": shape(channels), "layout": "NCHW", "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": shape(IN_CHANNELS), "layout": "NCHW", "dtype": "float32"},
            "dynamic_hw": not fixed_size, "opset": OPSET, "ops": ops}
    if int8:
        info["qdq"] = {"weights": "per-channel 8-bit, stored uint8 with zero point 128 (the int8 grid shifted)",
                       "activations": "per-tensor uint8", "weight_quantizers": rewritten}
    return proto.SerializeToString(), info
