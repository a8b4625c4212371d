"""What each int8 technique buys, per sub-range model and per noise level: QAT variants that
add one change at a time (today's min/max recipe, learned ranges, distillation from the float
network with every level weighted alike, larger crops and longer runs), each measured as the
RAW PSNR drop of PyTorch's fake-quant network (which the int8 TFLite reproduces: fad-export's
parity >= 45 dB) against the same float model, on photos never used in training (the fetched
test photos) at levels spread over the model's own sub-range.

    python benchmarks/int8_recipe.py [--models fan-nsma-3 ...] [--variants NAME ...] [--threads 2]
    python benchmarks/int8_recipe.py --array DIR --results DIR ...   # another array's float models

Each (model, variant) result is kept in benchmarks/results/int8_recipe.json as it is made,
so an interrupted run goes on where it stopped; benchmarks/results/int8_recipe.md is
rewritten from all of them (runs on different models may write them side by side). Each
QAT's int8 checkpoint is kept under $FAD_CACHE/int8_recipe/<settings and float weights>/
for a closer look at its row (int8_clipping.py etc.) and for ship_int8.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fad_deploy.data.noise import NoiseParams, to_anchor
from fad_deploy.data.patch_cache import CacheConfig, build_patch_cache
from fad_deploy.data.photos import default_cache_dir, list_photos
from fad_deploy.data.synth import VALIDATION_CROPS, folder_images, synth_pairs, validation_set, validation_shots
from fad_deploy.export.tflite import TFLiteOptions, export_tflite
from fad_deploy.export.validate import denoised, psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.quant.qat import (FakeQuantRunner, QATState, fake_quant_core, grid, io_quantizers, made_with,
                                  quantization_aware_training, split_input, weight_sum)
from fad_deploy.quant.recipe import QATConfig, stored_qat_config
from fad_deploy.quant.split import single_checkpoint
from fad_deploy.runners.tflite_runner import TFLiteRunner
from fad_deploy.runners.torch_runner import TorchRunner
from fad_deploy.train.losses import CHARBONNIER_EPS
from ship_int8 import renamed  # (this folder's: a kept QAT under the name of an array shipped since)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RECIPE = QATConfig()
SINGLE_INPUT = dataclasses.replace(RECIPE, input_split=0)  # the recipe shipped before the split int8 input
NARROW = dataclasses.replace(SINGLE_INPUT, steps=9600)  # the recipe shipped before 3x the steps
FULL_GRID = dataclasses.replace(NARROW, weight_qmin=-128)  # the recipe before TFLite's narrow weight grid
EIGHTS = dataclasses.replace(FULL_GRID, steps=4800, batch=8)  # the recipe shipped before batch 4
SWEEP = dataclasses.replace(EIGHTS, steps=1200)  # the steps of the learning-rate sweep and the rows before it
PREVIOUS = dataclasses.replace(SWEEP, lr=5e-5, min_lr=1e-6)  # the recipe shipped before the learning-rate sweep
ONTO_INPUT = dataclasses.replace(PREVIOUS, base="input")  # the residual added to the float input
TODAY = dataclasses.replace(ONTO_INPUT, steps=120, ranges="minmax", scale_lr=1e-3, target="clean",
                            level_weighting="anchor")  # the export default before the recipe
# every block's quantized feature maps against the float network's: weight 0.03 makes the two terms
# alike at the start of fan-nsma-3's QAT (relative RMSE ~0.13 against an output loss ~0.004)
FEATURES = dataclasses.replace(SWEEP, feature_distil=0.03)
FEATURES_LIGHT = dataclasses.replace(SWEEP, feature_distil=0.003)
DROP = dataclasses.replace(SWEEP, loss="drop")
# crops of 128 (the evaluation's size; the network's lowest level sees 8x8, not 4x4), from a cache of
# 136-pixel patches (as many pixels per photo as the default cache), as many pixels per step
LARGE_PATCHES = CacheConfig(patch=136, patches_per_photo=40)
LARGE_CACHE = default_cache_dir() / "patches-train-136.npz"
LARGE_CROPS = dataclasses.replace(SWEEP, crop=128, batch=2, cache=str(LARGE_CACHE))
SQRT_ADAPTED = dataclasses.replace(NARROW, input_map="sqrt", adapt_steps=20000)
SQRT_RECIPE = dataclasses.replace(SQRT_ADAPTED, steps=RECIPE.steps)
SQRT_HALFWAY = dataclasses.replace(SQRT_ADAPTED, steps=NARROW.steps * 3 // 2)
# warm restarts: the second cycle is the first restart
ORDINALS = ("second", "third", "fourth", "fifth", "sixth", "seventh")
# the recipe, then warm restarts; the square-root row, then warm restarts
CYCLES = {n: dataclasses.replace(SINGLE_INPUT, continue_steps=NARROW.steps, restarts=i + 1)
          for i, n in enumerate(ORDINALS)}
SQRT_CYCLES = {n: dataclasses.replace(SQRT_HALFWAY, continue_steps=NARROW.steps, restarts=i + 1)
               for i, n in enumerate(ORDINALS)}
SECOND_CYCLE, THIRD_CYCLE, FOURTH_CYCLE = CYCLES["second"], CYCLES["third"], CYCLES["fourth"]
SQRT_FOURTH_CYCLE = SQRT_CYCLES["fourth"]


def with_split(cfg: QATConfig) -> QATConfig:
    """``cfg`` with the recipe's split int8 input: the same QAT, split after it (nothing retrained)."""
    return dataclasses.replace(cfg, input_split=RECIPE.input_split)


