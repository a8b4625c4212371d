"""Every CLI checks its arguments and output paths before any work: a wrong number, a
missing input, an output that cannot be written or that is an input gives one line naming
the argument or file, exit code 2, and nothing written."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fad_deploy.checks import Number, check_output, output_file, output_path
from fad_deploy.cli import bench, data, denoise, eval as eval_cli, export, train
from fad_deploy.data.patch_cache import CacheConfig, build_patch_cache
from fad_deploy.data.photos import skimage_photo
from fad_deploy.data.synth import PAIR_KEYS, save_pairs, synth_pairs
from fad_deploy.fileio import load_npz
from fad_deploy.models.registry import Checkpoint, build, model_config, models_dir
from fad_deploy.nsma.pipeline import output_paths

READ_ONLY = "/proc"  # no files can be created there, not even by root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs every check may name: photos, a set, sets that are empty, truncated, of small
    frames or with wrong arrays, a patch cache, a tiny checkpoint, a plain file, fad-eval
    results, a folder named like a plot."""
    root = tmp_path_factory.mktemp("inputs")
    photos = root / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray((skimage_photo(name) * 255).astype(np.uint8)).resize((64, 48)).save(photos / f"{name}.png")
    images = [(p.name, np.asarray(Image.open(p), np.float32) / 255) for p in sorted(photos.iterdir())]
    pairs = synth_pairs(images, 16, 1, [2e-3], 0)
    save_pairs(root / "set.npz", pairs)
    save_pairs(root / "empty.npz", {k: np.zeros((0, 4, 8, 8) if k in ("noisy", "clean") else (0,), np.float32)
                                    for k in PAIR_KEYS})
    (root / "truncated.npz").write_bytes((root / "set.npz").read_bytes()[:1000])
    save_pairs(root / "small.npz", synth_pairs(images, 8, 1, [2e-3], 0))
    save_pairs(root / "short-shot.npz", {**pairs, "shot": pairs["shot"][:1]})
    save_pairs(root / "zero-shot.npz", {**pairs, "shot": 0 * pairs["shot"]})
    save_pairs(root / "cam2rgb.npz", {**pairs, "cam2rgb": pairs["cam2rgb"][:, :2]})
    (root / "quality.json").write_text('{"results": [{"model": "tiny", "backend": "torch", "raw_psnr": 40.0}]}')
    (root / "other-quality.json").write_text('{"results": [{"model": "other", "backend": "torch", "raw_psnr": 40.0}]}')
    (root / "plot.png").mkdir()
    build_patch_cache(sorted(photos.iterdir()), root / "cache.npz",
                      CacheConfig(patch=20, patches_per_photo=2, downscale=1, max_side=None))
    net = build("fan", {"widths": [8, 8, 16], "expansions": [1, 1, 1]})
    Checkpoint("tiny", "fan", model_config(net), net.state_dict()).save(root / "tiny.pt")
    (root / "copy").mkdir()
    Checkpoint("tiny", "fan", model_config(net), net.state_dict()).save(root / "copy" / "tiny.pt")
    (root / "afile").write_text("not a folder")
    (root / "blocked").mkdir()
    save_pairs(root / "blocked" / "set.npz", pairs)
    (root / "blocked" / "denoised").write_text("a file where the outputs' folder goes")
    (root / "pipes").mkdir()
    os.mkfifo(root / "pipes" / "set.npz")  # (`--set <(...)`): reading it would wait for a writer
    return root


