"""Issue 18's quality check: the FAN configuration chosen by measured latency (the fastest
within the MAC budget in fan_config_search.md) against today's configuration at equal
training, on photos never used in training (Table 1 style).

Both train on the Table 1 schedule (Charbonnier, the same steps, data and seed, from
scratch): today's is models/ablations/fan-charbonnier.pt (quality.py's Table 1 row); the
chosen one is trained here with the same command plus the configuration's overrides,
through fad-train (its run folder resumes an interrupted run), and shipped to
models/ablations/fan-fast-charbonnier.pt with a card. Both are then measured with fad-eval
on quality.py's Table 1 set.

    python benchmarks/fan_config_quality.py [--threads 2]

Writes benchmarks/results/fan_config_quality.md and .json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

from fad_deploy.cli.eval import run as fad_eval
from fad_deploy.data.photos import default_cache_dir
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.cpu import cpu_peak

RESULTS = Path(__file__).parent / "results"
TODAY, CHOSEN = "fan-charbonnier", "fan-fast-charbonnier"
EVAL = ["--crops-per-image", "2", "--levels", "6"]  # quality.py's Table 1 set


def chosen_overrides() -> dict:
    """The fastest candidate of the committed configuration search (int8, 1 thread, vs PMRID)."""
    search = json.loads((RESULTS / "fan_config_search.json").read_text())
    return min(search["candidates"], key=lambda c: c["vs_pmrid"]["int8 x1"])["overrides"]


def train_command(overrides: dict, threads: int, ship: Path) -> list[str]:
    """fan-charbonnier's own command (its card) with the configuration's overrides."""
    today = load_checkpoint(models_dir() / "ablations" / f"{TODAY}.pt")
    steps = today.card["config"]["schedule"]["steps"]
    sets = [f"model.config.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in overrides.items()]
    return ["fad-train", "charbonnier", f"name={CHOSEN}", f"schedule.steps={steps}", *sets,
            "--threads", str(threads), "--ship", str(ship)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", default=str(default_cache_dir() / "photos" / "test"))
    args = p.parse_args(argv)
    overrides = chosen_overrides()
    ship = models_dir() / "ablations" / f"{CHOSEN}.pt"
    command = train_command(overrides, args.threads, ship)
    if not ship.is_file():
        print(" ".join(command), flush=True)
        if subprocess.run(command).returncode:
            sys.exit("fan_config_quality: training failed")
    eval_args = ["--images", args.images, TODAY, CHOSEN, "--threads", str(args.threads), *EVAL]
    result = fad_eval(eval_args)
    by = {r["model"]: r for r in result["results"]}
    cards = {n: load_checkpoint(models_dir() / "ablations" / f"{n}.pt").card for n in (TODAY, CHOSEN)}
    search = {c["label"]: c for c in json.loads((RESULTS / "fan_config_search.json").read_text())["candidates"]}
    latency = next(c for c in search.values() if c["overrides"] == overrides)
    peak = cpu_peak()
    out = {"cpu": f"{peak.model} ({peak.simd}{', VNNI' if peak.vnni else ''})", "platform": platform.platform(),
           "overrides": overrides, "train_command": command, "eval": eval_args, "set": result["set"],
           "results": {n: by[n] for n in (TODAY, CHOSEN)}, "per_level": result["per_level"],
           "training_time_s": {n: cards[n].get("training_time_s") for n in cards},
           "latency_vs_pmrid": latency["vs_pmrid"], "gmacs_per_megapixel": latency["gmacs_per_megapixel"]}
    write_json(RESULTS / "fan_config_quality.json", out)
    rows = ["| configuration | GMACs/MP | int8 / PMRID (1 / 2 thr) | training s | RAW PSNR | RAW SSIM | RGB PSNR | RGB SSIM |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    paper = search["paper (today)"]
    for n, label, lat in ((TODAY, "today's (the paper's widths)", paper), (CHOSEN, latency["label"], latency)):
        r = by[n]
        rows.append(f"| {label} ({n}) | {lat['gmacs_per_megapixel']:.3f} | {lat['vs_pmrid']['int8 x1']:.2f} / "
                    f"{lat['vs_pmrid']['int8 x2']:.2f} | {cards[n].get('training_time_s', 0):.0f} | "
                    f"{r['raw_psnr']:.3f} | {r['raw_ssim']:.4f} | {r['rgb_psnr']:.3f} | {r['rgb_ssim']:.4f} |")
    levels = {n: result["per_level"][f"{n} [torch]"] for n in (TODAY, CHOSEN)}
    per_level = ["| configuration | " + " | ".join(f"a={lv['shot']:.2g}" for lv in levels[TODAY]) + " |",
                 "|---|" + "---:|" * len(levels[TODAY])]
    per_level += [f"| {n} | " + " | ".join(f"{lv['raw_psnr']:.2f}" for lv in levels[n]) + " |" for n in levels]
    diff = by[CHOSEN]["raw_psnr"] - by[TODAY]["raw_psnr"]
    write_text(RESULTS / "fan_config_quality.md", "\n".join([
        "# The latency-chosen FAN configuration at equal training", "",
        f"Made by `python benchmarks/fan_config_quality.py --threads {args.threads}` on {out['cpu']}. Both networks "
        f"trained on the Table 1 schedule from scratch (`{' '.join(command)}`; today's: the same without the "
        f"`model.config` overrides, its card). Set: {result['set']}. Latency ratios from "
        "fan_config_search.md (same run for both).", "",
        "\n".join(rows), "",
        f"The chosen configuration is {diff:+.3f} dB RAW PSNR against today's at equal training.", "",
        "RAW PSNR per shot level (dB):", "", "\n".join(per_level), ""]))
    print(f"wrote {RESULTS / 'fan_config_quality.md'}: chosen {diff:+.3f} dB vs today's")


if __name__ == "__main__":
    main()