TILT = 1.0  # the last cycle's level tilt: the top of a sub-range of the shipped array (3.3x its floor) weighs 3.3x
EXPOSURE = 4.0  # the last cycle's brightest patch gain (RAW, saturating at 1): int8_brightness.md's frames


def brighter(cfg: QATConfig, share: float = 1.0) -> QATConfig:
    """``cfg`` with the share ``share`` of its last cycle's patches up to EXPOSURE times brighter:
    the same steps, the ranges learned again in it cover brighter frames."""
    return dataclasses.replace(cfg, last_exposure=EXPOSURE, last_exposure_share=share)


WEIGHTS_ONLY = dataclasses.replace(SWEEP, activations="float", weight_qmin=-127)  # 16x8: QAT of the weights, int16 activations
# Each variant adds one change to the one before it, up to the shipped recipe (the learning rates
# each change the "+ residual onto the quantized input" row's); then controls.
VARIANTS = {
    "before (min/max ranges, clean target, 120 steps)": TODAY,
    "+ learned ranges (LSQ, MSE start)": dataclasses.replace(TODAY, ranges="learned", scale_lr=RECIPE.scale_lr),
    "+ distil the float model, levels alike": dataclasses.replace(ONTO_INPUT, steps=TODAY.steps),
    f"+ {SWEEP.steps} steps": ONTO_INPUT,
    "+ residual onto the quantized input": PREVIOUS,
    "+ lr 2e-4": dataclasses.replace(PREVIOUS, lr=2e-4, min_lr=4e-6),
    "+ lr 5e-4": dataclasses.replace(PREVIOUS, lr=5e-4, min_lr=1e-5),
    "+ lr 1.5e-3": SWEEP,
    "+ lr 4e-3": dataclasses.replace(PREVIOUS, lr=4e-3, min_lr=8e-5),
    f"+ {EIGHTS.steps} steps": EIGHTS,
    f"+ batch {NARROW.batch}, {NARROW.steps} steps (the same pixels)": FULL_GRID,
    "+ weights on TFLite's narrow grid [-127, 127]": NARROW,
    f"+ {SINGLE_INPUT.steps} steps, {SINGLE_INPUT.steps // NARROW.steps}x": SINGLE_INPUT,
    f"+ the int8 input split in two (k = {RECIPE.input_split}: the input to 1/{RECIPE.input_split} of a step; "
    "the recipe)": RECIPE,
    f"the {SWEEP.steps}-step row at lr 1e-5 (less drift of the float weights?)":
        dataclasses.replace(ONTO_INPUT, lr=1e-5, min_lr=2e-7),
    "the lr 5e-5 row with the weights frozen (ranges only: no drift)":
        dataclasses.replace(PREVIOUS, lr=1e-12, min_lr=1e-14),
    "the lr 5e-5 row with an RMSE loss (the metric's minimiser)": dataclasses.replace(PREVIOUS, loss="rmse"),
    f"the lr 1.5e-3 row + feature-map distillation (weight {FEATURES.feature_distil:g})": FEATURES,
    f"the lr 1.5e-3 row + feature-map distillation (weight {FEATURES_LIGHT.feature_distil:g})": FEATURES_LIGHT,
    "the lr 1.5e-3 row with each image's PSNR drop as the loss (every image by its dB)": DROP,
    "the lr 1.5e-3 row with an RMSE loss (squared errors, as PSNR counts them: clipped highlights weigh more)":
        dataclasses.replace(SWEEP, loss="rmse"),
    "the lr 1.5e-3 row with a square-root int8 input (variance-stabilised: sqrt(max(u, 0)))":
        dataclasses.replace(SWEEP, input_map="sqrt"),
    f"the narrow-grid row with a square-root int8 input, the network first adapted to it "
    f"({SQRT_ADAPTED.adapt_steps} float steps)": SQRT_ADAPTED,
    "the recipe with that square-root input and adaptation": SQRT_RECIPE,
    f"that square-root input and adaptation, {SQRT_HALFWAY.steps} steps": SQRT_HALFWAY,
    f"the recipe + a second cycle of {SECOND_CYCLE.continue_steps} steps (lr {SECOND_CYCLE.continue_lr:g}, ranges "
    "learned again)": SECOND_CYCLE,
    **{f"the recipe + a {n} cycle of {cfg.continue_steps} steps": cfg for n, cfg in CYCLES.items() if n != "second"},
    f"the {SQRT_HALFWAY.steps}-step square-root row + a second cycle of {NARROW.steps} steps": SQRT_CYCLES["second"],
    **{f"that row + a {n} cycle of {cfg.continue_steps} steps": cfg for n, cfg in SQRT_CYCLES.items() if n != "second"},
    **{f"{label}, its int8 input split in two (k = {RECIPE.input_split})": with_split(cfg) for label, cfg in (
        *((f"the recipe + a {n} cycle", cfg) for n, cfg in CYCLES.items()),
        *((f"the square-root row + a {n} cycle", cfg) for n, cfg in SQRT_CYCLES.items() if n != "second"))},
    **{f"{label}, the last on patches up to {EXPOSURE:g}x brighter{split}": make(brighter(cfg))
       for label, cfg in (("the recipe + a third cycle", THIRD_CYCLE), ("the recipe + a fourth cycle", FOURTH_CYCLE),
                          ("the square-root row + a fourth cycle", SQRT_FOURTH_CYCLE))
       for split, make in (("", lambda c: c), (f", its int8 input split in two (k = {RECIPE.input_split})",
                                                with_split))},
    **{f"the square-root row + a fourth cycle, the last with {part} its patches up to {EXPOSURE:g}x brighter{split}":
       make(brighter(SQRT_FOURTH_CYCLE, share))
       for part, share in (("half", 0.5), ("a quarter of", 0.25))
       for split, make in (("", lambda c: c), (f", its int8 input split in two (k = {RECIPE.input_split})",
                                                with_split))},
    **{f"{label}, the last weighting each image by (a / a_min)^{TILT:g}{split}":
       make(dataclasses.replace(cfg, last_level_tilt=TILT))
       for label, cfg in (("the recipe + a fourth cycle", CYCLES["fourth"]),
                          ("the square-root row + a seventh cycle", SQRT_CYCLES["seventh"]))
       for split, make in (("", lambda c: c),
                           (f", its int8 input split in two (k = {RECIPE.input_split})", with_split))},
    "the lr 1.5e-3 row on 128-pixel crops (2 a step: the same pixels)": LARGE_CROPS,
    "the lr 1.5e-3 row at batch 16, half the steps (the same pixels)": dataclasses.replace(SWEEP, batch=16, steps=600),
    "the lr 1.5e-3 row at batch 4, twice the steps (the same pixels)": dataclasses.replace(SWEEP, batch=4, steps=2400),
    "16x8: int16 activations, the float weights rounded to TFLite's int8 grid (TFLite, no QAT)":
        dataclasses.replace(WEIGHTS_ONLY, steps=1, lr=1e-12, min_lr=1e-14),
    f"16x8: int16 activations, weights fine-tuned on that grid, {SWEEP.steps} steps (TFLite)":
        WEIGHTS_ONLY,
}
EVAL_CROP, EVAL_CROPS, EVAL_SEED = 128, 3, 7
GATE_CROPS_BEFORE = 2  # crops a photo of fad-export's validation patches before VALIDATION_CROPS
KEPT = default_cache_dir() / "int8_recipe"  # the QATs this benchmark ran (see kept_path)
ARRAY = models_dir() / "nsma"  # the shipped noise sub-range array, whose int8 checkpoints lie beside its float ones


