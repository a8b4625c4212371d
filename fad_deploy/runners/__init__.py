"""One interface for every backend (torch, onnx-fp32/int8, tflite-fp32/int8/int16, adb):
"denoise this packed RAW" and "time this". Pre/post-processing lives in base.py only.

:func:`load_runner` opens a model on a backend: ``torch`` takes a checkpoint (shipped name
or path; a quantized checkpoint runs its fake-quant network); the exported backends take
an export folder (its manifest.json names the file per backend and the anchor noise
level), a model file inside one, or a checkpoint whose default export folder
(export/<name>/) exists.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FadError
from .base import Runner

BACKENDS = ("torch", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "tflite-int16")
# Short backend names (fad-denoise's --backend): tflite means the shipped int8 model.
BACKEND_ALIASES = {"tflite": "tflite-int8", "onnx": "onnx-fp32"}


def load_runner(backend: str, model_or_export_dir: str | Path, threads: int | None = None,
                model: str | None = None, input_size: tuple[int, int] | None = None) -> Runner:
    """A :class:`Runner` for ``backend``. ``model`` picks one network of a multi-model bundle;
    ``input_size`` (packed h, w) prepares a fixed-size backend for that size up front."""
    if backend not in BACKENDS:
        raise FadError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if backend == "torch":
        return _torch_runner(model_or_export_dir, threads)
    from ..export.manifest import entry_anchor, entry_base_grid, entry_outputs_residual, locate_file

    path, entry, record = locate_file(model_or_export_dir, backend, model)
    residual, base_grid = entry_outputs_residual(entry), entry_base_grid(entry, backend)
    if backend.startswith("onnx"):
        from .onnx_runner import OnnxRunner

        return OnnxRunner(path, entry_anchor(entry), threads, backend, residual, base_grid)
    from .tflite_runner import RESIZABLE_MULTIPLE, TFLiteRunner

    runner = TFLiteRunner(path, entry_anchor(entry), threads, backend,
                          record.get("resizable_to_multiples_of", RESIZABLE_MULTIPLE), residual, base_grid)
    if input_size is not None:
        runner.prepare(tuple(int(v) for v in input_size))
    return runner


def _torch_runner(name_or_path, threads: int | None) -> Runner:
    import torch

    from ..models.registry import load_checkpoint, resolve_model
    from .torch_runner import TorchRunner

    if threads:
        torch.set_num_threads(threads)
    checkpoint = load_checkpoint(resolve_model(str(name_or_path)))
    if checkpoint.extra.get("quantization"):
        from ..quant.qat import FakeQuantRunner

        return FakeQuantRunner(checkpoint)
    return TorchRunner(checkpoint)
