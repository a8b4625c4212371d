"""fad-denoise: denoise RAW files with the noise-subrange model array."""
from __future__ import annotations

import argparse

from ..checks import input_file, input_path, non_empty, output_path, positive_float, read_noise, shot_noise
from ..data.bayer import CFA_PATTERNS
from ..errors import FadError
from ..runners import BACKEND_ALIASES, BACKENDS
from .common import OneLineParser, user_errors


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fad-denoise",
        description="Denoise a DNG (or another RAW file rawpy reads, or a SIDD/DND .mat), a `fad-data synth` "
        ".npz set, or a folder of them. For each image the noise level a comes from --shot-noise, else "
        "--iso with --camera, else the file's noise profile, else an estimate from the image itself; it picks "
        "the model of the array trained for that sub-range of a and says which and why (below the array's range "
        "it runs the first model at the range's floor and keeps part of its change; above it, at a). Writes the "
        "denoised RAW (<name>-denoised.dng, keeping the source's orientation, camera names and crop, or .npz for "
        "sets) and an RGB preview (<name>-denoised.png, shown upright; with --out FILE: FILE and FILE's name "
        "with .png). Frames of any "
        "size run on every backend: odd RAW sizes are padded by one same-colour row/column (dropped again on "
        "output) and large frames are denoised in overlapping tiles whose result equals one whole-frame run.",
    )
    p.add_argument("input", type=input_path, help="RAW file, .npz set, or folder of them (a folder's hidden files "
                   "and earlier outputs, <name>-denoised.*, are skipped)")
    p.add_argument("--out", type=output_path, help="output folder, or for one input the output .dng/.npz file "
                   "(default: beside the input; for a folder, its subfolder 'denoised')")
    p.add_argument("--model-bundle", metavar="DIR", type=non_empty,
                   help="model array folder (manifest.json with a sub-range table), one exported model's folder "
                   "(fad-export MODEL) or one checkpoint (default: "
                   "the exported array in export/, else models/nsma/, else models/fan-student.pt)")
    p.add_argument("--backend", choices=[*BACKEND_ALIASES, *BACKENDS],
                   help="tflite (= tflite-int8), onnx (= onnx-fp32), torch, or a full backend name "
                   "(default: the file an exported bundle's sub-range table names, tflite-int8, or tflite-int16 "
                   "in a 16x8 bundle; torch for checkpoints)")
    p.add_argument("--shot-noise", type=shot_noise, metavar="A", help="shot-noise parameter a (variance = a x + b)")
    p.add_argument("--read-noise", type=read_noise, metavar="B", help="read-noise parameter b (default: UPI's "
                   "regression on a); needs --shot-noise")
    p.add_argument("--iso", type=positive_float, help="ISO, with --camera: noise level from the camera's noise profile")
    p.add_argument("--camera", help="camera noise profile name (fad_deploy/data/camera_profiles.json, or "
                   "--camera-profiles)")
    p.add_argument("--camera-profiles", metavar="JSON", type=input_file, help="your own noise profiles for --camera, "
                   "in camera_profiles.json's format (default: the shipped ones)")
    p.add_argument("--cfa", type=str.upper, choices=CFA_PATTERNS,
                   help="CFA pattern of .mat files that do not record one (any case)")
    return p


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    if args.shot_noise is not None and (args.iso is not None or args.camera is not None):
        raise FadError("--shot-noise and --iso/--camera are two ways to give the noise level: give one")
    if args.camera_profiles and args.camera is None:
        raise FadError("--camera-profiles holds the profiles --camera names: add --camera NAME (with --iso)")
    from ..data.noise import load_profiles

    profiles = load_profiles(args.camera_profiles) if args.camera_profiles else None  # a bad file: before any work
    from ..nsma.array import load_array  # torch: not needed for --help
    from ..nsma.pipeline import NoiseSettings, denoise_path, list_inputs

    list_inputs(args.input)  # a wrong input path is the likelier mistake: report it first
    array = load_array(args.model_bundle, args.backend)
    settings = NoiseSettings(args.shot_noise, args.read_noise, args.iso, args.camera, profiles)
    denoise_path(args.input, array, args.out, settings, args.cfa)