# (CLI, arguments (split at spaces, or a list) with {in} for the inputs folder and {out} for
#  an empty output folder, text the error line must hold)
CASES = [
    # fad-data
    (data, "synth --images {in}/photos --out {out}/s.npz --crop 0",
     "argument --crop: expected a whole number >= 11, got '0'"),
    (data, "synth --images {in}/photos --out {out}/s.npz --crops-per-image -2", "argument --crops-per-image"),
    (data, "synth --images {in}/photos --out {out}/s.npz --levels 0", "argument --levels"),
    (data, "synth --images {in}/photos --out {out}/s.npz --seed -1",
     "argument --seed: expected a whole number in [0, "),
    (data, "synth --images {in}/photos --out {out}/s.npz --shot-noise nan",
     "argument --shot-noise: expected a finite number in (0, 0.1], got 'nan'"),
    (data, "synth --images {in}/photos --out {out}/s.npz --shot-noise inf", "argument --shot-noise"),
    (data, "synth --images {in}/photos --out {out}/s.npz --shot-noise 1",  # (its noisy values would not pass as RAW)
     "argument --shot-noise: expected a finite number in (0, 0.1], got '1'"),
    (data, "synth --images {in}/photos --out {out}/s.npz --read-noise -1e-5", "argument --read-noise"),
    (data, "synth --images {in}/photos --out {out}/s.npz --downscale 0", "argument --downscale"),
    (data, "synth --images {in}/photos --out {out}/s.npz --max-side 1.5", "argument --max-side"),
    (data, "synth --images {in}/nowhere --out {out}/s.npz", "argument --images: {in}/nowhere: no such folder"),
    (data, "synth --images {in}/afile --out {out}/s.npz", "argument --images: {in}/afile: is a file, not a folder"),
    (data, "synth --images {in}/photos --out {in}/afile/s.npz",
     "argument --out: {in}/afile/s.npz: {in}/afile is a file, not a folder"),
    (data, "synth --images {in}/photos --out {in}/afile/deeper/s.npz", "{in}/afile is a file, not a folder"),
    (data, "synth --images {in}/photos --out " + READ_ONLY + "/s.npz",
     "argument --out: /proc/s.npz: cannot write in /proc (no files can be made there)"),
    (data, "synth --images {in}/photos --out {out}", "argument --out: {out}: is a folder"),
    (data, "synth --images {in}/photos --out {in}/photos/chelsea.png", "argument --out: {in}/photos/chelsea.png: "
     "expected a .npz file"),
    (data, "synth --images {in}/photos --out {out}/s.npz --crop 12 --levels 1000000000000", "a set of "
     "8000000000000 pairs of 4x12x12 (2 photos x 4 crops x 1000000000000 noise levels) would take"),
    (data, "synth --images {in}/photos --out {out}/s.npz --levels 1000000000000",  # (told before the levels' memory)
     "no photo is large enough for the 256x256 photo pixels of a packed 128x128 crop (sizes height x width, after any "
     "downscaling): chelsea.png (24x32), coffee.png"),
    (data, "synth --images {in}/photos --out {out}/s.npz --shot-noise 1e-3 --levels 6",
     "fad-data: error: --levels spreads the shot noise over levels, --shot-noise fixes one level: give one of them"),
    (data, "cache --images {in}/photos --out {out}/c.npz --patch 0", "argument --patch"),
    (data, "cache --images {in}/photos --out {out}/c.npz --patches-per-photo 1000000000000", "a cache of 2000000000000 "
     "patches of 4x72x72 (2 photos x 1000000000000) would take"),
    (data, "cache --images {in}/photos --out {out}/c.npz --patches-per-photo 0", "argument --patches-per-photo"),
    (data, "cache --images {in}/photos --out {out}/c.npz --seed 1e3", "argument --seed"),
    (data, "cache --images {in}/photos --out " + READ_ONLY + "/x/c.npz", "cannot write in /proc"),
    (data, "info {in}/missing.dng", "argument file: {in}/missing.dng: no such file"),
    (data, "info {in}/photos", "argument file: {in}/photos: is a folder, not a file"),
    (data, "info {in}/set.npz --cfa GRBG", "--cfa GRBG: for RAW files that record no pattern (.mat), not an .npz"),
    (data, "fetch --dest {in}/afile", "argument --dest: {in}/afile: is a file, not a folder"),
    (data, "fetch --dest " + READ_ONLY + "/photos", "argument --dest: /proc/photos: cannot write in /proc"),
    # fad-train: flags, then the config's typed settings, then the run's folder and data
    (train, "charbonnier --threads 0", "argument --threads"),
    (train, "charbonnier --threads 100000", "argument --threads: expected a whole number in [1, 1024], got '100000'"),
    (train, "charbonnier --workers -1", "argument --workers: expected a whole number >= 0, got '-1'"),
    (train, "charbonnier --until 0", "argument --until"),
    (train, "charbonnier --device gpu", "argument --device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (train, "charbonnier --ship {in}/afile/x.pt", "argument --ship: {in}/afile/x.pt: {in}/afile is a file"),
    (train, "charbonnier --ship " + READ_ONLY + "/x.pt", "argument --ship: /proc/x.pt: cannot write in /proc"),
    (train, "charbonnier data.batch=0", "setting data.batch: expected a whole number >= 1, got 0"),
    (train, "charbonnier data.crop=-8", "setting data.crop: expected a whole number >= 1, got -8"),
    (train, "charbonnier schedule.steps=0", "setting schedule.steps"),
    (train, "charbonnier schedule.lr=.nan", "setting schedule.lr: expected a finite number > 0, got nan"),
    (train, "charbonnier schedule.lr=-1e-3", "setting schedule.lr"),
    (train, "charbonnier schedule.warmup=-1", "setting schedule.warmup"),
    (train, "charbonnier schedule.val_every=0", "setting schedule.val_every"),
    (train, "charbonnier loss.distillation=-1", "setting loss.distillation"),
    (train, "charbonnier data.anchor_shot=0", "setting data.anchor_shot"),
    (train, "charbonnier data.shot_range=[1e-3,.inf]",
     "setting data.shot_range: expected [low, high] with 0 < low < high"),
    (train, "charbonnier seed=-1", "setting seed"),
    (train, "charbonnier name=../elsewhere", "setting name: expected one folder name (the run goes to runs/<name>"),
    (train, "charbonnier out={out}/run model.config.group_width=0",
     "model.config {'group_width': 0}: no working 'fan' network with it (ZeroDivisionError"),
    (train, "charbonnier out={out}/run model.config.hidden=9",
     "model.config {'hidden': 9}: no working 'fan' network with it (ValueError: in_channels must be divisible"),
    (train, "charbonnier out={out}/run model.config.widths=[-4,8,16]", "no working 'fan' network with it"),
    (train, "charbonnier out={in}/afile/run", "run folder (out=): {in}/afile/run: {in}/afile is a file, not a folder"),
    (train, "charbonnier --half", "--half stores --ship's weights in fp16: add --ship PATH"),
    (train, "charbonnier out={out}/run data.cache={in}/cache.npz data.crop=16 --ship {out}/run/last.pt",
     "argument --ship: {out}/run/last.pt is the run's own last.pt (its resume state or model)"),
    (train, "charbonnier out={out}/run data.cache={in}/cache.npz --ship {in}/cache.npz",
     "argument --ship: {in}/cache.npz: expected a .pt file"),
    (train, "charbonnier out={out}/run model.init={in}/tiny.pt --ship {in}/tiny.pt",
     "argument --ship: {in}/tiny.pt is also an input (model.init)"),
    (train, "charbonnier out={out}/run data.cache={in}/cache.npz data.crop=8",
     "data.crop 8: network 'fan' needs crops of at least 16"),
    (train, "charbonnier out={out}/run data.cache={in}/cache.npz data.crop=32",
     "data.crop 32: patches of 20x20 allow crops up to 19"),
    (train, "charbonnier out={out}/run data.batch=100000000",  # (before the process grows to it)
     "training on batches of 100000000 crops of 64x64 (data.batch, data.crop) would take"),
    (train, "charbonnier out={out}/run data.crop=100000",
     "training on batches of 16 crops of 100000x100000 (data.batch, data.crop) would take"),
    # fad-eval
    (eval_cli, "--images {in}/nowhere", "argument --images: {in}/nowhere: no such folder"),
    (eval_cli, "--images {in}/photos --shot-noise 1e-3 --levels 3", "--shot-noise fixes one level: give one of them"),
    (eval_cli, "--set {in}/missing.npz", "argument --set: {in}/missing.npz: no such file"),
    (eval_cli, "--set {in}/set.npz fan-nsma", "fan-nsma: a model array, not a model; evaluate it with --nsma (the"),
    (eval_cli, "--set {in}/pipes/set.npz", "argument --set: {in}/pipes/set.npz: not a regular file (a pipe, socket"),
    (eval_cli, "--set {in}/set.npz --baselines ,", "argument --baselines: expected a comma list of baselines, got ','"),
    (eval_cli, "--set {in}/set.npz {in}/tiny.pt {in}/copy/tiny.pt",
     "{in}/tiny.pt and {in}/copy/tiny.pt: two models named 'tiny' would share their rows"),
    (eval_cli, "--set {in}/photos", "argument --set: {in}/photos: is a folder, not a file"),
    (eval_cli, "--set {in}/empty.npz fan-student --json {out}/q.json", "{in}/empty.npz: the set holds no pairs"),
    (eval_cli, "--set {in}/set.npz --json {in}/set.npz", "argument --json: {in}/set.npz: expected a .json file"),
    (bench, "{in}/tiny.pt --quality {in}/quality.json --json {in}/quality.json",
     "argument --json: {in}/quality.json is also an input (--quality)"),
    (bench, "{in}/tiny.pt --quality {in}/quality.json --json {in}/photos/../quality.json", "is also an input (--quality)"),
    (eval_cli, "--set {in}/set.npz --json {in}/afile/q.json",
     "argument --json: {in}/afile/q.json: {in}/afile is a file"),
    (eval_cli, "--set {in}/set.npz --json " + READ_ONLY + "/q.json", "cannot write in /proc"),
    (eval_cli, "--images {in}/photos --crop 0", "argument --crop"),
    (eval_cli, "--images {in}/photos --levels -1", "argument --levels"),
    (eval_cli, "--images {in}/photos --crops-per-image 0", "argument --crops-per-image"),
    (eval_cli, "--images {in}/photos --seed -3", "argument --seed"),
    (eval_cli, "--images {in}/photos --crop 11 --levels 1000000000000", "a set of 6000000000000 pairs of 4x11x11 "
     "(2 photos x 3 crops x 1000000000000 noise levels) would take"),
    (eval_cli, "--images {in}/photos --levels 1000000000000",  # (photos halved, as for training: 32x24)
     "no photo is large enough for the 128x128 photo pixels of a packed 64x64 crop (sizes height x width, after any "
     "downscaling): chelsea.png (24x32)"),
    (eval_cli, "--images {in}/photos --threads 0", "argument --threads"),
    (eval_cli, "--images {in}/photos --shot-noise -inf", "argument --shot-noise"),
    (eval_cli, "--images {in}/photos --read-noise nan", "argument --read-noise"),
    (eval_cli, "--images {in}/photos --baselines nlm,median", "argument --baselines: unknown baseline 'median'"),
    (eval_cli, "--images {in}/photos no-such-model --json {out}/q.json", "unknown model 'no-such-model'"),
    (eval_cli, "--set {in}/set.npz --nsma /nowhere", "/nowhere: no such model array folder or checkpoint"),
    (eval_cli, "--set {in}/set.npz {in}/photos", "{in}/photos: is a folder, not a checkpoint file"),
    (eval_cli, "--set {in}/set.npz {in}/tiny.pt --json {in}/tiny.pt", "argument --json: {in}/tiny.pt: expected a "
     ".json file"),
    (eval_cli, "--set {in}/truncated.npz {in}/tiny.pt", "{in}/truncated.npz: cannot read evaluation set"),
    (eval_cli, "--set {in}/short-shot.npz {in}/tiny.pt",
     "{in}/short-shot.npz: shot must have shape (2,), one per pair, got (1,)"),
    (eval_cli, "--set {in}/zero-shot.npz {in}/tiny.pt",
     "{in}/zero-shot.npz: shot noise must be a finite number in (0,"),
    (eval_cli, "--set {in}/small.npz {in}/tiny.pt", "{in}/small.npz: its 8x8 frames are smaller than SSIM's 11x11 "
     "window"),
    (eval_cli, "--images {in}/photos --crop 10", "argument --crop: expected a whole number >= 11, got '10'"),
    (eval_cli, "--set {in}/set.npz {in}/tiny.pt --backend torch --backend onnx-fp32 --json {out}/q.json",
     "{in}/tiny.pt: no export folder"),  # found before the torch row is scored
    (eval_cli, "--set {in}/set.npz {in}/tiny.pt --seed 0 --levels 6 --json {out}/q.json",  # the defaults' values too
     "fad-eval: error: --levels, --seed: for a set made from --images; --set FILE is evaluated as it is"),
    (eval_cli, "--set {in}/set.npz {in}/tiny.pt --crops-per-image 1 --shot-noise 1e-3 --read-noise 0 --crop 16",
     "error: --shot-noise, --read-noise, --crop, --crops-per-image: for a set made from --images"),
    # fad-export
    (export, "--threads 0", "argument --threads"),
    (export, "--int8 --qat-steps 0", "argument --qat-steps"),
    (export, "--int8 --val-crops 0", "argument --val-crops"),
    (export, "--int8 --qat --device gpu", "argument --device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (export, "--int8 --device cpu:0", "argument --device"),
    (export, "--int8 --device cuda", "--device cuda is where --qat trains: add --qat"),
    (export, "--int8 --max-drop nan", "argument --max-drop: expected a finite number >= 0, got 'nan'"),
    (export, "--int8 --max-drop -0.1", "argument --max-drop"),
    (export, "--input-size 0 256", "argument --input-size"),
    (export, "--target tpu", "argument --target: invalid choice: 'tpu'"),
    (export, "{in}/tiny.pt --target onnx --input-size 64 64 --out {out}/b",
     "--input-size: for the TFLite files (ONNX models take any input size, float input and output, and their grouped "
     "convs as they are): add --target tflite or all, or drop it"),
    (export, "{in}/tiny.pt --target onnx --int8 --float-io --no-group-conv", "--float-io, --no-group-conv: for the "
     "TFLite files"),
    (export, "{in}/tiny.pt --target onnx --group-width 8", "--group-width: for the TFLite files"),
    (export, "--group-width -4", "argument --group-width: expected a whole number >= 0, got '-4'"),
    (export, "--no-group-conv --group-width 8", "--no-group-conv writes every grouped conv as a plain conv"),
    (export, "--out {in}/afile", "argument --out: {in}/afile: is a file, not a folder"),
    (export, "--out " + READ_ONLY + "/bundle", "argument --out: /proc/bundle: cannot write in /proc"),
    (export, "no-such-model --out {out}/bundle", "unknown model 'no-such-model'"),
    (export, ["", "--out", "{out}/bundle"], "argument model: expected a name or path, got nothing"),
    (export, "/nowhere/model --out {out}/bundle", "/nowhere/model: checkpoint not found"),
    (export, "{in}/tiny.pt --out {in}", "--out {in}: holds the input tiny.pt; write to another folder"),
    # fad-bench
    (bench, "--threads 1 0", "argument --threads"),
    (bench, "--size 0 256", "argument --size"),
    (bench, "--repeats 0", "argument --repeats"),
    (bench, "cycleisp-lite --backends tflite-fp32 --repeats 1 --warmup 0 --size 16 16 --no-progress --baselines",
     "cycleisp-lite: network CycleISPLite has no padding-free core (forward_padded) to export; only the torch"),
    (bench, "{in}/tiny.pt --calibration {in}/quality.json", "--calibration is the latency model of --report's"),
    (bench, "{in}/tiny.pt --no-timing --report {out}/r --no-progress", "--no-progress: for latency runs"),
    (bench, "--warmup -1", "argument --warmup"),
    (bench, "--json {in}/afile/b.json", "argument --json: {in}/afile/b.json: {in}/afile is a file"),
    (bench, "--json " + READ_ONLY + "/b.json", "argument --json: /proc/b.json: cannot write in /proc"),
    (bench, "--plot " + READ_ONLY + "/b.png", "argument --plot"),
    (bench, "--plot {out}/b.xyz", "argument --plot: {out}/b.xyz: expected a .png, .pdf or .svg file"),
    (bench, "--report {in}/afile", "argument --report: {in}/afile: is a file, not a folder"),
    (bench, "--quality {in}/missing.json", "argument --quality: {in}/missing.json: no such file"),
    (bench, "{in}/tiny.pt --backends torch --plot {out}/p.png --quality {in}/other-quality.json",
     "argument --plot: none of the models timed (tiny) is in {in}/other-quality.json (other)"),
    (bench, "no-such-model --quality {in}/afile", "{in}/afile: not a fad-eval results file"),  # before anything else
    (bench, "--json {out}/b.svg --plot {out}/b.svg", "argument --json: {out}/b.svg: expected a .json file"),
    (bench, "no-such-model --json {in}/plot.json --quality {in}/quality.json",
     "plot (--json's name with .png): {in}/plot.png: is a folder"),
    (bench, "{in}/tiny.pt --backends torch --json {in}/tiny.pt", "argument --json: {in}/tiny.pt: expected a .json "
     "file"),
    (bench, "--export-dir {in}/nowhere", "argument --export-dir: {in}/nowhere: no such folder"),
    (bench, "--device adb --timeout 0", "argument --timeout"),
    (bench, "--device adb --noise-a nan", "argument --noise-a"),
    (bench, "--device adb --benchmark-binary {in}/missing", "argument --benchmark-binary: {in}/missing: no such file"),
    (bench, "no-such-model --report {out}/profiles", "unknown model 'no-such-model'"),
    (bench, "no-such-model --delegate gpu --noise-a 1e-3",
     "fad-bench: error: --delegate, --noise-a: for --device adb (an Android phone), not --device cpu"),
    (bench, "no-such-model --device cpu --timeout 5 --benchmark-binary {in}/afile", "error: --benchmark-binary, "
     "--timeout: for --device adb"),
    (bench, "no-such-model --no-timing --report {out}/profiles --json {out}/b.json",
     "fad-bench: error: --json: for latency runs, which --no-timing turns off"),
    (bench, "no-such-model --no-timing --report {out}/profiles --plot {out}/b.png --json {out}/b.json",
     "error: --json, --plot: for latency runs, which --no-timing turns off"),
    (bench, "no-such-model --no-timing --report {out}/profiles --backends torch --threads 2 --repeats 3 --warmup 1",
     "error: --backends, --threads, --repeats, --warmup: for latency runs, which --no-timing turns off"),
    (bench, "no-such-model --no-timing --report {out}/profiles --baselines",
     "error: --baselines: for latency runs, which --no-timing turns off"),
    (bench, "--device adb --backends torch --report {out}/profiles",
     "fad-bench: error: --backends, --report: for --device cpu (this machine), not --device adb"),
    (bench, "--device adb:SERIAL1 --no-timing",
     "error: --no-timing: for --device cpu (this machine), not --device adb:SERIAL1"),
    (bench, "fan-* --backends torch", "unknown model 'fan-*'"),  # names are not patterns
    (bench, "fan-student --backends torch --threads 1 --size 100000 100000 --no-progress",
     "fan-student at 100000x100000 (its fp32 activations alone) would take"),
    # fad-denoise
    (denoise, "{in}/missing.dng", "argument input: {in}/missing.dng: no such file or folder"),
    (denoise, "{in}/pipes/set.npz", "argument input: {in}/pipes/set.npz: not a regular file"),
    (denoise, "{in}/set.npz --out {out}/.npz", "--out {out}/.npz: a file name needs a name before its suffix"),
    (denoise, "{in}/blocked", "{in}/blocked/denoised: exists and is not a folder (where the outputs of {in}/blocked "
     "go; give --out)"),
    (denoise, "{in}/set.npz --shot-noise 0", "argument --shot-noise: expected a finite number in (0, 0.1], got '0'"),
    (denoise, "{in}/set.npz --shot-noise nan", "argument --shot-noise"),
    (denoise, "{in}/set.npz --shot-noise 2e-3 --read-noise -1", "argument --read-noise"),
    (denoise, "{in}/set.npz --iso 0", "argument --iso"),
    (denoise, "{in}/set.npz --iso inf", "argument --iso"),
    (denoise, "{in}/set.npz --out {in}/set.npz", "argument --out: {in}/set.npz is also an input (input)"),
    (denoise, [""], "argument input: expected a path, got nothing"),  # not the current folder
    (denoise, "{in}/set.npz --shot-noise 2e-3 --iso 100 --camera pmrid-example",
     "--shot-noise and --iso/--camera are two ways to give the noise level: give one"),
    (denoise, "{in}/set.npz --camera-profiles {in}/quality.json",
     "--camera-profiles holds the profiles --camera names"),
    (denoise, "{in}/set.npz --camera-profiles {in}/set.npz --camera x --iso 100",
     "{in}/set.npz: not a JSON file of camera profiles (not text)"),
    (denoise, "{in}/set.npz --camera-profiles {in}/quality.json --camera pmrid-example --iso 100",
     "camera profile 'results': needs 'shot', 'read' coefficient lists and 'iso_range'"),
    (denoise, ["{in}/set.npz", "--out", " "], "argument --out: expected a path, got nothing"),
    (denoise, "{in}/set.npz --out {in}/afile/d.npz", "argument --out: {in}/afile/d.npz: {in}/afile is a file"),
    (denoise, "{in}/set.npz --out " + READ_ONLY + "/d.npz", "argument --out: /proc/d.npz: cannot write in /proc"),
    (denoise, "{in}/empty.npz --out {out}/d.npz", "{in}/empty.npz: the set holds no pairs"),
    (denoise, "{in}/truncated.npz --out {out}/d.npz", "{in}/truncated.npz: cannot read evaluation set"),
    (denoise, "{in}/short-shot.npz --out {out}/d.npz", "{in}/short-shot.npz: shot must have shape (2,)"),
    (denoise, "{in}/cam2rgb.npz --out {out}/d.npz",
     "{in}/cam2rgb.npz: cam2rgb must have shape (2, 3, 3), one per pair, got (2, 2, 3)"),
    (denoise, "{in}/set.npz --model-bundle /nowhere --out {out}/d.npz", "/nowhere: no such model array folder or checkpoint"),
]


def files_under(*folders) -> list:
    return sorted(p for folder in folders for p in folder.rglob("*"))


def prog(cli) -> str:
    return "fad-" + cli.__name__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("cli, argv, message", CASES, ids=[f"{prog(c)} {a}" for c, a, _ in CASES])
def test_bad_argument_is_one_line_exit_2_and_writes_nothing(cli, argv, message, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default outputs (runs/, export/) would land here
    out = tmp_path / "out"
    out.mkdir()
    fill = lambda text: text.replace("{in}", str(inputs)).replace("{out}", str(out))  # noqa: E731
    before = files_under(tmp_path, inputs)
    with pytest.raises(SystemExit) as e:
        cli.main(fill(argv).split() if isinstance(argv, str) else [fill(a) for a in argv])
    stdout, stderr = capsys.readouterr()
    lines = [line for line in stderr.split("\n") if line.rsplit("\r", 1)[-1].strip()]  # progress bars erase themselves
    assert e.value.code == 2 and len(lines) == 1, stderr
    line = lines[0].rsplit("\r", 1)[-1]
    assert line.startswith(prog(cli)) and ": error: " in line  # fad-data's subcommands: "fad-data synth: error: "
    assert fill(message) in line, line
    assert files_under(tmp_path, inputs) == before


@pytest.mark.parametrize("cli", [data, train, eval_cli, export, bench, denoise])
def test_help_still_works(cli, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def test_numbers_describe_their_range():
    assert str(Number(int, 1)) == "a whole number >= 1"
    assert str(Number(float, 0, 1, low_open=True)) == "a finite number in (0, 1]"
    assert str(Number(float, high=5, high_open=True)) == "a finite number < 5"
    assert Number(float, 0)("1e-3") == 1e-3 and Number(int, 0)("0") == 0
    for text in ("nan", "-inf", "1e999", "-1", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            Number(float, 0)(text)
    with pytest.raises(ValueError, match="expected a whole number >= 1, got True"):
        Number(int, 1).check(True)


def test_output_paths_may_create_folders_in_a_writable_place(tmp_path):
    assert check_output(tmp_path / "new" / "deeper" / "x.json") == tmp_path / "new" / "deeper" / "x.json"
    assert check_output(tmp_path / "new", "folder") == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # checking writes nothing
    (tmp_path / "old.json").write_text("{}")
    assert check_output(tmp_path / "old.json") == tmp_path / "old.json"  # replacing an output is fine
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output(tmp_path / "old.json", "folder")


def test_a_trailing_slash_names_an_output_folder_whatever_its_suffix(tmp_path):
    raw = tmp_path / "a.dng"
    as_file = output_paths([raw], raw, output_path(str(tmp_path / "out.dng")))
    as_folder = output_paths([raw], raw, output_path(str(tmp_path / "out.dng") + "/"))
    assert as_file == [(tmp_path / "out.dng", tmp_path / "out.png")]
    assert as_folder == [(tmp_path / "out.dng" / "a-denoised.dng", tmp_path / "out.dng" / "a-denoised.png")]
    with pytest.raises(argparse.ArgumentTypeError, match="names a folder .trailing /.; give a file name"):
        output_file(str(tmp_path / "x.json") + "/")


def test_an_output_never_replaces_a_file_inside_an_input_folder(inputs, tmp_path, capsys):
    """fad-bench and fad-eval had written their JSON over an input bundle's manifest or a photo."""
    photos = tmp_path / "photos"
    shutil.copytree(inputs / "photos", photos)
    (photos / "notes.json").write_text("{}")
    bundle = tmp_path / "bundle"
    shutil.copytree(models_dir().parent / "export" / "fan-nsma", bundle)  # the shipped bundle
    manifest = (bundle / "manifest.json").read_bytes()
    cases = [
        (eval_cli, [str(inputs / "tiny.pt"), "--images", str(photos), "--json", str(photos / "chelsea.png")],
         f"fad-eval: error: argument --json: {photos / 'chelsea.png'}: expected a .json file"),
        (eval_cli, ["--set", str(inputs / "set.npz"), "--nsma", str(bundle), "--backend", "tflite-int8",
                    "--json", str(bundle / "manifest.json")], "would replace a file inside the input folder"),
        (bench, [str(bundle), "--json", str(bundle / "manifest.json")], "would replace a file inside the input folder"),
        (bench, [str(bundle), "--json", str(bundle / "x.jpg")], "expected a .json file"),
        (bench, [str(inputs / "tiny.pt"), "--report", str(tmp_path), "--json", str(tmp_path / "profile_tiny.json")],
         f"argument --json {tmp_path / 'profile_tiny.json'}: is one of the profiles --report writes"),
    ]
    for cli, argv, message in cases:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert (bundle / "manifest.json").read_bytes() == manifest and (photos / "notes.json").read_text() == "{}"
    save_pairs(photos / "set.npz", synth_pairs([("coffee", skimage_photo("coffee"))], 16, 1, [2e-3], 0))
    data.main(["synth", "--images", str(photos), "--out", str(photos / "set.npz"), "--crop", "12",
               "--crops-per-image", "1", "--levels", "1"])  # a set beside the photos, made again: allowed


def test_an_int8_checkpoint_is_not_exported_as_float(tmp_path, capsys):
    """Its float network without the quantization's input map had passed validation as another network."""
    int8 = models_dir() / "nsma" / "fan-nsma-0.int8.pt"
    with pytest.raises(SystemExit) as e:
        export.main([str(int8), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip() == f"fad-export: error: {int8}: an int8 QAT checkpoint; export it with " \
        "--int8 (a float export would drop its quantization and its input map, and run as another network)"
    assert not (tmp_path / "x").exists()


def test_an_export_folder_that_is_or_holds_a_mount_point_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """A mount cannot be renamed away, and removing the replaced folder would reach into it."""
    out = tmp_path / "bundle"
    (out / "data").mkdir(parents=True)
    for mounted, message in ((out / "data", f"holds a mount point ({out / 'data'})"), (out, "is a mount point")):
        monkeypatch.setattr(os.path, "ismount", lambda p, m=mounted: Path(p) == m)
        with pytest.raises(SystemExit) as e:
            export.main(["fan-student", "--out", str(out)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"fad-export: error: --out {out}: {message}, which an export cannot" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_cache_that_cannot_be_written_is_one_line(inputs, tmp_path, monkeypatch, capsys):
    """FAD_CACHE naming a file had ended fad-data fetch and fad-train in a traceback."""
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("FAD_CACHE", str(tmp_path / "file"))
    for cli, argv, what in ((data, ["fetch"], "the photo folder"),
                            (train, ["charbonnier", f"data.photos={inputs / 'photos'}", f"out={tmp_path / 'run'}",
                                     "data.crop=16"], "the patch cache")):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code == 2 and err.startswith(f"fad-{cli.__name__.rsplit('.', 1)[1]}: error: {what} (under "
                                                    "$FAD_CACHE): ") and err.endswith("is a file, not a folder"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_denoise_takes_the_users_camera_profiles(inputs, tmp_path):
    from importlib import resources

    from fad_deploy.data.noise import load_profiles

    shipped = json.loads(resources.files("fad_deploy.data").joinpath("camera_profiles.json").read_text())
    mine = {**shipped["pmrid-example"], "shot": [2 * c for c in shipped["pmrid-example"]["shot"]]}  # twice a
    (tmp_path / "mine.json").write_text(json.dumps({"mycam": mine}))
    out = tmp_path / "d.npz"
    denoise.main([str(inputs / "set.npz"), "--camera-profiles", str(tmp_path / "mine.json"), "--camera", "mycam",
                  "--iso", "1600", "--out", str(out)])
    want = load_profiles()["pmrid-example"].params(1600)
    assert np.allclose(load_npz(out, "set")["denoised_shot"], 2 * want.shot)


def test_bench_that_measures_nothing_is_an_error(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main([str(inputs / "tiny.pt"), "--backends", "onnx-fp32", "tflite-int8", "--threads", "1",
                    "--size", "32", "32", "--export-dir", str(tmp_path), "--json", str(tmp_path / "b.json"),
                    "--report", str(tmp_path / "profiles"), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("fad-bench: error: nothing could be measured (2 of 2 runs failed; the first: tiny onnx-fp32 "
                          "x1: no export folder")
    assert list(tmp_path.iterdir()) == []  # neither the JSON nor --report's profiles


def test_bench_refuses_two_models_of_one_name(inputs, tmp_path, capsys):
    """Two checkpoints both named model.pt had two rows named 'model', and --report kept one profile."""
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        shutil.copy(inputs / "tiny.pt", tmp_path / run / "model.pt")
    with pytest.raises(SystemExit) as e:
        bench.main([str(tmp_path / "a" / "model.pt"), str(tmp_path / "b" / "model.pt"), "--no-timing", "--report",
                    str(tmp_path / "profiles")])
    assert e.value.code == 2 and capsys.readouterr().err.strip() == (
        f"fad-bench: error: {tmp_path / 'a' / 'model.pt'} and {tmp_path / 'b' / 'model.pt'}: two models named "
        "'model' would share their rows (a checkpoint is named by its file name, an export folder's networks by "
        "theirs)")
    assert not (tmp_path / "profiles").exists()


def test_skipped_photos_are_one_warning_line(inputs, tmp_path):
    Image.new("RGB", (10, 12)).save(tmp_path / "small.png")
    for photo in (inputs / "photos").iterdir():
        (tmp_path / photo.name).write_bytes(photo.read_bytes())
    run = subprocess.run([sys.executable, "-c", "from fad_deploy.cli.data import main; main()", "synth", "--images",
                          str(tmp_path), "--out", str(tmp_path / "s.npz"), "--crop", "12", "--crops-per-image", "1",
                          "--levels", "1", "--downscale", "1"], capture_output=True)  # bytes: keep the \r
    stderr = run.stderr.decode()
    assert run.returncode == 0, stderr
    lines = [line for line in stderr.split("\n") if line.rsplit("\r", 1)[-1].strip()]  # progress bars erase themselves
    assert len(lines) == 1 and lines[0].rsplit("\r", 1)[-1] == (
        "fad-data: warning: skipped 1 photo smaller than the 24x24 photo pixels of a packed 12x12 crop (sizes "
        "height x width, after any downscaling): small.png (12x10)")
    assert "2 pairs (2 photos" in run.stdout.decode()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the machine has CUDA")
@pytest.mark.parametrize("cli, argv", [(export, ["--int8", "--qat", "--device", "cuda"]),
                                       (train, ["charbonnier", "--device", "cuda:0"])])
def test_a_cuda_device_without_cuda_is_one_line(cli, argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "CUDA is not available on this machine" in err
