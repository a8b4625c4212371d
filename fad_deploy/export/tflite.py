"""TFLite export: the network rebuilt in TensorFlow (NHWC, fixed input size) and
converted by TFLiteConverter, as float32, as full-integer int8 that keeps PyTorch's QAT
ranges (fake quantizers at exactly PyTorch's grids, no re-calibration), or as 16x8 (int8
weights, int16 activations: the converter calibrates per-tensor int16 ranges on training
patches and rounds the weights per channel, which it keeps exactly when they already lie on
its grid, see :func:`fad_deploy.quant.qat.on_weight_grid`), with tflite-support metadata (names,
preprocessing, noise range, version). The output is the residual (the
network without its final input add, see :mod:`fad_deploy.quant.graph`)."""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import flatbuffers
import numpy as np
import torch
import torch.nn as nn

from ..errors import FadError
from ..models.registry import Checkpoint
from ..native_logs import quiet_native_logs
from ..quant.graph import Core, trace_float
from ..quant.int16 import input_map
from ..quant.qat import calibration_inputs, fake_quant_core, grid, io_quantizers, is_quantized, require_residual
from ..quant.split import input_channels, single_checkpoint
from ..runners.base import IN_CHANNELS, network_input
from .tf_graph import TFRebuild, written_layout

INPUT_NAME, OUTPUT_NAME = "noisy", "residual"
DEFAULT_INPUT_SIZE = (256, 256)  # packed; a 512x512 Bayer tile (0.26 MP)
SCALE_RTOL = 1e-5  # converted int8 I/O scales must equal PyTorch's


@dataclass(frozen=True)
class TFLiteOptions:
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    int8: bool = True
    float_io: bool = False  # int8 model with float32 input/output (QUANTIZE/DEQUANTIZE inside)
    activations: Literal["int8", "int16"] = "int8"  # of a quantized model (int16: TFLite 16x8)
    group_conv: bool = True  # False: grouped convs as block-diagonal plain convs (GPU/NNAPI)
    # grouped convs with fewer input channels per group written with at least this many, adjacent groups merged
    # block-diagonally: the same numbers, on kernels that may run faster (0: as the network has them)
    group_width: int = 0

    @property
    def written_group_width(self) -> float:
        """The least input channels per group of a written grouped conv (inf: plain convs)."""
        return self.group_width if self.group_conv else math.inf

    @property
    def int16(self) -> bool:
        """A 16x8 model (int8 weights, int16 activations)."""
        return self.int8 and self.activations == "int16"


def quiet_tensorflow():
    """Import TensorFlow with its start-up log lines off (see fad_deploy.native_logs) and
    oneDNN's reordered float arithmetic off, so constant folding gives the same bytes on
    every run."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    with quiet_native_logs():
        import tensorflow as tf
    return tf


def check_input_size(input_size: tuple[int, int], multiple: int) -> None:
    h, w = input_size
    if h <= 0 or w <= 0 or h % multiple or w % multiple:
        raise FadError(f"input size {h}x{w}: TFLite inputs must be positive multiples of {multiple} "
                       "(the network's padding multiple); larger frames are tiled")


def convert(tf, rebuild: TFRebuild, options: TFLiteOptions, input_range: tuple[float, float] | None = None,
            calibration: list[np.ndarray] | None = None, channels: int = IN_CHANNELS) -> bytes:
    """``input_range``: an int8 QAT graph's input grid; ``calibration``: (1, 4, h, w) inputs a
    16x8 conversion sets its ranges on; ``channels``: the input's (8 for a split int8 input)."""
    h, w = options.input_size

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, h, w, channels], tf.float32, name=INPUT_NAME)], autograph=False)
        def serve(self, x):
            return {OUTPUT_NAME: rebuild(tf, x)}

    module = Model()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    if options.int16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.float32 if options.float_io else tf.int16
        converter.representative_dataset = lambda: ([np.ascontiguousarray(u.transpose(0, 2, 3, 1))]
                                                    for u in calibration)
    elif options.int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.float32 if options.float_io else tf.int8
        converter.inference_input_type = converter.inference_output_type = io_type
        # TF 2.19 refuses full-integer conversion of a QAT graph without a representative
        # dataset (its QAT detection misses concrete functions); every tensor has a fake-quant
        # range, so these samples are not used for ranges (checked after conversion).
        lo, hi = input_range
        converter.representative_dataset = lambda: (
            [np.random.default_rng(i).uniform(lo, hi, (1, h, w, channels)).astype(np.float32)] for i in range(2))
    try:
        with quiet_native_logs():
            return bytes(converter.convert())
    except Exception as e:  # noqa: BLE001 - the converter raises many types; report one line
        raise FadError(f"TFLite conversion failed: {str(e).splitlines()[0][:300]}")