def evaluation_set(images: list, shot_range) -> dict:
    """Held-out test photos at the model's validation levels (spread over its sub-range)."""
    return synth_pairs(images, EVAL_CROP, EVAL_CROPS, validation_shots(shot_range), EVAL_SEED)


def large_patch_cache() -> None:
    """The cache LARGE_CROPS trains on, built from the fetched training photos when missing."""
    if not LARGE_CACHE.is_file():
        build_patch_cache(list_photos(default_cache_dir() / "photos" / "train"), LARGE_CACHE, LARGE_PATCHES)


def kept_path(ckpt, cfg: QATConfig) -> Path:
    """Where a QAT of float checkpoint ``ckpt`` this benchmark ran is kept, by its settings and
    ``ckpt``'s weights (not its name: an array made the shipped one keeps its QATs), for later analysis
    of its row (e.g. ``int8_clipping.py``, ``int8_sensitivity.py``), for re-measuring without a new QAT
    and for shipping (``ship_int8.py``)."""
    settings = dataclasses.asdict(cfg)  # keyed as before later cycles existed, where they are not used: found still
    unused = ({"continue_steps", "continue_lr", "restarts"} if not cfg.continue_steps
              else {"restarts"} if cfg.restarts == 1 else set()) | ({"input_split"} if not cfg.input_split else set()) \
        | ({"last_exposure"} if cfg.last_exposure == 1 else set()) \
        | ({"last_exposure_share"} if cfg.last_exposure_share == 1 else set()) \
        | ({"last_level_tilt"} if cfg.last_level_tilt == 0 else set())
    settings = {k: v for k, v in settings.items() if k not in unused} | {"weights": weight_sum(ckpt)}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return KEPT / key / "qat.int8.pt"


def shipped_int8(ckpt, cfg: QATConfig, folders: tuple[Path, ...] = (ARRAY,)):
    """The int8 checkpoint of float checkpoint ``ckpt`` made with ``cfg``: a kept one (see
    :func:`kept_path`), else ``<name>.int8.pt`` in ``folders`` (the array ``ckpt`` belongs to, the
    output of ``fad-export --qat-steps N``), with its QAT time from its card (else None, None). A kept
    one made from the same weights under another name (an array shipped since) comes under ``ckpt``'s."""
    kept = kept_path(ckpt, cfg)
    for path in [kept] + [Path(f) / f"{ckpt.name}.int8.pt" for f in folders]:
        if not path.is_file():
            continue
        q = load_checkpoint(path)
        if path == kept and q.card["quantization"]["source"] != ckpt.name:
            q = renamed(q, ckpt.name, f"kept by int8_recipe.py as a QAT of {q.card['quantization']['source']}, "
                                      "the same weights")
        if not cfg.input_split and made_with(q, with_split(cfg)):  # (a shipped split: its QAT's own checkpoint)
            q = single_checkpoint(q)
        if made_with(q, cfg):
            card = path.with_suffix(".json")
            return q, json.loads(card.read_text()).get("qat_s") if card.is_file() else None
    return None, None


