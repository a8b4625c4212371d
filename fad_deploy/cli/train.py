"""fad-train: train a network from a preset or YAML config."""
from __future__ import annotations

import argparse

import torch

from ..train.config import load_config, presets
from .common import user_errors


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fad-train",
        description="Train a denoiser (teacher, FAN student, baselines) on unprocessed photos with synthetic "
        "noise. Checkpoints every validation; re-running the same command resumes exactly. "
        "Scale out with `torchrun --nproc_per_node N $(which fad-train) ...` (gloo on CPU, nccl on CUDA).",
        epilog=f"presets: {', '.join(presets())}. Override any setting with key.sub=value, "
        "e.g. `fad-train charbonnier name=unet-plain model.arch=unet-plain schedule.steps=500`.",
    )
    p.add_argument("config", help="preset name or YAML config file")
    p.add_argument("overrides", nargs="*", help="settings as key.sub=value (YAML values)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--fresh", action="store_true", help="ignore a previous run in the run folder and start over")
    p.add_argument("--ship", metavar="PATH", help="also write the final checkpoint here (e.g. models/fan-student.pt)")
    p.add_argument("--half", action="store_true", help="store shipped weights in fp16 (for the large teacher)")
    return p


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import FadError

        raise FadError(f"--device {args.device}: CUDA is not available on this machine")
    from ..train.trainer import Trainer

    trainer = Trainer(cfg, args.device)
    ckpt = trainer.fit(resume=not args.fresh)
    if trainer.rank == 0:
        ckpt.save(trainer.out / "model.pt")
        if args.ship:
            ckpt.save(args.ship, half=args.half)
        print(f"{cfg.name}: {ckpt.card['steps']} steps in {ckpt.card['training_time_s']:.0f} s, "
              f"validation RAW PSNR {ckpt.card['validation_raw_psnr']:.2f} dB -> {trainer.out / 'model.pt'}")
