"""Validation right after export: every exported file runs next to PyTorch on the seeded
validation patches; parity and denoising PSNR decide whether the export stands."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.noise import NoiseParams
from ..isp.metrics import psnr
from ..runners import load_runner
from ..runners.base import Runner

REFERENCE_BACKEND = {"tflite-int8": "torch-int8", "onnx-int8": "torch-int8",
                     "tflite-fp32": "torch", "onnx-fp32": "torch"}


@dataclass(frozen=True)
class Thresholds:
    parity_int8_db: float = 45.0  # int8 export vs PyTorch's fake-quant network
    parity_float_db: float = 60.0  # float export vs PyTorch fp32
    max_drop_db: float = 0.15  # denoising PSNR of tflite-int8 below PyTorch fp32


def noise_list(pairs: dict) -> list[NoiseParams]:
    return [NoiseParams(float(a), float(b)) for a, b in zip(pairs["shot"], pairs["read"])]


def denoised(runner: Runner, pairs: dict) -> np.ndarray:
    return runner.denoise(pairs["noisy"], noise_list(pairs))


def psnr_by_shot(out: np.ndarray, pairs: dict) -> tuple[float, dict[str, float]]:
    """Mean RAW PSNR over the patches, and per shot-noise level."""
    scores = np.array([psnr(o, c) for o, c in zip(out, pairs["clean"])])
    levels = {f"{s:.3g}": float(scores[pairs["shot"] == s].mean()) for s in np.unique(pairs["shot"])}
    return float(scores.mean()), levels


def validate_model(folder: Path, entry: dict, references: dict[str, Runner], pairs: dict,
                   thresholds: Thresholds, enforce_drop: bool, threads: int | None = None) -> list[dict]:
    """One row per exported file (and per PyTorch reference) with parity and PSNR, and
    whether it passes; ``enforce_drop`` applies the int8 PSNR-drop bound (QAT exports)."""
    outputs = {name: denoised(r, pairs) for name, r in references.items()}
    base_psnr, _ = psnr_by_shot(outputs["torch"], pairs)
    rows = []
    for name, out in outputs.items():
        mean, levels = psnr_by_shot(out, pairs)
        rows.append({"model": entry["name"], "backend": name, "file": "(PyTorch)", "reference": "-",
                     "parity_db": None, "psnr_db": mean, "drop_db": base_psnr - mean, "psnr_by_shot": levels,
                     "ok": True, "failed": []})
    for backend in REFERENCE_BACKEND:
        if backend not in entry["files"]:
            continue
        runner = load_runner(backend, folder, threads, model=entry["name"])
        out = denoised(runner, pairs)
        ref = REFERENCE_BACKEND[backend]
        parity = psnr(out, outputs[ref])
        mean, levels = psnr_by_shot(out, pairs)
        failed = []
        bound = thresholds.parity_int8_db if ref == "torch-int8" else thresholds.parity_float_db
        if not parity >= bound:
            failed.append(f"parity {parity:.2f} dB < {bound} dB")
        if backend == "tflite-int8" and enforce_drop and not base_psnr - mean <= thresholds.max_drop_db:
            failed.append(f"PSNR drop {base_psnr - mean:.3f} dB > {thresholds.max_drop_db} dB")
        rows.append({"model": entry["name"], "backend": backend, "file": entry["files"][backend]["file"],
                     "reference": ref, "parity_db": parity, "psnr_db": mean, "drop_db": base_psnr - mean,
                     "psnr_by_shot": levels, "ok": not failed, "failed": failed})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of the validation rows (per-noise PSNR in a second table)."""
    lines = ["| model | backend | file | parity vs | parity dB | RAW PSNR dB | drop vs fp32 dB | ok |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        parity = f"{r['parity_db']:.2f}" if r["parity_db"] is not None else "-"
        ok = "yes" if r["ok"] else "NO: " + "; ".join(r["failed"])
        lines.append(f"| {r['model']} | {r['backend']} | {r['file']} | {r['reference']} | {parity} | "
                     f"{r['psnr_db']:.3f} | {r['drop_db']:+.3f} | {ok} |")
    shots = list(rows[0]["psnr_by_shot"]) if rows else []
    lines += ["", "RAW PSNR (dB) per shot-noise level a:", "",
              "| model | backend | " + " | ".join(f"a={s}" for s in shots) + " |",
              "| --- | --- | " + " | ".join("---:" for _ in shots) + " |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['backend']} | " + " | ".join(f"{r['psnr_by_shot'][s]:.2f}" for s in shots) + " |")
    return "\n".join(lines)
