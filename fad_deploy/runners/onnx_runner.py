"""onnxruntime backend (float32 or int8 QDQ ONNX). Our ONNX exports take any h, w
(the network pads internally); a model with a static input shape sets ``input_size``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.noise import NoiseParams
from ..errors import FadError
from .base import Runner, input_channels_of

# Keys under which fad-export stores the anchor noise level in the ONNX metadata_props.
ANCHOR_SHOT_KEY, ANCHOR_READ_KEY = "fad.anchor_shot", "fad.anchor_read"


def onnx_anchor(session) -> NoiseParams | None:
    """The anchor stored in the model's metadata by fad-export, if any."""
    meta = session.get_modelmeta().custom_metadata_map
    if ANCHOR_SHOT_KEY in meta and ANCHOR_READ_KEY in meta:
        return NoiseParams(float(meta[ANCHOR_SHOT_KEY]), float(meta[ANCHOR_READ_KEY]))
    return None


class OnnxRunner(Runner):
    def __init__(self, path: str | Path, anchor: NoiseParams | None = None, threads: int | None = None,
                 backend: str = "onnx", residual: bool = False, base_grid: dict | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FadError(f"{path}: ONNX model not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            raise FadError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})")
        self.path, self.backend, self.residual, self.base_grid = path, backend, residual, base_grid
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != input_channels_of(base_grid):
            raise FadError(f"{path}: expected an (N, {input_channels_of(base_grid)}, h, w) input, the model takes "
                           f"{inp.shape}")
        self.input_name = inp.name
        n, _, h, w = inp.shape
        self.fixed_batch = n if isinstance(n, int) else None
        self.input_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.anchor = anchor or onnx_anchor(self.session)
        if self.anchor is None:
            raise FadError(f"{path}: no anchor noise level in the model metadata; pass the export manifest")

    def run_network(self, u: np.ndarray) -> np.ndarray:
        u = np.ascontiguousarray(u, dtype=np.float32)
        if self.input_size is not None and tuple(u.shape[-2:]) != self.input_size:
            raise FadError(f"{self.path}: the model takes {self.input_size[0]}x{self.input_size[1]} inputs, "
                           f"got {u.shape[-2]}x{u.shape[-1]} (tile the image)")
        step = self.fixed_batch or len(u)
        outs = [self.session.run(None, {self.input_name: u[i : i + step]})[0] for i in range(0, len(u), step)]
        return np.concatenate(outs)
