"""One interface for every backend (torch, onnx-fp32/int8, tflite-fp32/int8, adb):
"denoise this packed RAW" and "time this". Pre/post-processing lives in base.py only.

:func:`load_runner` opens a model on a backend: ``torch`` takes a checkpoint (shipped name
or path); the exported backends take an export folder (its manifest.json names the file
per backend and the anchor noise level) or a model file inside one.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FadError
from .base import Runner

BACKENDS = ("torch", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")


def load_runner(backend: str, model_or_export_dir: str | Path, threads: int | None = None,
                model: str | None = None) -> Runner:
    """A :class:`Runner` for ``backend``. ``model`` picks one model of a multi-model bundle."""
    if backend not in BACKENDS:
        raise FadError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if backend == "torch":
        return _torch_runner(model_or_export_dir, threads)
    from ..export.manifest import locate

    path, anchor = locate(model_or_export_dir, backend, model)
    if backend.startswith("onnx"):
        from .onnx_runner import OnnxRunner

        return OnnxRunner(path, anchor, threads, backend)
    from .tflite_runner import TFLiteRunner

    return TFLiteRunner(path, anchor, threads, backend)


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
