"""LiteRT (TFLite) backend, float32 or full-integer int8, via ai-edge-litert.

The TFLite models are NHWC with a fixed input size (mobile delegates want static shapes):
``input_size`` is that size. Our exports of a multiple-of-16 size contain no
size-dependent ops, so the interpreter is resized for other multiples of the network's
padding multiple (16 for the FAN; the manifest records it; None for a file that runs its
export size only, as 16x8 exports); other sizes must be tiled. int8 / int16 I/O is
(de)quantized here with the model's own scale and zero point.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.noise import NoiseParams
from ..errors import FadError
from ..native_logs import quiet_native_logs
from .base import Runner, input_channels_of

RESIZABLE_MULTIPLE = 16  # a FAN of 5 levels needs no internal padding at multiples of 16


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TFLiteRunner(Runner):
    def __init__(self, path: str | Path, anchor: NoiseParams, threads: int | None = None, backend: str = "tflite",
                 multiple: int | None = RESIZABLE_MULTIPLE, residual: bool = False, base_grid: dict | None = None):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise FadError(f"{path}: TFLite model not found")
        self.path, self.anchor, self.backend, self.threads = path, anchor, backend, threads
        self.residual = residual  # the file outputs the residual (the manifest's "output")
        self.base_grid = base_grid  # its input grid (the manifest's "residual_base"; see Runner.base_grid)
        self.multiple = multiple  # the network's padding multiple: sizes it can be resized to
        try:
            with quiet_native_logs():  # the first allocation announces the XNNPACK delegate
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError for bad files
            raise FadError(f"{path}: not a loadable TFLite model ({str(e).splitlines()[0][:200]})")
        inp = self.interpreter.get_input_details()[0]
        self.channels = input_channels_of(base_grid)
        if len(inp["shape"]) != 4 or inp["shape"][3] != self.channels:
            raise FadError(f"{path}: expected an NHWC (1, h, w, {self.channels}) input, the model takes "
                           f"{list(inp['shape'])}")
        self.input_size = (int(inp["shape"][1]), int(inp["shape"][2]))
        self._shape = self.input_size

    def prepare(self, hw: tuple[int, int]) -> None:
        """Resize the interpreter for (h, w) inputs (multiples of the network's multiple)."""
        if hw == self._shape:
            return
        if self.multiple is None or any(v <= 0 or v % self.multiple for v in (*self.input_size, *hw)):
            sizes = f"multiples of {self.multiple}" if self.multiple else "that size"
            raise FadError(f"{self.path}: the model takes {self.input_size[0]}x{self.input_size[1]} inputs, "
                           f"got {hw[0]}x{hw[1]} (tile the image, or use {sizes})")
        idx = self.interpreter.get_input_details()[0]["index"]
        self.interpreter.resize_tensor_input(idx, [1, hw[0], hw[1], self.channels])
        self.interpreter.allocate_tensors()
        self._shape = hw

    def run_one(self, nhwc: np.ndarray) -> np.ndarray:
        """One (1, h, w, c) float32 input -> (1, h, w, 4) float32, (de)quantizing int8 I/O."""
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        x = nhwc
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            x = quantize(nhwc, scale, zp, inp["dtype"])
        self.interpreter.set_tensor(inp["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zp = out["quantization"]
            y = dequantize(y, scale, zp)
        return y

    def run_network(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float32)
        self.prepare(tuple(u.shape[-2:]))
        nhwc = np.ascontiguousarray(u.transpose(0, 2, 3, 1))
        outs = [self.run_one(nhwc[i : i + 1]) for i in range(len(nhwc))]
        return np.ascontiguousarray(np.concatenate(outs).transpose(0, 3, 1, 2))
