"""fad-train: train a network from a preset or YAML config."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path

from ..checks import checkpoint_output, non_empty, non_negative_int, positive_int, require_not_input, \
    thread_count
from ..errors import FadError, count
from ..fileio import sole_writer
from ..train.config import load_config, presets
from .common import OneLineParser, device, require_device, user_errors

DESCRIPTION = """\
Train a denoiser (teacher, FAN student, baselines) on unprocessed photos with
synthetic noise. Writes runs/<name>/ (or out=DIR): log.csv, config.json, last.pt
and model.pt with its model card, at every validation; re-running the same
command resumes exactly where it stopped.

Several processes (gloo on CPU, nccl on CUDA), e.g.:
  torchrun --nproc_per_node 2 $(which fad-train) teacher
"""
EPILOG = """\
presets: {presets}
Override any setting with key.sub=value (values are YAML), e.g.:
  fad-train charbonnier name=unet-plain model.arch=unet-plain schedule.steps=500
  fad-train fan-student model.init=models/ablations/fan-charbonnier.pt schedule.lr=5e-4
"""


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fad-train",
        description=DESCRIPTION,
        epilog=EPILOG.format(presets=", ".join(presets())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=non_empty, help="preset name or YAML config file")
    p.add_argument("overrides", nargs="*", default=[], help="settings as key.sub=value (YAML values)")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=thread_count, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                   help="processes that make batches ahead of training (default 0: the training process "
                        "makes them; use 4-8 with --device cuda, where the noise synthesis is the bottleneck, or "
                        "make them on the GPU with data.synthesis=device)")
    p.add_argument("--channels-last", action="store_true",
                   help="run the networks and batches in channels-last (NHWC) memory layout")
    p.add_argument("--compile", action="store_true",
                   help="compile the trained network with torch.compile (the first steps wait for it)")
    p.add_argument("--fresh", action="store_true", help="start over in the run folder: a previous run's files there "
                   "(last.pt, model.pt, log.csv) are removed first")
    p.add_argument("--ship", metavar="PATH", type=checkpoint_output,
                   help="also write the checkpoint the run ends with here (e.g. models/fan-student.pt; with "
                        "--until, that step's)")
    p.add_argument("--half", action="store_true", help="store --ship's weights in fp16 (for the large teacher)")
    p.add_argument("--until", type=positive_int, metavar="STEP",
                   help="stop after this step, keeping the schedule (re-run without it to continue)")
    return p


def training_inputs(cfg) -> list[tuple[str, Path]]:
    """The files a training run reads that its settings name (what --ship must not overwrite)."""
    from ..models.registry import resolve_model

    found = [(setting, Path(value)) for setting, value in (("data.cache", cfg.data.cache),
                                                            ("loss.vgg_weights", cfg.loss.vgg_weights)) if value]
    if cfg.model.init:
        found.append(("model.init", resolve_model(cfg.model.init)))
    if cfg.loss.distillation or cfg.loss.feature_matching:
        found.append(("loss.teacher", resolve_model(cfg.loss.teacher)))
    return found


def resume_note(trainer, argv: list[str]) -> str:
    """How an interrupted run goes on: the same command (less --fresh, however abbreviated) from
    its last saved checkpoint."""
    again = shlex.join(["fad-train", *(a for a in argv if not (len(a) > 2 and "--fresh".startswith(a)))])
    if trainer.saved_step is None:
        return (f"no checkpoint yet (one every {trainer.cfg.schedule.val_every} steps): {again} starts the run "
                "again")
    return f"{again} resumes the run from its checkpoint of step {trainer.saved_step}"


@user_errors
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_intermixed_args(argv)  # key=value overrides before or after the options
    import torch  # not needed for --help

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    if args.half and not args.ship:
        raise FadError("--half stores --ship's weights in fp16: add --ship PATH")
    require_not_input(args.ship, training_inputs(cfg), "argument --ship")
    require_device(args.device)
    from ..train.trainer import Trainer

    if args.workers and cfg.data.synthesis == "device":
        raise FadError("--workers make numpy batches, but data.synthesis=device makes them on the device: "
                       "drop one of the two")
    trainer = Trainer(cfg, args.device, command=shlex.join(["fad-train", *argv]), workers=args.workers,
                      channels_last=args.channels_last, compile=args.compile)
    if args.ship and args.ship.resolve() in (trainer.state_path().resolve(), trainer.model_path().resolve()):
        raise FadError(f"argument --ship: {args.ship} is the run's own {args.ship.name} (its resume state or "
                       "model); ship to another file")
    try:
        with sole_writer(trainer.out, "fad-train") if trainer.rank == 0 else contextlib.nullcontext():
            ckpt = trainer.fit(resume=not args.fresh, until=args.until)
            if trainer.rank == 0:
                ckpt.save(trainer.model_path())
                if args.ship:
                    ckpt.save(args.ship, half=args.half)
    except KeyboardInterrupt as e:
        e.add_note(resume_note(trainer, argv))
        raise
    if trainer.rank == 0:
        kept = f" (the weights of step {ckpt.card['kept_best_of_step']}, best on validation)" \
            if "kept_best_of_step" in ckpt.card else ""
        print(f"{cfg.name}: {count(ckpt.card['steps'], 'step')} in {ckpt.card['training_time_s']:.0f} s, "
              f"validation RAW PSNR {ckpt.card['validation_raw_psnr']:.2f} dB{kept} -> {trainer.out / 'model.pt'}"
              + (f", {args.ship}" if args.ship else ""))
