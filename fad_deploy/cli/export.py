"""fad-export: int8 QAT (or PTQ) and export to TFLite / ONNX, validated against PyTorch.

With no MODEL it exports the shipped noise sub-range array (models/nsma/manifest.json) as
one bundle, converting the int8 checkpoints shipped beside it (``--qat`` makes them again
from the float ones, each sub-range model on its own noise); without the array, the
full-range student. Exit status: 0 when every file passes validation, 1 when validation
refuses the export (parity, or an int8 PSNR drop above --max-drop / --max-level-drop), 2 on
user errors; nothing is written unless it is 0.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ..checks import (Number, given_options, non_empty, non_negative_float, non_negative_int, output_folder,
                      positive_int, require_apart, require_output, require_replaceable, thread_count)
from ..data.photos import SKIMAGE_PHOTOS
from ..data.synth import SUBRANGE_LEVELS, VALIDATION_CROP, VALIDATION_CROPS, VALIDATION_LEVELS, check_set_size
from ..errors import FadError
from ..export.thresholds import Thresholds
from ..quant.recipe import QATConfig
from .common import OneLineParser, device, require_device, user_errors

# grouped convs written with at least this many channels per group (TFLiteOptions.group_width): FAN's 4-channel
# groups run at a fraction of XNNPACK's MAC rate (benchmarks/group_width.py)
DEFAULT_GROUP_WIDTH = 16

SQRT_ADAPT_STEPS = 20000  # float steps adapting a network to the sqrt int8 input (int8_recipe.md's sqrt rows)

DEFAULT_MODEL = "fan-student"
ARRAY_BUNDLE = "fan-nsma"  # export/<this>/: the default export of the sub-range array
# validation crops a photo and level for 16x8 files: each 64x64 patch runs at the file's size (256x256 by default) on
# TFLite's reference int16 kernels (benchmarks/results/export_default-int16.md: the array's export, 7.7 min on 2 cores)
INT16_VALIDATION_CROPS = 2
MAX_INPUT_SIZE = 4096  # packed; a TFLite input this size already holds GBs of activations, and frames are tiled
TARGET_CHOICES = {"tflite": ("tflite",), "onnx": ("onnx",), "all": ("tflite", "onnx")}
EXIT_VALIDATION_FAILED = 1


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fad-export",
        description="Export a trained denoiser to TFLite (NHWC, fixed input size) and/or ONNX (any input size) "
        "in float32, and with --int8 also quantized (quantization-aware fine-tuning, or calibration only with "
        "--ptq): full-integer int8 TFLite keeping the QAT ranges, int8 QDQ ONNX. Every file is validated against "
        "PyTorch on seeded patches before the folder is written: export/<model>/ with manifest.json and "
        "report.md.",
        epilog="An int8 checkpoint shipped beside the float one (models/nsma/<name>.int8.pt) is converted as "
        "it is when made from the same source (each model's card gives the QAT recipe that made it); with "
        "--qat-steps it, or one left by a previous export, is reused only when made with those settings. "
        "The files then come out byte-identical; --qat makes the int8 checkpoints again (the default "
        "recipe).")
    p.add_argument("model", nargs="?", type=non_empty,
                   help="shipped model name or checkpoint path (default: the noise sub-range array in "
                        f"models/nsma/ as one bundle, export/{ARRAY_BUNDLE}/, else {DEFAULT_MODEL})")
    p.add_argument("--int8", action="store_true", help="also quantize and export int8 models (else float32 only)")
    p.add_argument("--target", default="tflite", choices=list(TARGET_CHOICES),
                   help="tflite, onnx or all (default tflite)")
    p.add_argument("--out", type=output_folder, help="output folder (default export/<model>/)")
    p.add_argument("--ptq", action="store_true", default=None,
                   help="post-training calibration instead of QAT (fast, lower quality)")
    p.add_argument("--activations", choices=("int8", "int16"),
                   help="activations of the quantized TFLite (with --int8): int8 (full-integer, from QAT; default) "
                        "or int16 (TFLite 16x8 for NPUs that run it, made from the same int8 QAT checkpoint: its "
                        "weights on their int8 grid, each activation clamped to the range QAT learned for it with "
                        "int16 inside; seconds per model from a shipped int8 checkpoint; written to "
                        "export/<model>-int16/ by default)")
    p.add_argument("--float-io", action="store_true", default=None, help="int8 TFLite with float32 input/output")
    p.add_argument("--input-size", type=Number(int, 1, MAX_INPUT_SIZE), nargs=2, metavar=("H", "W"),
                   help=f"packed input size of the TFLite models (default 256 256; multiples of 16 above twice "
                        f"the network's receptive-field margin, at least 80 for FAN, and at most {MAX_INPUT_SIZE}: "
                        "larger frames are tiled)")
    p.add_argument("--no-group-conv", action="store_true", default=None,
                   help="write grouped convs as plain convs (GPU/NNAPI delegates); the report gives the MAC/size cost")
    p.add_argument("--group-width", type=non_negative_int, metavar="N",
                   help=f"write grouped convs with fewer than N channels per group with at least N, adjacent groups "
                        f"merged block-diagonally: the same numbers on kernels that run faster (default "
                        f"{DEFAULT_GROUP_WIDTH}, the fastest measured for XNNPACK; more conv weights, all zeros: "
                        f"benchmarks/results/group_width.md); 0: as the network has them")
    p.add_argument("--qat", action="store_true", default=None,
                   help="run quantization-aware training again from the float checkpoints (hours per model on "
                        "a CPU at the default steps, one model per core; resumes after an interruption) instead "
                        "of converting the shipped int8 checkpoints")
    p.add_argument("--qat-steps", type=positive_int, help=f"QAT fine-tuning steps (default {QATConfig().steps})")
    p.add_argument("--qat-input", choices=("linear", "sqrt"),
                   help="the int8 input QAT trains: linear (default: u itself) or sqrt (sqrt(max(u, 0)), one int8 "
                        "step as fine against the shot noise in the shadows as in the highlights; the network "
                        "first adapts to it for --qat-adapt-steps float steps; benchmarks/results/int8_recipe.md)")
    p.add_argument("--qat-adapt-steps", type=positive_int,
                   help=f"float steps before QAT that adapt the network to --qat-input sqrt (default "
                        f"{SQRT_ADAPT_STEPS})")
    p.add_argument("--qat-input-split", type=non_negative_int, metavar="K",
                   help=f"the int8 input after QAT: the input rounded down plus K times its remainder, 8 channels "
                        f"of one int8 tensor, so the network sees it to 1/K of an int8 step with every op int8, on "
                        f"the learned grid widened to cover 99.9%% of the QAT's inputs "
                        f"(default {QATConfig().input_split}; 0: one 4-channel int8 input, up to 0.1 dB lower; "
                        f"otherwise at least 2, lowered where the grid has less room above its zero point, the card "
                        f"keeping the K asked for; not with --ptq or --activations int16; "
                        f"benchmarks/results/int8_split_input.md)")
    p.add_argument("--device", type=device, default="cpu",
                   help="where --qat trains: cpu (default), cuda or cuda:N (the networks; batches, conversion "
                        "and validation stay on the CPU)")
    p.add_argument("--max-drop", type=non_negative_float,
                   help=f"accepted int8 denoising PSNR drop in dB, mean over the noise levels (default "
                        f"{Thresholds().max_drop_db}); above it nothing is written and fad-export exits with status 1")
    p.add_argument("--max-level-drop", type=non_negative_float,
                   help=f"the same at any one noise level (default {Thresholds().max_level_drop_db})")
    p.add_argument("--val-crops", type=positive_int, metavar="N",
                   help=f"crops of each validation photo at each noise level (default {VALIDATION_CROPS}: 40 patches a "
                        "level, a level's int8 drop to a standard error of 0.01-0.05 dB; fewer validate sooner and "
                        f"less surely; {INT16_VALIDATION_CROPS} with --activations int16, whose files run each patch "
                        "at their own size on TFLite's reference int16 kernels)")
    p.add_argument("--threads", type=thread_count,
                   help="CPU threads for PyTorch and the validation runtimes (for each QAT process, see --jobs)")
    p.add_argument("--jobs", type=positive_int,
                   help="QATs of an array's models run side by side, one process each (default: the CPU cores "
                        "over --threads: a QAT step is too small to keep several cores busy, so one-thread QATs "
                        "side by side finish sooner; benchmarks/results/qat_jobs.md)")
    return p


def options_from(args) -> "ExportOptions":  # noqa: F821 - imported lazily (TF)
    from ..export.bundle import ExportOptions
    from ..export.tflite import DEFAULT_INPUT_SIZE, TFLiteOptions

    size = tuple(args.input_size) if args.input_size else DEFAULT_INPUT_SIZE
    options = ExportOptions(targets=TARGET_CHOICES[args.target], int8=args.int8, ptq=args.ptq,
                            tflite=TFLiteOptions(size, int8=True, float_io=args.float_io, group_conv=not args.no_group_conv,
                                                group_width=DEFAULT_GROUP_WIDTH if args.group_width is None
                                                else args.group_width,
                                                activations=args.activations),
                            threads=args.threads, requantize=args.qat,
                            shipped_recipe=not (args.qat or args.ptq or args.qat_steps or args.qat_input
                                                or args.qat_input_split is not None),
                            jobs=args.jobs or max(1, len(os.sched_getaffinity(0)) // (args.threads or 1)),
                            device=args.device, validation_crops=args.val_crops or (
                                INT16_VALIDATION_CROPS if args.activations == "int16" else VALIDATION_CROPS))
    qat = {k: v for k, v in (("steps", args.qat_steps), ("input_map", args.qat_input),
                             ("input_split", args.qat_input_split)) if v is not None}
    if args.qat_input == "sqrt":
        qat["adapt_steps"] = args.qat_adapt_steps or SQRT_ADAPT_STEPS
    options = dataclasses.replace(options, qat=dataclasses.replace(options.qat, **qat))
    bounds = {k: v for k, v in (("max_drop_db", args.max_drop), ("max_level_drop_db", args.max_level_drop))
              if v is not None}
    return dataclasses.replace(options, thresholds=dataclasses.replace(options.thresholds, **bounds))


def model_path(name: str) -> Path:
    from ..models.registry import models_dir, resolve_model

    if name == DEFAULT_MODEL and not (models_dir() / f"{DEFAULT_MODEL}.pt").is_file():
        raise FadError(f"the shipped model {models_dir() / (DEFAULT_MODEL + '.pt')} does not exist yet "
                       "(train it with benchmarks/train_all.sh, or name a checkpoint)")
    return resolve_model(name)


def array_manifest() -> Path | None:
    """models/nsma/manifest.json when the sub-range array is shipped."""
    from ..models.registry import models_dir
    from ..nsma.array import ARRAY_FOLDER, MANIFEST

    path = models_dir() / ARRAY_FOLDER / MANIFEST
    return path if path.is_file() else None


def exported_backends(options) -> list[str]:
    """The model files an export with ``options`` writes (PyTorch's int8 checkpoint aside)."""
    quantized = {"tflite": f"tflite-{options.tflite.activations}", "onnx": "onnx-int8"}
    return [b for t in options.targets for b in (f"{t}-fp32",) + ((quantized[t],) if options.int8 else ())]


def array_extra(table: dict, backends: list[str]) -> dict:
    """The bundle manifest's selection data: the sub-range table with each model's file
    (the quantized TFLite where exported), read by fad_deploy.nsma and the phone."""
    from ..export.manifest import FILE_PREFERENCE, FILE_SUFFIX
    from ..nsma.select import TABLE_KEY

    exported = [b for b in FILE_PREFERENCE if b in backends]
    return {"selection_rule": table["selection_rule"], "shot_range": table["shot_range"],
            TABLE_KEY: [{"name": m["name"], "file": f"{m['name']}{FILE_SUFFIX[exported[0]]}",
                         "shot_min": m["shot_min"], "shot_max": m["shot_max"]} for m in table["models"]]}


def summary(manifest: dict, out: Path, quantize_s: dict[str, float]) -> str:
    from ..export.validate import QUANTIZED_TFLITE

    lines = [f"exported to {out}:"]
    total = 0
    for m in manifest["models"]:
        total += sum(r["bytes"] for b, r in m["files"].items() if b in QUANTIZED_TFLITE)
        made = f" (int8 made in {quantize_s[m['name']]:.0f} s)" if m["name"] in quantize_s else ""
        lines.append(f"  {m['name']}: " + ", ".join(f"{r['file']} {r['bytes'] / 1024:.1f} KB"
                                                  for r in m["files"].values()) + made)
    if len(manifest["models"]) > 1 and total:
        lines.append(f"  quantized TFLite total: {total / 1024:.1f} KB for {len(manifest['models'])} models")
    return "\n".join(lines)


# what only a quantized export uses (their defaults are None: given_options sees which were given)
INT8_OPTIONS = ("ptq", "activations", "float_io", "qat", "qat_steps", "qat_input", "qat_adapt_steps",
                "qat_input_split", "max_drop", "max_level_drop", "jobs")
TFLITE_OPTIONS = ("float_io", "input_size", "no_group_conv", "group_width")  # how the TFLite files are written
QAT_OPTIONS = ("qat_steps", "qat_input", "qat_adapt_steps", "qat_input_split")


@user_errors
def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    int8_only = given_options(p, args, INT8_OPTIONS)
    if int8_only and not args.int8:
        raise FadError(f"{', '.join(int8_only)}: for quantized models: add --int8")
    tflite_only = given_options(p, args, TFLITE_OPTIONS)
    if tflite_only and args.target == "onnx":
        raise FadError(f"{', '.join(tflite_only)}: for the TFLite files (ONNX models take any input size, float "
                       "input and output, and their grouped convs as they are): add --target tflite or all, or drop "
                       + ("it" if len(tflite_only) == 1 else "them"))
    args.ptq, args.float_io, args.qat = bool(args.ptq), bool(args.float_io), bool(args.qat)
    args.activations = args.activations or "int8"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.device != "cpu" and not args.qat:
        raise FadError(f"--device {args.device} is where --qat trains: add --qat (conversion runs on the CPU)")
    require_device(args.device)
    split = args.qat_input_split is not None
    if split and (args.ptq or args.activations != "int8"):
        raise FadError("--qat-input-split is the int8 file's input (a 16x8 file takes one int16 input): it takes "
                       "neither --ptq nor --activations int16")
    if args.no_group_conv and args.group_width is not None:
        raise FadError("--no-group-conv writes every grouped conv as a plain conv: it takes no --group-width")
    if args.qat_input_split == 1:
        raise FadError("--qat-input-split: 1 splits nothing; give 0 (one int8 input) or at least 2")
    if args.qat_adapt_steps and args.qat_input != "sqrt":
        raise FadError("--qat-adapt-steps adapts the network to --qat-input sqrt: add it")
    if args.qat and args.ptq:
        raise FadError("--qat and --ptq are two ways to quantize: give one")
    qat_only = given_options(p, args, QAT_OPTIONS)
    if qat_only and args.ptq:
        raise FadError(f"{', '.join(qat_only)}: for int8 QAT, which --ptq replaces by calibration: drop one")
    if args.val_crops:  # before minutes of QAT
        check_set_size(len(SKIMAGE_PHOTOS), VALIDATION_CROP, args.val_crops, max(VALIDATION_LEVELS, SUBRANGE_LEVELS))
    if args.activations == "int16" and (args.target != "tflite" or args.ptq):
        raise FadError("--activations int16 makes a TFLite 16x8 model from the int8 QAT: it takes --target tflite, "
                       "and not --ptq")
    if args.activations == "int16" and args.input_size and min(args.input_size) < VALIDATION_CROP:
        raise FadError(f"int16 models run their input size only: --input-size {args.input_size[0]}x"
                       f"{args.input_size[1]} must be at least the {VALIDATION_CROP}x{VALIDATION_CROP} "
                       "validation patches")
    from ..export.manifest import INT16_FOLDER_SUFFIX, default_export_dir

    suffix = INT16_FOLDER_SUFFIX if args.activations == "int16" else ""  # beside, not over, the int8 bundle

    array = array_manifest() if args.model is None else None
    if array is not None:
        from ..nsma.manifest import nsma_bundle_table

        table = nsma_bundle_table(array)
        options = options_from(args)
        models = [(m["name"], Path(m["checkpoint"])) for m in table["models"]]
        out = args.out or require_output(default_export_dir(ARRAY_BUNDLE + suffix), "folder", "default output folder")
        extra = array_extra(table, exported_backends(options))
    else:
        if args.jobs and args.jobs > 1:
            raise FadError(f"--jobs {args.jobs} runs the QATs of an array's models side by side: one model has one "
                           "QAT")
        path = model_path(args.model or DEFAULT_MODEL)
        options = options_from(args)
        out = args.out or require_output(default_export_dir(path.stem + suffix), "folder", "default output folder")
        models, extra = [(path.stem, path)], None
    require_apart(out, [path for _, path in models], "--out" if args.out else "default output folder")
    require_replaceable(out, "--out" if args.out else "default output folder")
    if array is not None:
        print(f"exporting the noise sub-range array {array.parent} ({len(models)} models) as one bundle", file=sys.stderr)
    from ..export.bundle import ExportRefused, export_bundle

    try:
        manifest, quantize_s = export_bundle(models, options, out, extra)
    except ExportRefused as e:
        print(f"fad-export: {e} (--max-drop / --max-level-drop accept a larger int8 PSNR drop)", file=sys.stderr)
        sys.exit(EXIT_VALIDATION_FAILED)
    print(summary(manifest, out, quantize_s))
