"""Validation right after export: every exported file runs next to PyTorch on the seeded
validation patches; parity and denoising PSNR decide whether the export stands."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.synth import noise_list
from ..errors import FadError
from ..isp.metrics import psnr
from ..quant.int16 import INT16_BACKEND
from ..runners import load_runner
from ..runners.base import Runner, check_packed, noise_arrays, postprocess, preprocess
from .thresholds import Thresholds

# backend -> (the PyTorch reference it must reproduce, the Thresholds field bounding that parity)
REFERENCE_BACKEND = {"tflite-int8": ("torch-int8", "parity_int8_db"), "onnx-int8": ("torch-int8", "parity_int8_db"),
                     "tflite-int16": (INT16_BACKEND, "parity_int16_db"), "tflite-fp32": ("torch", "parity_float_db"),
                     "onnx-fp32": ("torch", "parity_float_db")}
QUANTIZED_TFLITE = ("tflite-int8", "tflite-int16")  # held to the PSNR-drop bound


def denoised(runner: Runner, pairs: dict) -> np.ndarray:
    return runner.denoise(pairs["noisy"], noise_list(pairs))


def outputs(runner: Runner, pairs: dict, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The network's own output (anchor space) and the denoised RAW, as Runner.denoise does;
    with ``size``, each input edge-padded to that packed size and the outputs cropped back."""
    noise = noise_arrays(noise_list(pairs), len(pairs["noisy"]))
    u = preprocess(check_packed(pairs["noisy"]), noise, runner.anchor)
    h, w = u.shape[-2:]
    if size is not None:
        u = np.pad(u, ((0, 0), (0, 0), (0, size[0] - h), (0, size[1] - w)), mode="edge")
    y = runner.run(u)[..., :h, :w]
    return y, postprocess(y, noise, runner.anchor)


def fixed_size(runner: Runner, pairs: dict) -> tuple[int, int] | None:
    """The size a runner that takes only its own input size (a 16x8 TFLite) needs the
    patches padded to; None where it runs them as they are."""
    hw = tuple(pairs["noisy"].shape[-2:])
    if runner.input_size is None or runner.multiple is not None or runner.input_size == hw:
        return None
    if any(p > s for p, s in zip(hw, runner.input_size)):
        raise FadError(f"validation patches of {hw[0]}x{hw[1]} exceed the model's {runner.input_size} input")
    return runner.input_size


def parity(y: np.ndarray, reference: np.ndarray) -> float:
    """PSNR of a network output against the reference output, peak = the reference's range.

    Measured in the network's output space: in denoised RAW space the k-sigma inverse
    multiplies every difference by a / a_A (up to ~11 at the highest noise of the full
    range), so a one-step int8 rounding difference there says more about the noise level
    than about the conversion; that number is reported as ``parity_raw_db``.
    """
    return psnr(y, reference, data_range=float(reference.max() - reference.min()))


def patch_psnr(out: np.ndarray, pairs: dict) -> np.ndarray:
    """The RAW PSNR of each patch."""
    return np.array([psnr(o, c) for o, c in zip(out, pairs["clean"])])


def psnr_by_shot(out: np.ndarray, pairs: dict) -> tuple[float, dict[str, float]]:
    """Mean RAW PSNR over the patches, and per shot-noise level."""
    scores = patch_psnr(out, pairs)
    levels = {f"{s:.3g}": float(scores[pairs["shot"] == s].mean()) for s in np.unique(pairs["shot"])}
    return float(scores.mean()), levels


def over(value: float, bound: float) -> str:
    """``value`` (above ``bound``) with the decimals it takes to read as above it: 0.1004, not 0.100."""
    decimals = 3
    while decimals < 9 and not float(f"{value:.{decimals}f}") > bound:
        decimals += 1
    return f"{value:.{decimals}f}"