def made_or_split(ckpt, cfg: QATConfig, folders: tuple[Path, ...] = (ARRAY,)):
    """As :func:`shipped_int8`; for a split input also the same QAT's int8 checkpoint with one
    int8 input, split as the QAT would (nothing retrained)."""
    q, qat_s = shipped_int8(ckpt, cfg, folders)
    if q is None and cfg.input_split:
        single, qat_s = shipped_int8(ckpt, dataclasses.replace(cfg, input_split=0), folders)
        q = split_input(single, cfg) if single is not None else None
    return q, qat_s


def shipped_variant(array: Path, name: str) -> str | None:
    """The variant whose settings made the int8 checkpoint of ``name`` shipped in ``array`` (None: another recipe)."""
    path = array / f"{name}.int8.pt"
    if not path.is_file():
        return None
    q = load_checkpoint(path)
    return next((v for v, cfg in VARIANTS.items() if made_with(q, cfg)), None)


def denoised_16x8(q, pairs: dict) -> np.ndarray:
    """``pairs`` denoised by the 16x8 TFLite of a weight-only QAT checkpoint, exported at the
    crops' size (the file fad-export --activations int16 writes, at another size)."""
    size = pairs["noisy"].shape[-1]
    model, _ = export_tflite(q, TFLiteOptions((size, size), int8=True, activations="int16"), "int8_recipe", {})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{q.name}.int16.tflite"
        path.write_bytes(model)
        return denoised(TFLiteRunner(path, q.anchor, multiple=None, residual=True), pairs)


def drops(q, cfg: QATConfig, pairs: dict, reference: tuple[float, dict]) -> tuple[float, dict]:
    """The mean and per-level RAW PSNR drop of int8 checkpoint ``q`` on ``pairs`` against the float
    model's ``reference`` (mean, per level); weight-only QAT is measured on its 16x8 TFLite."""
    out = denoised(FakeQuantRunner(q), pairs) if cfg.activations == "int8" else denoised_16x8(q, pairs)
    mean, levels = psnr_by_shot(out, pairs)
    base, base_levels = reference
    return base - mean, {s: base_levels[s] - v for s, v in levels.items()}


def measure(ckpt, cfg: QATConfig, sets: dict, folders: tuple[Path, ...], device: str = "cpu") -> dict | None:
    """The drops of ``ckpt`` quantized with ``cfg`` (an int8 checkpoint made so, see
    :func:`made_or_split`, else a new QAT on ``device``) on the held-out crops and on fad-export's
    validation patches (``sets``: name -> (pairs, the float model's mean and per-level PSNR));
    None for a split input whose QAT with one int8 input was not run (it is made from that one)."""
    q, qat_s = made_or_split(ckpt, cfg, folders)
    if q is None and cfg.input_split:
        return None
    made_on = None  # the device of a QAT run here
    if q is None:
        made_on = device  # a new QAT, resumed where an interrupted run of this benchmark stopped
        start, state = time.time(), QATState(kept_path(ckpt, cfg).with_suffix(".qat-state.pt"))
        shorter = shipped_int8(ckpt, cfg.previous(), folders)[0] if cfg.continue_steps else None
        q = quantization_aware_training(ckpt, cfg, state=state, device=device, start=shorter)
        qat_s = round(state.earlier_s + time.time() - start, 1)
        q.save(kept_path(ckpt, cfg))
        write_json(kept_path(ckpt, cfg).with_suffix(".json"), {"qat_s": qat_s})
    drop, by_shot = drops(q, cfg, *sets["held-out"])
    gate, gate_by_shot = drops(q, cfg, *sets["gate"])
    return {"config": dataclasses.asdict(cfg), "qat_s": qat_s, "qat_device": made_on, "drop_db": drop,
            "drop_by_shot": by_shot,
            "gate_drop_db": gate, "gate_drop_by_shot": gate_by_shot, "gate_crops": VALIDATION_CROPS}


def input_step_per_noise(q, ckpt, pairs: dict) -> dict[str, float]:
    """Per noise level: the int8 input step of ``q`` over the median anchor-space noise std of
    the inputs (var = a_A u + b_A at the clean signal): how coarse the 8-bit input grid is
    against the noise the network must tell from the signal."""
    step = grid(io_quantizers(fake_quant_core(q)[0])[0])["scale"]
    a = ckpt.anchor
    out = {}
    for shot in np.unique(pairs["shot"]):
        sel = pairs["shot"] == shot
        u = to_anchor(pairs["clean"][sel].astype(np.float64), NoiseParams(shot, pairs["read"][sel][0]), a)
        out[f"{shot:.3g}"] = step / float(np.median(np.sqrt(np.clip(a.shot * u + a.read, 0, None))))
    return out


def added_power(drop_db: float) -> float:
    """The int8 network's added error power over the float model's, for a drop of ``drop_db``."""
    return 10 ** (drop_db / 10) - 1


def added_error_db(drop_db: float) -> float:
    """How far (dB) the int8 network's own added error lies below the float model's error, for a
    PSNR drop of ``drop_db`` when the two errors are independent: 10 log10(1 / (10^(drop/10) - 1))."""
    return -10 * np.log10(added_power(drop_db))


