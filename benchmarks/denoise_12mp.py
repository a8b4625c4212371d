"""Wall time and peak memory to denoise one 12 MP RAW frame (4032x3024 Bayer, 2016x1512
packed: 1512 is not a multiple of 16) with each backend on this CPU (the TFLite ones the
shipped bundle holds), the way fad-denoise
runs a model of the shipped noise-subrange array: tile by tile (fad_deploy/runners/tiling.py;
TFLite at its fixed 256x256 input, torch and onnxruntime in 512x512 tiles), with the library
defaults for threads. Also: each backend's tiled output against one whole-frame run on a
1000x750 packed crop (the measured rounding difference), one untiled torch run for the
memory tiling saves, and the whole `fad-denoise` command on a 12 MP DNG with its defaults
(the exported int8 TFLite array, noise level estimated from the image).

Each measurement runs in a fresh process. Peak memory is that process's peak resident set
while denoising (VmHWM, reset once the model and the frame are loaded), next to the
resident set before it; for the command, its whole run's peak (ru_maxrss). ONNX files are
exported into a temporary folder from the same networks as the shipped TFLite files (float:
models/nsma/<model>.pt; int8: the QAT checkpoint export/fan-nsma/<model>.int8.pt).

    python benchmarks/denoise_12mp.py [--model fan-nsma-1] [--shot-noise 1e-3]

Writes benchmarks/results/denoise_12mp.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fad_deploy.data.noise import NoiseParams, add_noise, read_from_shot
from fad_deploy.data.photos import skimage_photo
from fad_deploy.data.raw_io import RawImage, write_dng
from fad_deploy.data.unprocess import random_params, unprocess
from fad_deploy.export.manifest import FILE_SUFFIX, read_bundle
from fad_deploy.fileio import write_bytes, write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.cpu import CPUINFO
from fad_deploy.profile.table import markdown_table
from fad_deploy.runners import BACKENDS, load_runner
from fad_deploy.runners.base import postprocess, preprocess
from fad_deploy.runners.tiling import TiledRunner, arch_tile_spec, round_up, tile_plan, tiled_run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUNDLE = ROOT / "export" / "fan-nsma"
BAYER = (3024, 4032)  # 12 MP, 4:3
CROP = (750, 1000)  # packed crop for tiled vs whole
FRAME, DNG = "frame.npy", "frame.dng"
KB = 1024


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fan-nsma-1", help="sub-range model of the shipped array")
    p.add_argument("--shot-noise", type=float, default=1e-3, help="the frame's shot noise a")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # one measurement, in its own process (JSON)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


# ---- inputs -------------------------------------------------------------------------------------

def write_frame(folder: Path, noise: NoiseParams) -> None:
    """A noisy 12 MP frame: a scikit-image photo mirrored to 4032x3024, unprocessed to RAW,
    with shot + read noise; as packed planes (.npy) and as a DNG."""
    photo = skimage_photo("astronaut")
    rgb = np.pad(photo, ((0, BAYER[0] - photo.shape[0]), (0, BAYER[1] - photo.shape[1]), (0, 0)), mode="symmetric")
    rng = np.random.default_rng(0)
    planes = np.clip(add_noise(unprocess(rgb, random_params(rng)), noise, rng), 0, 1)
    np.save(folder / FRAME, planes[None])
    write_dng(folder / DNG, RawImage(planes, "RGGB", (0.0,) * 4, 1.0), planes)


def export_onnx_files(folder: Path, model: str) -> None:
    """<model>.fp32.onnx and .int8.onnx of the shipped array's model into ``folder``."""
    from fad_deploy.export.onnx import export_onnx

    sources = {"onnx-fp32": (models_dir() / "nsma" / f"{model}.pt", False),
               "onnx-int8": (BUNDLE / f"{model}{FILE_SUFFIX['torch-int8']}", True)}
    for backend, (path, int8) in sources.items():
        data, _ = export_onnx(load_checkpoint(path), int8, {"version": f"{model} (benchmark)"})
        write_bytes(folder / f"{model}{FILE_SUFFIX[backend]}", data)


