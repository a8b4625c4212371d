"""Training throughput of fad-train's options (issue 19's GPU lever, measured): patches per
second of the FAN student's training (distillation + feature matching from the teacher) and
of FAN's Charbonnier pretraining, with batches made by NumPy per image or on the device
(``data.synthesis=device``), in NCHW or channels-last (``--channels-last``), eager or through
``torch.compile`` (``--compile``). Each variant is a real fad-train Trainer: ``--warmup``
steps first (compilation, cuDNN autotuning), then ``--steps`` timed by the trainer's own
clock (validation excluded).

    python benchmarks/train_speed.py [--device cuda] [--batch 128] [--steps 200]

Writes benchmarks/results/train_speed-<device>.{md,json}; on a CPU it is the dry run of
what benchmarks/train_gpu.sh does on a GPU.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from fad_deploy.fileio import write_json, write_text
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.train.config import load_config
from fad_deploy.train.trainer import Trainer

RESULTS = Path(__file__).parent / "results"
PRESETS = {"student (KD + feature matching)": "fan-student", "pretraining (Charbonnier)": "charbonnier"}
# label -> (data.synthesis, channels_last, compile)
VARIANTS = {
    "NumPy batches, NCHW": ("numpy", False, False),
    "device batches, NCHW": ("device", False, False),
    "device batches, channels-last": ("device", True, False),
    "device batches, channels-last, compiled": ("device", True, True),
}


def patches_per_s(preset: str, variant: tuple, args, out: Path) -> float:
    synthesis, channels_last, compile_ = variant
    cfg = load_config(preset, [f"out={out}", f"data.batch={args.batch}", f"data.synthesis={synthesis}",
                               "schedule.steps=1000000", "schedule.val_every=1000000"])
    trainer = Trainer(cfg, args.device, command="train_speed", channels_last=channels_last, compile=compile_)
    trainer.fit(resume=False, until=args.warmup)
    before = trainer.elapsed
    trainer.fit(resume=False, until=args.warmup + args.steps)
    return args.steps * args.batch / (trainer.elapsed - before)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, preset in PRESETS.items():
            for label, variant in VARIANTS.items():
                rows.setdefault(kind, {})[label] = patches_per_s(preset, variant, args, Path(tmp) / f"{preset}-{label}")
                print(f"{kind}, {label}: {rows[kind][label]:.0f} patches/s", flush=True)
    if args.device.startswith("cuda"):
        where = torch.cuda.get_device_name(args.device)
    else:
        peak = cpu_peak()
        where = f"{peak.label}, {args.threads} threads"
    result = {"device": args.device, "where": where, "platform": platform.platform(), "torch": torch.__version__,
              "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "patches_per_s": rows}
    name = f"train_speed-{args.device.split(':')[0]}"
    write_json(RESULTS / f"{name}.json", result)
    labels = list(VARIANTS)
    lines = [f"# fad-train throughput on {where}", "",
             f"Made by `python benchmarks/train_speed.py --device {args.device} --batch {args.batch} --steps "
             f"{args.steps} --warmup {args.warmup} --threads {args.threads}` (torch {torch.__version__}). "
             f"Patches of 64x64 packed per second over {args.steps} steps of {args.batch}, after {args.warmup} "
             "warm-up steps, by the trainer's own clock (validation excluded); in brackets, against the first "
             "column.", "",
             "| training | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for kind, by in rows.items():
        base = by[labels[0]]
        lines.append(f"| {kind} | " + " | ".join(f"{by[v]:.0f} ({by[v] / base:.2f}x)" for v in labels) + " |")
    write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print(f"wrote {RESULTS / name}.md")
    return result


if __name__ == "__main__":
    main()