def drop_failures(drop: float, level_drops: dict[str, float], thresholds: Thresholds) -> list[str]:
    """Why an int8 model's PSNR drop (mean, and per noise level) misses the bounds, if it does."""
    failed = [] if drop <= thresholds.max_drop_db else [
        f"PSNR drop {over(drop, thresholds.max_drop_db)} dB > {thresholds.max_drop_db} dB"]
    worst = max(level_drops, key=level_drops.get)
    if not level_drops[worst] <= thresholds.max_level_drop_db:
        failed.append(f"PSNR drop {over(level_drops[worst], thresholds.max_level_drop_db)} dB at a={worst} > "
                      f"{thresholds.max_level_drop_db} dB")
    return failed


def validate_model(folder: Path, entry: dict, references: dict[str, Runner], pairs: dict,
                   thresholds: Thresholds, enforce_drop: bool, threads: int | None = None) -> list[dict]:
    """One row per exported file (and per PyTorch reference) with parity and PSNR, and
    whether it passes; ``enforce_drop`` applies the int8 PSNR-drop bound (QAT exports)."""
    refs = {name: outputs(r, pairs) for name, r in references.items()}
    base_psnr, base_levels = psnr_by_shot(refs["torch"][1], pairs)
    rows = []
    for name, (_, x) in refs.items():
        mean, levels = psnr_by_shot(x, pairs)
        rows.append({"model": entry["name"], "backend": name, "file": "(PyTorch)", "reference": "-",
                     "parity_db": None, "parity_raw_db": None, "psnr_db": mean, "drop_db": base_psnr - mean,
                     "psnr_by_shot": levels, "ok": True, "failed": []})
    for backend in REFERENCE_BACKEND:
        if backend not in entry["files"]:
            continue
        runner = load_runner(backend, folder, threads, model=entry["name"])
        size = fixed_size(runner, pairs)  # then the references run the same padded inputs
        y, x = outputs(runner, pairs, size)
        ref, bound_field = REFERENCE_BACKEND[backend]
        ref_y, ref_x = refs[ref] if size is None else outputs(references[ref], pairs, size)
        float_psnr, float_levels = (base_psnr, base_levels) if size is None else psnr_by_shot(
            outputs(references["torch"], pairs, size)[1], pairs)
        match = parity(y, ref_y)
        mean, levels = psnr_by_shot(x, pairs)
        failed = []
        bound = getattr(thresholds, bound_field)
        if not match >= bound:
            failed.append(f"parity {match:.2f} dB < {bound} dB")
        if backend in QUANTIZED_TFLITE and enforce_drop:
            failed += drop_failures(float_psnr - mean, {s: float_levels[s] - v for s, v in levels.items()},
                                    thresholds)
        rows.append({"model": entry["name"], "backend": backend, "file": entry["files"][backend]["file"],
                     "reference": ref, "parity_db": match, "parity_raw_db": psnr(x, ref_x), "psnr_db": mean,
                     "drop_db": float_psnr - mean, "psnr_by_shot": levels, "ok": not failed, "failed": failed})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of the validation rows (per-noise PSNR in a second table)."""
    lines = ["| model | backend | file | parity vs | parity dB | parity (RAW) dB | RAW PSNR dB | drop vs fp32 dB | ok |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        dbs = [f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("parity_db", "parity_raw_db")]
        ok = "yes" if r["ok"] else "NO: " + "; ".join(r["failed"])
        lines.append(f"| {r['model']} | {r['backend']} | {r['file']} | {r['reference']} | {dbs[0]} | {dbs[1]} | "
                     f"{r['psnr_db']:.3f} | {r['drop_db']:+.3f} | {ok} |")
    lines += ["", "RAW PSNR (dB) per shot-noise level a:"]
    for shots in dict.fromkeys(tuple(r["psnr_by_shot"]) for r in rows):  # one table per validation set
        lines += ["", "| model | backend | " + " | ".join(f"a={s}" for s in shots) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in shots) + " |"]
        for r in rows:
            if tuple(r["psnr_by_shot"]) == shots:
                lines.append(f"| {r['model']} | {r['backend']} | "
                             + " | ".join(f"{r['psnr_by_shot'][s]:.2f}" for s in shots) + " |")
    return "\n".join(lines)