def error_budget(result: dict) -> list[str]:
    """Per model and level: the int8 error of the shipped row against what the 0.20 dB per-level
    bound needs (the float model's error power plus at most 4.7 % of it)."""
    need = added_error_db(0.20)
    lines = ["## What the bound asks of the int8 error", "",
             "A drop of d dB means the int8 network adds error power 10^(d/10) - 1 times the float model's "
             f"(their errors independent). The per-level bound of 0.20 dB allows 4.7 %: the added error must lie "
             f"{need:.1f} dB below the float model's error (0.10 dB: {added_error_db(0.10):.1f} dB). Below: how far "
             "it lies now (the shipped row) and how many times its power must still shrink.", "",
             "| model | " + " | ".join(f"level {i + 1}" for i in range(4)) + " |", "| --- |" + " ---: |" * 4]
    for name, model in result["models"].items():
        if model.get("shipped") not in model["variants"]:
            continue
        cells = []
        for s, drop in model["variants"][model["shipped"]]["drop_by_shot"].items():
            if drop <= 0:  # no added error at all
                cells.append(f"none added ({model['float_by_shot'][s]:.1f} dB float), met")
                continue
            below = added_error_db(drop)
            to_go = 10 ** ((need - below) / 10)
            cells.append(f"{below:.1f} dB below ({model['float_by_shot'][s]:.1f} dB float), "
                         + (f"x{to_go:.1f} to go" if to_go > 1 else "met"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def label_of(cfg: QATConfig) -> str:
    return next(v for v, c in VARIANTS.items() if c is cfg)


def steps_projection(result: dict) -> list[str]:
    """Per model: the added error power against QAT steps at the recipe's learning rate (the
    rows of 1,200 and 4,800 steps of 8 and the recipe), fitted as a power law, and the steps
    it projects for the 0.10 dB mean and the 0.20 dB worst-level bounds."""
    rows = [label_of(SWEEP), label_of(EIGHTS), label_of(NARROW)]
    lines = ["## How many steps the bound would take (a projection)", "",
             "The added error power p = 10^(drop/10) - 1 of the rows " + ", ".join(f"'{r}'" for r in rows) +
             " fitted as p ~ steps^k (least squares in log-log; the recipe's row has half the batch, so this "
             "counts optimizer steps), then extrapolated to the steps where the mean drop would be 0.10 dB and "
             "the worst level's 0.20 dB. An extrapolation, not a measurement; the last column puts it to the test "
             f"where the row '{label_of(SINGLE_INPUT)}' (not in the fit) was run: the mean drop the fit projects for its "
             "steps, and the one measured.", "",
             "| model | steps: mean drop dB | k | steps for 0.10 dB mean | k (worst level) | steps for 0.20 dB at "
             f"every level | {SINGLE_INPUT.steps} steps: projected / measured mean drop dB |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, model in result["models"].items():
        runs = [model["variants"].get(r) for r in rows]
        if any(r is None for r in runs):
            continue
        steps = np.log([r["config"]["steps"] for r in runs])
        cells = [", ".join(f"{r['config']['steps']}: {r['drop_db']:.3f}" for r in runs)]
        fits = []
        for drops, bound in (([r["drop_db"] for r in runs], 0.10),
                             ([max(r["drop_by_shot"].values()) for r in runs], 0.20)):
            k, c = np.polyfit(steps, np.log([added_power(d) for d in drops]), 1)
            fits.append((k, c))
            need = np.exp((np.log(added_power(bound)) - c) / k) if k < 0 else float("inf")
            cells += [f"{k:.2f}", f"{need:,.0f}" if need < 1e7 else "no trend (over 10 million)"]
        measured = model["variants"].get(label_of(SINGLE_INPUT))
        k, c = fits[0]
        projected = 10 * np.log10(1 + np.exp(c + k * np.log(SINGLE_INPUT.steps)))
        cells.append(f"{projected:.3f} / {measured['drop_db']:.3f}" if measured else "not run")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def gate_note(row: dict, twin: dict | None) -> str:
    """A row's drop on fad-export's validation patches (mean, worst level), and its twin's."""
    if "gate_drop_db" not in row:
        return ""
    linear = f" (linear: {gate_cell(twin)} dB)" if twin and "gate_drop_db" in twin else ""
    return f"; on fad-export's validation patches, mean / worst level, {gate_cell(row)} dB{linear}"


def gate_cell(row: dict) -> str:
    """A row's gate drop, mean / worst level; marked * where measured on the gate's smaller set of before."""
    old = "*" if row.get("gate_crops", GATE_CROPS_BEFORE) != VALIDATION_CROPS else ""
    return f"{row['gate_drop_db']:+.3f} / {max(row['gate_drop_by_shot'].values()):+.3f}{old}"


def input_map_section(result: dict, results: Path) -> list[str]:
    """What a square-root int8 input buys: the input alone (int8_input_map.py's results in
    ``results``) and the QAT rows that use it."""
    path = results / "int8_input_map.json"
    if not path.is_file():
        return []
    alone = json.loads(path.read_text())["models"]
    rows = {name: {label: r["drop_db"] for label, r in m["grids"].items()} for name, m in alone.items()}
    learned = lambda r: next((v for k, v in r.items() if k.startswith("the shipped")), float("nan"))  # noqa: E731
    sqrt = lambda r: next(v for k, v in r.items() if k.startswith("square root"))  # noqa: E731
    names = list(rows)
    lines = ["## A square-root input", "",
             "In anchor space a pixel's shot noise grows as sqrt(u), so a linear 8-bit grid fine enough for the "
             "shadows clips the highlights, and one that spans white at the sub-range's lowest noise is coarse against "
             "the shadows' noise. On x = sqrt(max(u, 0)) the shot noise has one size at every intensity "
             "(`QATConfig.input_map = \"sqrt\"`; the runners and the manifest's residual_base apply it, the residual "
             "goes onto the squared int8 input). The input alone (`int8_input_map.md`: the float network on its "
             "rounded input, no QAT) costs " + " / ".join(f"{sqrt(rows[n]):.3f}" for n in names) +
             " dB on a square-root grid over [0, sqrt(white)] against " +
             " / ".join(f"{learned(rows[n]):.3f}" for n in names) + f" dB on the shipped learned linear grids "
             f"({', '.join(names)}).", ""]
    for name, model in result["models"].items():
        mapped = {k: v for k, v in model["variants"].items() if VARIANTS.get(k) is not None
                  and VARIANTS[k].input_map != "linear"}
        for label, r in mapped.items():
            plain = dataclasses.asdict(dataclasses.replace(VARIANTS[label], input_map="linear", adapt_steps=0))
            twin = next((k for k, v in model["variants"].items() if stored_qat_config(v["config"]) == plain), None)
            against = f" (linear input, '{twin}': {model['variants'][twin]['drop_db']:+.3f} dB)" if twin else ""
            gate = gate_note(r, model["variants"].get(twin))
            lines.append(f"- {name}, '{label}': {r['drop_db']:+.3f} dB{against}{gate}.")
    lines += ["", "A network trained on u does not take the square-root input as it is: QAT alone from the u-trained "
              "weights cannot move that far. Float steps that first adapt the network to the map (the same loss, "
              "fake quant off; `QATConfig.adapt_steps`) gain most at the sub-range's lowest levels, where the linear "
              "input clips the highlights (`int8_clipping_fan-nsma-0.md`); at its top levels the adapted network "
              "has not caught up with the u-trained float one it is measured against" + adaptation_gap(result)
              + ". For the higher "
              "sub-ranges (fan-nsma-1, fan-nsma-3) the same recipe loses more than the linear one on these held-out "
              "crops, yet meets the bounds on fad-export's validation patches (the bullets above): the two sets "
              "disagree, the held-out crops decide, and it is not shipped. Still to do: train the sub-range models "
              "on the map from the start (their fine-tune from the student; minutes each on a GPU), then QAT them "
              "with it, and ship that array if it measures better at every level.", ""]
    return lines


def adaptation_gap(result: dict, name: str = "fan-nsma-0") -> str:
    """What the shipped square-root model's QAT weights, clipped but unrounded, lose against the
    float model at each level (int8_sensitivity.py --held-out's result), as a clause; empty where that
    result is not of this table's model (its float model scores otherwise on the same crops)."""
    path = RESULTS / f"int8_sensitivity_{name}_held-out.json"
    if not path.is_file():
        return ""
    measured = json.loads(path.read_text())
    if round(measured["start_fp32_db"], 3) != round(result["models"].get(name, {}).get("float_db", 0.0), 3):
        return ""
    levels = measured["per_level"]
    gap = [levels["start_fp32_db"][lv] - db for lv, db in levels["fp32_db"].items()]
    return (f" (`int8_sensitivity_{name}_held-out.md`: the shipped row's QAT weights with their activations "
            f"clipped to the learned ranges but not rounded score {' / '.join(f'{g:.3f}' for g in gap)} dB below "
            f"{name}'s float model per level: at the top that is no rounding)")


def loss_section(result: dict) -> list[str]:
    """The QAT loss against the metric: the lr 1.5e-3 row and its twins that change only the loss."""
    sweep = dataclasses.asdict(SWEEP)
    lines = []
    for name, model in result["models"].items():
        twins = {k: r for k, r in model["variants"].items()
                 if {**stored_qat_config(r["config"]), "loss": sweep["loss"]} == sweep}
        if len(twins) < 2:
            continue
        lines.append(f"- {name}: " + "; ".join(
            f"{r['config']['loss']} {r['drop_db']:+.3f} dB (levels "
            + ", ".join(f"{v:+.3f}" for v in r["drop_by_shot"].values()) + ")" for r in twins.values()) + ".")
    if not lines:
        return []
    return ["## The loss against the metric", "",
            f"The recipe's Charbonnier loss (eps {CHARBONNIER_EPS:g}: an L1 loss) weighs an error by its size; PSNR "
            "weighs it by its square, so an L1-trained int8 network may clip a few bright pixels by a lot (fan-nsma-0's "
            "lowest levels, `int8_clipping_fan-nsma-0.md`). The lr 1.5e-3 row against the same row with another "
            "loss (rmse: one RMSE over the batch, which weighs the images with the largest errors most; drop: each "
            "image's PSNR drop against the float model), mean and per level:", ""] + lines + [""]


def options(array: str, results: Path) -> str:
    """The command-line options that name the array ``array`` (repo-relative) and the ``results`` folder, where
    not the defaults."""
    given = (("--array", REPO / array, ARRAY), ("--results", results, RESULTS))
    return "".join(f" {flag} {os.path.relpath(path.resolve(), REPO)}" for flag, path, default in given
                   if path.resolve() != default.resolve())


def markdown(result: dict, results: Path) -> str:
    lines = ["# int8 techniques, one at a time, per sub-range model and noise level", "",
             f"Made by `python benchmarks/int8_recipe.py{options(result['array'], results)}`, row by row over "
             "several sessions (the QAT s column is the time on the CPU of the session that made the row, ? "
             "where `fad-export --qat-steps` made it over several resumed runs; the latest: "
             f"{result['cpu']}, {result['threads']} thread"
             f"{'s' if result['threads'] != 1 else ''}). Drop = "
             f"RAW PSNR of the float model minus that of its fake-quant int8 network (dB; the int8 TFLite matches "
             f"the latter: parity >= 45 dB in fad-export's validation), on {result['set']}. Variants add one change "
             "each to the one above, up to the recipe `fad-export --qat` runs (QATConfig's defaults); the '+ lr' "
             "rows each set the learning rate (min_lr 50x lower) of the '+ residual onto the quantized "
             f"input' row, whose 5e-5 the recipe used before; '+ {EIGHTS.steps} steps' runs the lr 1.5e-3 row "
             f"{EIGHTS.steps // SWEEP.steps}x longer, the next row runs that at batch {NARROW.batch} for "
             f"{NARROW.steps} steps (as many pixels), then {SINGLE_INPUT.steps // NARROW.steps}x as many steps, and the "
             "recipe splits the int8 input in two (made from the same QAT, nothing retrained: int8_split_input.md; a "
             "split row is measured where its twin with one int8 input was kept); "
             "rows after it change one setting of an earlier row. A row with later cycles (steps 'first + later x "
             "each') goes on from the int8 checkpoint of the row one cycle shorter (the same weights as running "
             "all: a test), so its QAT s is its last cycle's alone. **shipped** marks the row whose settings made "
             f"the int8 checkpoint in {result['array']}/. "
             "The 16x8 rows run the TFLite file itself (int16 activations, int8 weights; the converter's kernels), "
             "exported at the crops' size. The last column: the same drop on fad-export's validation patches (the "
             "gate of the README's main command: at most 0.10 dB mean and 0.20 dB at any level), where measured: "
             f"{VALIDATION_CROPS} crops a photo; * on the {GATE_CROPS_BEFORE} crops a photo it had when the row was "
             "run (a quarter of the patches: int8_generalisation.md compares the two sets' drops and standard "
             "errors).",
             ""]
    for name, model in result["models"].items():
        shots = list(model["float_by_shot"])
        lines += [f"## {name}: a in [{model['shot_range'][0]:.3g}, {model['shot_range'][1]:.3g}]", "",
                  f"Float RAW PSNR {model['float_db']:.3f} dB (" + ", ".join(
                      f"a={s}: {v:.2f}" for s, v in model["float_by_shot"].items()) + ").", "",
                  "| variant | steps x batch, crop | QAT s | drop dB | " + " | ".join(f"a={s}" for s in shots) +
                  " | fad-export's patches: mean / worst level dB |",
                  "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in shots) + " | ---: |"]
        for variant in (v for v in VARIANTS if v in model["variants"]):
            r = model["variants"][variant]
            c = r["config"]
            qat_s = (f"{r['qat_s']:.0f}" if r["qat_s"] else "?") + \
                (f" ({r['qat_device']})" if r.get("qat_device") not in (None, "cpu") else "")
            gate = gate_cell(r) if "gate_drop_db" in r else ""
            steps = (f"{c['steps']} + {c.get('restarts', 1)} x {c['continue_steps']}" if c.get("continue_steps")
                     else c["steps"])
            shipped = " (**shipped**)" if variant == model.get("shipped") else ""
            lines.append(f"| {variant}{shipped} | {steps} x {c['batch']}, {c['crop']} | {qat_s} | "
                         f"{r['drop_db']:+.3f} | " + " | ".join(f"{r['drop_by_shot'][s]:+.3f}" for s in shots) +
                         f" | {gate} |")
        lines.append("")
    lines += error_budget(result) + steps_projection(result)
    lines += ["## Where the signal lives: the int8 input against the noise", "",
              "The drop grows with the PSNR of the content: on these full-resolution test crops (float 53 dB at "
              "the lowest noise) it is larger than on fad-export's validation patches. The network must tell the "
              "noise from the signal, so its input needs steps well below the noise std; in anchor space the input "
              "spans ~a_A / a_min (the brightest pixel at the sub-range's lowest noise), so one per-tensor 8-bit "
              "step is a large fraction of the noise std of ordinary pixels. Step / median noise std of the "
              "recipe's (linear) int8 input, per level:", "",
              "| model | " + " | ".join(f"level {i + 1}" for i in range(4)) + " |", "| --- |" + " ---: |" * 4]
    for name, model in result["models"].items():
        if "input_step_per_noise" in model:
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f} (a={s})" for s, v in
                                                   model["input_step_per_noise"].items()) + " |")
    lines += ["", "Added to the float input, the residual cannot undo the input's rounding error: the network never "
              "sees that error, so it reaches the output untouched (uniform, step^2 / 12 in variance at every "
              "pixel; `int8_sensitivity_<model>_held-out.md` measures what the input alone costs). The recipe adds "
              "the residual to the quantized input the network saw (the input itself where it lies beyond the int8 "
              "range): the rounding error becomes one more noise the network removes (the row '+ residual onto the "
              "quantized input').", ""] + input_map_section(result, results) + loss_section(result) + [
              "## Inputs that fill the int8 grid", "",
              "Each sub-range model keeps the k-sigma anchor it was trained with (a_A in the manifest, read by "
              "every runner). Another anchor would not fill the grid better: the k-sigma map is u = x a_A / a + c, "
              "so a different a_A multiplies every input by the same factor, which the first convolution absorbs "
              "and the per-tensor input scale follows; what sets how much of the grid an image uses is the ratio "
              "a_max / a_min of the sub-range (3.3 for each of the four), unchanged by the anchor. A per-image scale "
              "would change the noise level the network sees (it is an anchor per image) and needs retraining.", ""]
    return "\n".join(lines)


def save(path: Path, result: dict, name: str) -> dict:
    """Write ``name``'s entry of ``result`` into the results file and its markdown, the file read
    again first: a run on other models may have written it meanwhile. Returns what was written."""
    current = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    current.update({k: v for k, v in result.items() if k != "models"})
    current["models"][name] = result["models"][name]
    write_json(path, current)
    write_text(path.with_suffix(".md"), markdown(current, path.parent))
    return current


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[f"fan-nsma-{i}" for i in range(4)])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--array", type=Path, default=ARRAY,
                   help="the folder of the float sub-range models (<model>.pt) and of the int8 checkpoints made from "
                        f"them (<model>.int8.pt; default: the shipped array, {ARRAY})")
    p.add_argument("--images", type=Path, default=default_cache_dir() / "photos" / "test")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="the folder of int8_recipe.json and .md (one array's: another --array needs its own); runs "
                        "on different --models may share it")
    p.add_argument("--int8-dirs", type=Path, nargs="+", default=[],
                   help="folders holding int8 checkpoints (<model>.int8.pt, e.g. fad-export --qat-steps N's "
                        "output) that are measured, instead of a new QAT, where made with a variant's settings")
    p.add_argument("--device", default="cpu", help="where new QATs train (cpu, cuda, cuda:N); measured on the CPU")
    args = p.parse_args(argv)
    path = args.results / "int8_recipe.json"
    array = os.path.relpath(args.array.resolve(), REPO)
    recorded = json.loads(path.read_text()).get("array", array) if path.is_file() else array
    if recorded != array:
        p.error(f"{path} holds the QATs of {recorded}: give --array {args.array} its own --results folder")
    torch.set_num_threads(args.threads)
    images = list(folder_images(args.images, 1, None))
    folders = (args.array, *args.int8_dirs)
    result = {"models": {}, "cpu": cpu_peak().label, "threads": args.threads, "platform": platform.platform(),
              "array": array,
              "set": f"{len(images)} test photos, {EVAL_CROPS} crops of {EVAL_CROP}x{EVAL_CROP} packed each, seed "
                     f"{EVAL_SEED}, at 4 shot levels inside each model's sub-range (read noise on UPI's line)"}
    for name in args.models:
        ckpt = load_checkpoint(args.array / f"{name}.pt")
        pairs = evaluation_set(images, ckpt.shot_range)
        gate_pairs = validation_set(ckpt.shot_range)[0]
        float_runner = TorchRunner(ckpt)
        sets = {k: (v, psnr_by_shot(denoised(float_runner, v), v)) for k, v in (("held-out", pairs),
                                                                               ("gate", gate_pairs))}
        base, base_levels = sets["held-out"][1]
        stored = json.loads(path.read_text())["models"] if path.is_file() else {}
        model = result["models"][name] = stored.get(name, {"variants": {}})
        model.update(shot_range=list(ckpt.shot_range), float_db=base, float_by_shot=base_levels,
                     shipped=shipped_variant(args.array, name))
        shipped = shipped_int8(ckpt, RECIPE, folders)[0]
        if shipped is not None:
            model["input_step_per_noise"] = input_step_per_noise(shipped, ckpt, pairs)
        for variant in args.variants:
            cfg = VARIANTS[variant]
            if cfg is LARGE_CROPS:
                large_patch_cache()
            done = model["variants"].get(variant)
            if done is not None and stored_qat_config(done["config"]) == dataclasses.asdict(cfg):
                q = shipped_int8(ckpt, cfg, folders)[0]
                if done.get("gate_crops", GATE_CROPS_BEFORE) == VALIDATION_CROPS or q is None:
                    continue  # already measured with these settings
                done["gate_drop_db"], done["gate_drop_by_shot"] = drops(q, cfg, *sets["gate"])
                done["gate_crops"] = VALIDATION_CROPS
            else:
                row = measure(ckpt, cfg, sets, folders, args.device)
                if row is None:
                    print(f"{name} {variant}: skipped (its QAT with one int8 input was not run)", flush=True)
                    continue
                model["variants"][variant] = row
            save(path, result, name)
            print(f"{name} {variant}: drop {model['variants'][variant]['drop_db']:+.3f} dB", flush=True)
        save(path, result, name)
    return result


if __name__ == "__main__":
    main()