def open_runner(backend: str, model: str, folder: Path):
    """``model`` on ``backend`` as fad-denoise opens it (threads: the libraries' defaults)."""
    if backend == "torch":
        return load_runner("torch", models_dir() / "nsma" / f"{model}.pt")
    if backend.startswith("tflite"):
        return load_runner(backend, BUNDLE, model=model)
    from fad_deploy.quant.qat import quantized_base_grid
    from fad_deploy.runners.onnx_runner import OnnxRunner

    # the int8 file's input and residual base as its checkpoint gives them (the bundle's manifest lists no ONNX)
    grid = quantized_base_grid(load_checkpoint(BUNDLE / f"{model}{FILE_SUFFIX['torch-int8']}")) if "int8" in backend \
        else None
    return OnnxRunner(folder / f"{model}{FILE_SUFFIX[backend]}", None, None, backend, residual=True, base_grid=grid)


# ---- one measurement (in its own process) ---------------------------------------------------------

def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(case: dict, folder: Path, model: str, noise: NoiseParams) -> dict:
    """Load, then denoise the frame once (tiled, or whole), timing it and its peak memory;
    then tiled vs whole on the crop."""
    noisy = np.load(folder / FRAME)
    t0 = time.perf_counter()
    runner = open_runner(case["backend"], model, folder)
    load_s = time.perf_counter() - t0
    ckpt = load_checkpoint(models_dir() / "nsma" / f"{model}.pt")
    spec = arch_tile_spec(ckpt.arch, ckpt.config)  # what the manifest's tiling entry records
    job = TiledRunner(runner, spec) if case["tiled"] else runner
    before = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM)
    t0 = time.perf_counter()
    denoised = job.denoise(noisy, noise)
    seconds = time.perf_counter() - t0
    peak = status_kb("VmHWM")
    result = {**case, "load_s": load_s, "denoise_s": seconds, "rss_before_mb": before / KB, "peak_rss_mb": peak / KB,
              "margin": spec.margin, "align": spec.align, "finite": bool(np.isfinite(denoised).all())}
    if case["tiled"]:
        _, tiles = tile_plan(runner, noisy.shape[-2:], spec)
        (y0, y1, _, _), (x0, x1, _, _) = tiles[0]
        result.update(tile=[y1 - y0, x1 - x0], tiles=len(tiles),
                      **tiled_vs_whole(runner, spec, noisy[..., : CROP[0], : CROP[1]], noise))
    return result


def tiled_vs_whole(runner, spec, noisy: np.ndarray, noise: NoiseParams) -> dict:
    """Largest |tiled - one whole-frame run| on ``noisy``: of the network output (anchor
    space) and of the denoised RAW in [0, 1]."""
    u = preprocess(noisy, noise, runner.anchor)
    h, w = u.shape[-2:]
    ph, pw = round_up(h, spec.align), round_up(w, spec.align)
    whole = runner.run(np.pad(u, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="edge"))[..., :h, :w]
    tiled = tiled_run(runner, u, spec)
    return {"crop": list(noisy.shape[-2:]), "max_diff_anchor": float(np.abs(tiled - whole).max()),
            "max_diff_raw": float(np.abs(postprocess(tiled, noise, runner.anchor)
                                         - postprocess(whole, noise, runner.anchor)).max())}


def command(folder: Path) -> dict:
    """`fad-denoise frame.dng` with its defaults: wall time and the process's peak memory."""
    exe = Path(sys.executable).with_name("fad-denoise")
    with open(folder / "stderr.txt", "w") as err:  # progress bars
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(exe), str(folder / DNG), "--out", str(folder / "out" / "frame-denoised.dng")],
                                stdout=subprocess.PIPE, stderr=err, text=True)
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"fad-denoise failed:\n{output}{(folder / 'stderr.txt').read_text()}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / KB,
            "output": output.replace(f"{folder}/", "").strip().splitlines()}


def run_worker(case: dict, folder: Path, args) -> dict:
    argv = [sys.executable, __file__, "--worker", json.dumps(case), "--dir", str(folder), "--model", args.model,
            "--shot-noise", str(args.shot_noise)]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---- report -------------------------------------------------------------------------------------

