"""Architecture baselines for timing: a network built from its architecture alone (seeded
initial weights; int8 ranges calibrated on seeded random inputs), exported like a shipped
model into a cached export folder, so `fad-bench` and benchmarks/ time it next to our
models on any machine, without trained weights.

Latency does not depend on the weights' values: the dense kernels (XNNPACK, onnxruntime,
PyTorch) do the same work for any numbers, so a baseline with initial weights times the
same as a trained one. Its outputs are meaningless; it is never evaluated for quality.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..checks import require_output
from ..data.photos import default_cache_dir
from ..errors import FadError, fold
from ..fileio import write_json
from ..models.registry import ARCHITECTURES, Checkpoint, build, model_config
from ..quant.qat import freeze, prepare, quantized_checkpoint
from ..quant.graph import Core

BASELINES = ("pmrid",)  # architectures fad-bench times next to the shipped models by default
CALIBRATION_BATCHES = 4
WEIGHT_NOISE = 0.01
CALIBRATION_SIZE = 64  # packed h, w of the random calibration inputs


def baseline_name(arch: str) -> str:
    """The label of an architecture baseline: not the original network, our own with initial weights."""
    return f"{arch}-arch"


def architecture_checkpoint(arch: str, config: dict | None = None, seed: int = 0) -> Checkpoint:
    """Initial weights plus seeded noise of std WEIGHT_NOISE on every parameter, so that no
    layer is constant (FAN's Feature-Align heads start at exactly zero weights, and the
    TFLite converter folds such a conv away, which would time a smaller graph)."""
    torch.manual_seed(seed)
    net = build(arch, config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(WEIGHT_NOISE * torch.randn_like(p))
    return Checkpoint(baseline_name(arch), arch, model_config(net), net.state_dict(),
                      card={"weights": f"initial + N(0, {WEIGHT_NOISE}^2) noise (torch seed {seed}): for timing only"})


@torch.no_grad()
def calibrate_on_random(ckpt: Checkpoint, seed: int = 0) -> Checkpoint:
    """int8 ranges observed on seeded uniform [0, 1] inputs: enough for timing (post-training
    min/max calibration, weights unchanged), no photos or patch cache needed."""
    net = ckpt.build()
    gm = prepare(net, calibrate_only=True).eval()
    gm.apply(torch.ao.quantization.disable_fake_quant)
    rng = np.random.default_rng(seed)
    for _ in range(CALIBRATION_BATCHES):
        gm(torch.from_numpy(rng.random((1, 4, CALIBRATION_SIZE, CALIBRATION_SIZE), dtype=np.float32)))
    return quantized_checkpoint(ckpt, freeze(gm), net, "ptq-random",
                                {"batches": CALIBRATION_BATCHES, "size": CALIBRATION_SIZE, "seed": seed})


def exporter_digest() -> str:
    """A digest of the TFLite exporter's source: a cached export made by another exporter
    (another graph for the same network) is made again."""
    from ..export import tf_graph, tflite

    return hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (tf_graph, tflite))).hexdigest()[:16]


def export_size(arch: str, config: dict | None, size: tuple[int, int]) -> tuple[int, int]:
    """The TFLite input size to export at: ``size``, or the smallest size the network tiles
    exactly at (more than twice its receptive-field margin) where that is larger. The TFLite
    runner resizes the file to ``size`` (any multiple of the padding multiple) for timing."""
    from ..runners.tiling import arch_tile_spec

    smallest = arch_tile_spec(arch, config).smallest_tile
    return max(size[0], smallest), max(size[1], smallest)


def export_architecture(arch: str, size: tuple[int, int], targets: tuple[str, ...] = ("tflite",),
                        config: dict | None = None, seed: int = 0, root: Path | None = None,
                        name: str | None = None, group_width: int = 0) -> Path:
    """An export folder (fp32 and int8 files of ``targets``, manifest.json, and the float
    checkpoint ``<name>.pt``) for ``arch`` with initial weights, that runs packed inputs of
    ``size`` (grouped convs written with at least ``group_width`` channels per group:
    TFLiteOptions.group_width); reused while its recipe (architecture, config, seed, size,
    targets, group width, versions) is unchanged."""
    from ..export.bundle import ExportOptions, export_model
    from ..export.manifest import FILE_SUFFIX, FORMAT, MANIFEST
    from ..export.tflite import TFLiteOptions
    from ..nsma.select import read_manifest

    float_ckpt = architecture_checkpoint(arch, config, seed)
    name = name or float_ckpt.name
    multiple = Core(float_ckpt.build()).multiple
    if size[0] % multiple or size[1] % multiple:
        raise FadError(f"size {size[0]}x{size[1]}: the {arch} baseline needs multiples of {multiple}")
    recipe = {"arch": arch, "config": float_ckpt.config, "seed": seed, "weight_noise": WEIGHT_NOISE, "size": list(size), "targets": list(targets),
              "group_width": group_width,
              "fad_deploy": __version__, "exporter": exporter_digest(), "torch": torch.__version__}
    folder = (root or default_cache_dir() / "baselines") / f"{name}-{size[0]}x{size[1]}"
    try:
        if read_manifest(folder / MANIFEST).get("baseline") == recipe:
            return folder
    except FadError:  # none yet, or unreadable: export again
        pass
    require_output(folder, "folder", "the baseline's export folder" + ("" if root else " (under $FAD_CACHE)"))
    folder.mkdir(parents=True, exist_ok=True)
    float_ckpt = dataclasses.replace(float_ckpt, name=name)
    float_ckpt.save(folder / f"{name}.pt")
    int8_path = folder / f"{name}{FILE_SUFFIX['torch-int8']}"  # export_model keeps an already quantized one
    calibrate_on_random(float_ckpt, seed).save(int8_path)
    tflite = TFLiteOptions(input_size=export_size(arch, float_ckpt.config, size), group_width=group_width)
    options = ExportOptions(targets=targets, tflite=tflite, progress=False)
    entry = export_model(name, int8_path, options, folder, folder).entry
    write_json(folder / MANIFEST, {"format": FORMAT, "generator": f"fad-deploy {__version__}",
                                   "targets": list(targets), "models": [entry], "baseline": recipe})
    return folder


def baseline_bench_models(archs: list[str], size: tuple[int, int], backends: tuple[str, ...]) -> list:
    """`fad-bench` entries for architecture baselines: their exported backends from the cached
    export folder (made on first use), torch from its float checkpoint."""
    from ..export.manifest import read_bundle
    from .bench_cpu import BenchModel

    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise FadError(f"--baselines {unknown[0]}: not a network architecture "
                       f"(choose from {fold(sorted(ARCHITECTURES), unknown[0])})")
    targets = tuple(t for t in ("tflite", "onnx") if any(b.startswith(t) for b in backends)) or ("tflite",)
    found = []
    for arch in archs:
        folder = export_architecture(arch, size, targets)
        entry = read_bundle(folder)["models"][0]
        found.append(BenchModel(entry["name"], folder / f"{entry['name']}.pt", folder, entry["name"],
                                (entry["arch"], entry["config"])))
    return found
