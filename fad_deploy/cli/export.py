"""fad-export: int8 QAT (or PTQ) and export to TFLite / ONNX, validated against PyTorch."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import FadError
from .common import user_errors

DEFAULT_MODEL = "fan-student"
TARGET_CHOICES = {"tflite": ("tflite",), "onnx": ("onnx",), "all": ("tflite", "onnx")}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fad-export",
        description="Quantize a trained denoiser to int8 (quantization-aware fine-tuning, or calibration only "
        "with --ptq) and export it: TFLite (float32 + full-integer int8 keeping the QAT ranges, NHWC, fixed "
        "input size) and/or ONNX (float32 + int8 QDQ, any input size). Every file is validated against "
        "PyTorch on seeded patches before the folder is written: export/<model>/ with manifest.json and "
        "report.md.",
        epilog="Re-running reuses the int8 checkpoint of the previous export (same source and settings), so "
        "the files come out byte-identical.")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                   help=f"shipped model name or checkpoint path (default: {DEFAULT_MODEL})")
    p.add_argument("--int8", action="store_true", help="also quantize and export int8 models (else float32 only)")
    p.add_argument("--target", default="tflite", help="tflite, onnx or all (default tflite)")
    p.add_argument("--out", type=Path, help="output folder (default export/<model>/)")
    p.add_argument("--ptq", action="store_true", help="post-training calibration instead of QAT (fast, lower quality)")
    p.add_argument("--float-io", action="store_true", help="int8 TFLite with float32 input/output")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="packed input size of the TFLite models (default 256 256; multiples of 16)")
    p.add_argument("--no-group-conv", action="store_true",
                   help="write grouped convs as plain convs (GPU/NNAPI delegates); the report gives the MAC/size cost")
    p.add_argument("--qat-steps", type=int, help="QAT fine-tuning steps (default 300)")
    p.add_argument("--max-drop", type=float, help="accepted int8 denoising PSNR drop in dB (default 0.15)")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch and the validation runtimes")
    return p


def options_from(args) -> "ExportOptions":  # noqa: F821 - imported lazily (TensorFlow is slow to import)
    from ..export.bundle import ExportOptions
    from ..export.tflite import DEFAULT_INPUT_SIZE, TFLiteOptions

    if args.target not in TARGET_CHOICES:
        raise FadError(f"unsupported target {args.target!r}: choose from {', '.join(TARGET_CHOICES)}")
    size = tuple(args.input_size) if args.input_size else DEFAULT_INPUT_SIZE
    options = ExportOptions(targets=TARGET_CHOICES[args.target], int8=args.int8,
                            ptq=args.ptq, tflite=TFLiteOptions(size, True, args.float_io, not args.no_group_conv),
                            threads=args.threads)
    if args.qat_steps is not None:
        if args.qat_steps < 1:
            raise FadError(f"--qat-steps {args.qat_steps}: must be at least 1")
        options = dataclasses.replace(options, qat=dataclasses.replace(options.qat, steps=args.qat_steps))
    if args.max_drop is not None:
        options = dataclasses.replace(options, thresholds=dataclasses.replace(options.thresholds,
                                                                             max_drop_db=args.max_drop))
    return options


def model_path(name: str) -> Path:
    from ..models.registry import models_dir, resolve_model

    if name == DEFAULT_MODEL and not (models_dir() / f"{DEFAULT_MODEL}.pt").is_file():
        raise FadError(f"the shipped model {models_dir() / (DEFAULT_MODEL + '.pt')} does not exist yet "
                       "(train it with benchmarks/train_all.sh, or name a checkpoint)")
    return resolve_model(name)


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    path = model_path(args.model)
    if (args.ptq or args.float_io) and not args.int8:
        raise FadError("--ptq and --float-io apply to int8 models: add --int8")
    options = options_from(args)
    from ..export.bundle import export_bundle
    from ..export.manifest import default_export_dir

    name = path.stem
    out = args.out or default_export_dir(name)
    manifest = export_bundle([(name, path)], options, out)
    sizes = ", ".join(f"{r['file']} {r['bytes'] / 1024:.1f} KB" for m in manifest["models"] for r in m["files"].values())
    print(f"exported to {out}: {sizes}")