def cpu() -> dict:
    """This CPU's name, logical CPUs and flags (/proc/cpuinfo), and the load when measured."""
    fields = dict(line.split(":", 1) for line in CPUINFO.read_text().split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return {"model": fields.get("model name", "?"), "logical_cpus": os.cpu_count(),
            "flags": fields.get("flags", "").split(), "load_average_1min": os.getloadavg()[0]}


def report(doc: dict) -> str:
    c = doc["cpu"]
    simd = [f for f in c["flags"] if f.startswith(("avx", "fma", "f16c", "sse4")) or "vnni" in f]
    rows = [[r["backend"], "tiled" if r["tiled"] else "whole frame", "x".join(map(str, r.get("tile", ["-"]))),
             r.get("tiles", 1), f"{r['load_s']:.1f}", f"{r['denoise_s']:.1f}",
             f"{r['peak_rss_mb']:,.0f}", f"{r['peak_rss_mb'] - r['rss_before_mb']:,.0f}",
             f"{r['max_diff_anchor']:.1e}" if "max_diff_anchor" in r else "-",
             f"{r['max_diff_raw']:.1e}" if "max_diff_raw" in r else "-"] for r in doc["runs"]]
    e = doc["command"]
    return "\n\n".join([
        "# Denoising one 12 MP frame on this CPU",
        f"CPU: {c['model']}, {c['logical_cpus']} logical CPUs, shared with other jobs (1-minute load average "
        f"{c['load_average_1min']:.1f} at the start: times vary up to 2x between runs); SIMD flags: "
        f"{' '.join(simd)} (all flags in the JSON).",
        f"Frame: {BAYER[1]}x{BAYER[0]} Bayer = {BAYER[1] // 2}x{BAYER[0] // 2} packed (4 x {BAYER[0] // 2} x "
        f"{BAYER[1] // 2}), shot noise a = {doc['noise']['shot']:g}, read b = {doc['noise']['read']:.3g}; model "
        f"{doc['model']} of the shipped array (margin {doc['runs'][0]['margin']}, align {doc['runs'][0]['align']}). "
        "Threads: the libraries' defaults, as in fad-denoise. Load = opening the model; denoise = one call of the "
        "runner's denoise (k-sigma, tiles, inverse) on the loaded frame.",
        markdown_table(["backend", "run", "tile", "tiles", "load s", "denoise s", "peak RSS MB",
                        "added by denoising MB", f"tiled vs whole, {CROP[1]}x{CROP[0]} crop: max diff (anchor)",
                        "(RAW [0, 1])"], rows),
        f"The whole command, `fad-denoise frame.dng` (read the DNG, estimate the noise level, pick the model, "
        f"denoise with the exported int8 TFLite array, write the DNG and an RGB preview PNG): "
        f"{e['seconds']:.1f} s, peak RSS {e['peak_rss_mb']:,.0f} MB. It printed:",
        "\n".join(f"    {line}" for line in e["output"]),
    ]) + "\n"


def main():
    args = parse_args()
    noise = NoiseParams(args.shot_noise, float(read_from_shot(args.shot_noise)))
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker), args.dir, args.model, noise)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        doc = {"cpu": cpu(), "model": args.model, "noise": {"shot": noise.shot, "read": noise.read},
               "bayer": list(BAYER), "runs": []}
        write_frame(folder, noise)
        export_onnx_files(folder, args.model)
        files = next(e for e in read_bundle(BUNDLE)["models"] if e["name"] == args.model)["files"]
        backends = [b for b in BACKENDS if not b.startswith("tflite") or b in files]  # ONNX: exported above
        for case in [*({"backend": b, "tiled": True} for b in backends), {"backend": "torch", "tiled": False}]:
            doc["runs"].append(run_worker(case, folder, args))
            print(json.dumps(doc["runs"][-1]), flush=True)
        doc["command"] = command(folder)
    write_json(RESULTS / "denoise_12mp.json", doc)
    write_text(RESULTS / "denoise_12mp.md", report(doc))
    print(report(doc))


if __name__ == "__main__":
    main()