def io_details(model: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    def describe(d):
        scale, zp = d["quantization"]
        q = {"scale": float(scale), "zero_point": int(zp)} if d["dtype"] != np.float32 else None
        return {"name": str(d["name"]), "shape": [int(v) for v in d["shape"]], "layout": "NHWC",
                "dtype": np.dtype(d["dtype"]).name, "quantization": q}
    return {"input": describe(interpreter.get_input_details()[0]),
            "output": describe(interpreter.get_output_details()[0])}


class SharingBuilder(flatbuffers.Builder):
    """A flatbuffers Builder that writes each distinct int64 vector once and points every
    later copy at it (flatbuffers allow shared vectors). TFLite needs one int64 zero point
    per channel scale, and they are all 0 for symmetric per-channel weights and biases, so
    this saves 16 bytes per output channel (about 55 KB on the FAN) at no cost."""

    def __init__(self, initial_size: int):
        super().__init__(initial_size)
        self.int64_vectors = {}

    def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
        if x.dtype != np.int64:
            return super().CreateNumpyVector(x)
        key = x.tobytes()
        if key not in self.int64_vectors:
            self.int64_vectors[key] = super().CreateNumpyVector(x)
        return self.int64_vectors[key]


def share_zero_points(model: bytes) -> bytes:
    """The same model with its repeated zero-point vectors stored once (see SharingBuilder)."""
    from tensorflow.lite.python import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    builder = SharingBuilder(len(model))
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def size_breakdown(model: bytes) -> dict:
    """Where the bytes of a .tflite go: constant tensors by type, their quantization
    parameters (a float32 scale per channel, plus int64 zero points, each distinct vector
    stored once by share_zero_points), and the rest (graph, metadata)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    sizes = {"total": len(model), "constants": {}, "quantization_params": 0}
    zero_point_vectors = set()
    for t in interpreter.get_tensor_details():
        try:
            data = interpreter.get_tensor(t["index"])
        except ValueError:  # activations have no data before inference
            continue
        key = np.dtype(data.dtype).name
        sizes["constants"][key] = sizes["constants"].get(key, 0) + data.nbytes
        q = t["quantization_parameters"]
        sizes["quantization_params"] += 4 * len(q["scales"])
        zero_point_vectors.add(q["zero_points"].astype(np.int64).tobytes())
    sizes["quantization_params"] += sum(len(v) for v in zero_point_vectors)
    sizes["graph_and_metadata"] = len(model) - sum(sizes["constants"].values()) - sizes["quantization_params"]
    return sizes


def check_io_scales(details: dict, expected: dict) -> None:
    """int8 I/O must carry PyTorch's input/output scales: proof the QAT ranges were kept."""
    for key in ("input", "output"):
        got = details[key]["quantization"]
        want = expected[key]
        if got is None:
            continue
        if not np.isclose(got["scale"], want["scale"], rtol=SCALE_RTOL) or got["zero_point"] != want["zero_point"]:
            raise FadError(f"TFLite {key} quantization {got} differs from PyTorch's {want}: "
                           "the converter did not keep the QAT ranges")


def add_metadata(model: bytes, name: str, version: str, description: dict, ranges: dict | None) -> bytes:
    """tflite-support metadata: names, descriptions, int8 value ranges, version, preprocessing."""
    # The module path, not `import tflite_support`: the top-level package clashes with TF.
    from tensorflow_lite_support.metadata.python import metadata
    from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info, metadata_writer

    # Its in-memory populator removes its temporary model file in __del__, which raises where writing
    # that file failed (a full TMPDIR) before it was named: a stray traceback after our one-line error.
    # A name no file has makes __del__ do nothing there.
    metadata._MetadataPopulatorWithBuffer._model_file = ""

    def bounds(key):
        return ([ranges[key]["min"]], [ranges[key]["max"]]) if ranges else (None, None)

    general = metadata_info.GeneralMd(name=name, version=version, author="fad-deploy",
                                      description=json.dumps(description, sort_keys=True))
    inp = metadata_info.TensorMd(
        name=INPUT_NAME, min_values=bounds("input")[0], max_values=bounds("input")[1],
        description="Packed noisy RAW (1, h, w, 4) NHWC, planes R, Gr, Gb, B of an RGGB mosaic, normalised "
                    "(raw - black) / (white - black), then k-sigma mapped to the anchor noise level "
                    "(see the model description's preprocessing), and its square root where the description's "
                    "residual_base.input_grid.input_map is 'sqrt'; 8 channels where its split says the int8 input "
                    "is split (see its rule).")
    out = metadata_info.TensorMd(
        name=OUTPUT_NAME, min_values=bounds("output")[0], max_values=bounds("output")[1],
        description="Residual in the same anchor space: denoised = input + residual (in float; an int8 model "
                    "whose description's residual_base says so adds it to the dequantized int8 input instead); "
                    "then invert the k-sigma map and clip to [0, 1].")
    writer = metadata_writer.MetadataWriter.create_from_metadata_info(bytearray(model), general, [inp], [out])
    return bytes(writer.populate())


def written_conv_cost(net: nn.Module, input_size: tuple[int, int], group_width: float = math.inf) -> dict:
    """MACs and weights of the convs as the network has them vs. as :class:`TFRebuild` writes
    them: grouped convs with at least ``group_width`` input channels per group (block-diagonal;
    inf: plain convs), the readers of merged sibling convs over all their channels (zero weights
    off their own), narrow convs on 2x2 blocks of their output (zeros in a larger kernel)."""
    cost = {"macs_grouped": 0, "macs_written": 0, "weights_grouped": 0, "weights_written": 0}
    layout = written_layout(net)
    names = {id(m): name for name, m in net.named_modules()}

    def hook(mod: nn.Conv2d, _, out):
        per_pixel = mod.weight.numel()
        macs, weights = layout.conv_factors(names[id(mod)], mod, group_width)
        cost["macs_grouped"] += per_pixel * out.shape[-2] * out.shape[-1]
        cost["macs_written"] += round(per_pixel * macs) * out.shape[-2] * out.shape[-1]
        cost["weights_grouped"] += per_pixel
        cost["weights_written"] += round(per_pixel * weights)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        Core(net)(torch.zeros(1, 4, *input_size))
    for h in handles:
        h.remove()
    return cost


EXTREME_INPUTS = 2  # 16x8 calibration inputs of uniform noise over the input's whole range


def int16_calibration(ckpt: Checkpoint, size: tuple[int, int], gm) -> list[np.ndarray]:
    """What the 16x8 conversion of a quantized checkpoint (its fake-quant core ``gm``) calibrates
    its int16 ranges on: :func:`calibration_inputs` through the network's input map, and
    EXTREME_INPUTS of uniform noise over its learned input range, meant to take its activations
    to the ends of their clamps: values the training patches leave short of a clamp would
    otherwise saturate at the int16 range calibrated below it."""
    imap = input_map(ckpt)
    inputs = [network_input(u, imap).astype(np.float32) for u in calibration_inputs(ckpt, size)]
    top = grid(io_quantizers(gm)[0])["max"]
    return inputs + [np.random.default_rng(i).uniform(0, top, (1, IN_CHANNELS, *size)).astype(np.float32)
                     for i in range(EXTREME_INPUTS)]


@contextlib.contextmanager
def converter_temp_files(tf) -> Iterator[None]:
    """The converters' temporary files (TensorFlow's, the metadata writer's) in a folder of their
    own, removed afterwards, also where they fail; a temporary folder without room is one error."""
    with tempfile.TemporaryDirectory(prefix="fad-export-") as folder:
        before, tempfile.tempdir = tempfile.tempdir, folder
        try:
            yield
        except tf.errors.ResourceExhaustedError as e:
            if "No space left" not in str(e):
                raise
            raise FadError(f"{Path(folder).parent}: no room for the TFLite converter's temporary files; free some "
                           "or set TMPDIR to a folder with room") from None
        finally:
            tempfile.tempdir = before


def export_tflite(ckpt: Checkpoint, options: TFLiteOptions, version: str, description: dict) -> tuple[bytes, dict]:
    """The .tflite bytes (with metadata) and a description of its I/O for the manifest.

    int8 needs a quantized checkpoint (see :mod:`fad_deploy.quant.qat`); float32 exports the
    checkpoint's float weights. 16x8 exports a quantized checkpoint's network as
    :mod:`fad_deploy.quant.int16` describes it, or a float checkpoint's weights as they are
    (rounded by the converter), calibrated on :func:`int16_calibration` and
    :func:`calibration_inputs` respectively.
    """
    tf = quiet_tensorflow()
    expected = calibration = None
    int16 = options.int16
    clamps = int16 and is_quantized(ckpt)
    if clamps:
        require_residual(ckpt)
        gm, net = fake_quant_core(single_checkpoint(ckpt))
        calibration = int16_calibration(ckpt, options.input_size, gm)
    elif int16:
        net = ckpt.build()
        gm = trace_float(net, residual=True)
        calibration = calibration_inputs(ckpt, options.input_size)
    elif options.int8:
        require_residual(ckpt)
        gm, net = fake_quant_core(ckpt)
        fq_in, fq_out = io_quantizers(gm)
        expected = {"input": grid(fq_in), "output": grid(fq_out)}
    else:
        net = ckpt.build()
        gm = trace_float(net, residual=True)
    multiple = Core(net).multiple
    check_input_size(options.input_size, multiple)
    input_range = (expected["input"]["min"], expected["input"]["max"]) if expected else None
    rebuild = TFRebuild(gm, options.written_group_width, depth_to_space=not int16, multiple=multiple, clamps=clamps)
    with converter_temp_files(tf):
        model = convert(tf, rebuild, options, input_range,
                        calibration, input_channels(ckpt) if options.int8 and not int16 else IN_CHANNELS)
        details = io_details(model)
        if expected and not options.float_io:
            check_io_scales(details, expected)
        model = share_zero_points(add_metadata(model, ckpt.name, version, description, expected))
    info = {**details, "dynamic_hw": False, "group_conv": options.group_conv, "group_width": options.group_width,
            "size_breakdown": size_breakdown(model),
            # int16's pixel shuffles reshape to constant shapes: that file runs its export size only
            "resizable_to_multiples_of": None if int16 else multiple}
    if expected:
        info["int8_io_grid"] = expected
    return model, info
