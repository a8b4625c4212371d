"""What the residual output buys int8: the same QAT (steps, seed, patches) of one checkpoint
with the quantized network ending in ``input + residual`` (the old export: input and output
quantizers both span the whole anchor-space range) and ending in the residual (the add in
float in the runner, as fad-export now does). Denoising RAW PSNR of PyTorch's fake-quant
network (the int8 TFLite reproduces it: parity >= 45 dB in fad-export's validation) vs fp32
on the seeded validation patches, overall and per shot level.

    python benchmarks/residual_int8.py [CHECKPOINT] [--qat-steps N] [--threads T]

Default checkpoint: models/fan-student.pt. Writes benchmarks/results/residual_int8.{md,json}.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from fad_deploy.data.synth import validation_set
from fad_deploy.export.validate import denoised, psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.quant.qat import FakeQuantRunner, QATConfig, quantization_aware_training
from fad_deploy.runners.torch_runner import TorchRunner

RESULTS = Path(__file__).parent / "results"
VARIANTS = {"int8 output = denoised (before)": False, "int8 output = residual, add in float (now)": True}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", type=Path, default=models_dir() / "fan-student.pt")
    p.add_argument("--qat-steps", type=int, default=QATConfig.steps)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    pairs, described = validation_set(ckpt.shot_range)
    base, base_levels = psnr_by_shot(denoised(TorchRunner(ckpt), pairs), pairs)
    rows = [{"variant": "PyTorch fp32", "psnr_db": base, "drop_db": 0.0, "psnr_by_shot": base_levels, "qat_s": None}]
    for name, residual in VARIANTS.items():
        start = time.time()
        q = quantization_aware_training(ckpt, dataclasses.replace(QATConfig(), steps=args.qat_steps, residual=residual,
                                                                              input_split=0))
        qat_s = time.time() - start
        mean, levels = psnr_by_shot(denoised(FakeQuantRunner(q), pairs), pairs)
        rows.append({"variant": name, "psnr_db": mean, "drop_db": base - mean, "psnr_by_shot": levels, "qat_s": qat_s})
    result = {"checkpoint": str(args.checkpoint), "qat_steps": args.qat_steps, "validation": described, "rows": rows}
    shots = list(base_levels)
    lines = [f"# int8 with the residual output: {ckpt.name}", "",
             f"Checkpoint {args.checkpoint.name}; QAT {args.qat_steps} steps (seed 0, same patches) per variant on "
             f"this shared 2-core CPU; validation: {described} ({len(pairs['noisy'])} patches). PSNR of PyTorch's "
             "fake-quant network, which the int8 TFLite matches (fad-export's parity check).", "",
             "| variant | RAW PSNR dB | drop vs fp32 dB | QAT s | " + " | ".join(f"a={s}" for s in shots) + " |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in shots) + " |"]
    for r in rows:
        qat = f"{r['qat_s']:.0f}" if r["qat_s"] else "-"
        lines.append(f"| {r['variant']} | {r['psnr_db']:.3f} | {r['drop_db']:+.3f} | {qat} | "
                     + " | ".join(f"{r['psnr_by_shot'][s]:.2f}" for s in shots) + " |")
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "residual_int8.json", result)
    write_text(args.results / "residual_int8.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
