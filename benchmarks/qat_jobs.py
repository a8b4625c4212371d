"""QAT side by side or one at a time: the QAT steps per second this CPU gets through with one
process using every core against one process per core (one thread each), on a shipped
sub-range model with the recipe's batch and crop. A QAT step is small (batch 4 of 64x64
crops through ~90 fake quantizers), so one process does not keep several cores busy: this
is what `fad-export --jobs` (its default: one process per core) rests on.

    python benchmarks/qat_jobs.py [--steps 300] [--model fan-nsma-3]

Writes benchmarks/results/qat_jobs.{md,json}. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from fad_deploy.fileio import write_json, write_text
from fad_deploy.profile.cpu import cpu_peak

RESULTS = Path(__file__).parent / "results"


def one_qat(model: str, steps: int, threads: int) -> float:
    """Steps per second of one QAT (the recipe at ``steps`` steps) on ``threads`` threads, set-up excluded."""
    import torch

    from fad_deploy.models.registry import load_checkpoint, models_dir
    from fad_deploy.quant.qat import quantization_aware_training
    from fad_deploy.quant.recipe import QATConfig

    torch.set_num_threads(threads)
    ckpt = load_checkpoint(models_dir() / "nsma" / f"{model}.pt")
    quantization_aware_training(ckpt, dataclasses.replace(QATConfig(), steps=2, observe_steps=1), progress=False)
    start = time.perf_counter()  # the patch cache and imports are warm now
    quantization_aware_training(ckpt, dataclasses.replace(QATConfig(), steps=steps), progress=False)
    return steps / (time.perf_counter() - start)


def side_by_side(model: str, steps: int, processes: int, threads: int) -> list[float]:
    """Each process's steps per second, ``processes`` QATs started together."""
    command = [sys.executable, __file__, "--one", model, str(steps), str(threads)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    rates = []
    for run in runs:
        out, _ = run.communicate()
        if run.returncode:
            sys.exit(f"qat_jobs: a QAT process failed (exit {run.returncode})")
        rates.append(float(out.strip().splitlines()[-1]))
    return rates


def markdown(result: dict) -> str:
    lines = ["# QAT one at a time or side by side", "",
             f"Made by `python benchmarks/qat_jobs.py --steps {result['steps']} --model {result['model']}` on "
             f"{result['cpu']}, {result['cores']} cores. QAT steps per second of the recipe (batch and crop of "
             "`QATConfig`'s defaults), set-up excluded; side by side: the processes started together, their rates "
             "added.", "",
             "| processes x threads | steps/s per process | steps/s in all | vs one process on every core |",
             "| --- | --- | ---: | ---: |"]
    base = result["rows"][0]["total"]
    for row in result["rows"]:
        lines.append(f"| {row['processes']} x {row['threads']} | " + ", ".join(f"{r:.2f}" for r in row["rates"]) +
                     f" | {row['total']:.2f} | {row['total'] / base:.2f}x |")
    return "\n".join(lines + [""])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model", default="fan-nsma-3")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # a child process: MODEL STEPS THREADS
    args = p.parse_args(argv)
    if args.one:
        print(one_qat(args.one[0], int(args.one[1]), int(args.one[2])), flush=True)
        return {}
    cores = len(os.sched_getaffinity(0))
    peak = cpu_peak()
    rows = []
    for processes, threads in ((1, cores), (cores, 1)):
        rates = side_by_side(args.model, args.steps, processes, threads)
        rows.append({"processes": processes, "threads": threads, "rates": rates, "total": sum(rates)})
        print(f"{processes} x {threads}: {sum(rates):.2f} steps/s", flush=True)
    result = {"cpu": peak.label, "cores": cores,
              "platform": platform.platform(), "model": args.model, "steps": args.steps, "rows": rows}
    write_json(RESULTS / "qat_jobs.json", result)
    write_text(RESULTS / "qat_jobs.md", markdown(result))
    return result


if __name__ == "__main__":
    main()
