"""Issue 18's quality check: FAN configurations chosen by measured latency (candidates of
fan_config_search.py by their keys; its table ranks them by int8 time at 1 thread against
PMRID) against today's configuration at equal training, on photos never used in training
(Table 1 style).

All train on the Table 1 schedule (Charbonnier, the same steps, data and seed, from
scratch): today's is models/ablations/fan-charbonnier.pt (quality.py's Table 1 row); each
candidate is trained here with the same command plus its configuration's overrides,
through fad-train (its run folder resumes an interrupted run), and shipped to
models/ablations/fan-<key>-charbonnier.pt with a card. All are then measured with fad-eval
on quality.py's Table 1 set.

    python benchmarks/fan_config_quality.py --candidates KEY [KEY ...] [--seeds 0 1] [--steps N] [--search-tag T]

--seeds trains each candidate once per seed (seed 0 is the Table 1 seed; another seed N ships
as fan-<key>-charbonnier-seedN), so the table says how far a run moves with its seed; it is
written to fan_config_quality-seeds.{md,json}. --steps N trains them N steps instead of the
Table 1 schedule's 2,400 (the same schedule stretched: models fan-<key>-charbonnier-stepsN,
results fan_config_quality-stepsN.{md,json}), so candidates close at 2,400 steps can be
compared nearer convergence; give the key "today" among them for today's configuration.

Writes benchmarks/results/fan_config_quality.md and .json (with several --seeds: -seeds.md; with
--search-tag T, which quotes the latencies of another CPU's search, -T at the end).
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
from fad_deploy.profile.side_by_side import simd_flags
from fan_config_search import fad_train_settings
from fan_vs_pmrid import stem
from quality import add_params, write_model_cards

RESULTS = Path(__file__).parent / "results"
TODAY = "fan-charbonnier"
EVAL = ["--crops-per-image", "2", "--levels", "6"]  # quality.py's Table 1 set


def ranked_candidates(search: dict) -> list[dict]:
    """The configuration search's candidates, fastest first (int8, 1 thread, vs PMRID)."""
    return sorted(search["candidates"], key=lambda c: c["vs_pmrid"]["int8 x1"])


def table1_steps() -> int:
    """The Table 1 schedule's steps (fan-charbonnier's card)."""
    return load_checkpoint(models_dir() / "ablations" / f"{TODAY}.pt").card["config"]["schedule"]["steps"]


def model_name(key: str, seed: int = 0, steps: int | None = None) -> str:
    return f"fan-{key}-charbonnier" + (f"-steps{steps}" if steps else "") + (f"-seed{seed}" if seed else "")


def train_command(name: str, overrides: dict, seed: int, steps: int, threads: int, ship: Path) -> list[str]:
    """fan-charbonnier's own command (its card) with the configuration's overrides (seed, steps)."""
    sets = fad_train_settings(overrides)
    seeded = [f"seed={seed}"] if seed else []
    return ["fad-train", "charbonnier", f"name={name}", f"schedule.steps={steps}", *sets, *seeded,
            "--threads", str(threads), "--ship", str(ship)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", nargs="+", required=True, metavar="KEY",
                   help="fan_config_search.py's candidates by key (in its table's first column)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="N",
                   help="training seeds, each candidate trained once per seed (default: 0, the Table 1 seed)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="training steps (default: the Table 1 schedule's, 2,400); other than that, give the key "
                        "'today' too, the reference at the same steps")
    p.add_argument("--search-tag", metavar="TAG",
                   help="quote the latencies of fan_config_search.py --tag TAG (another CPU's run)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", default=str(default_cache_dir() / "photos" / "test"))
    args = p.parse_args(argv)
    search = stem("fan_config_search", args.search_tag)
    if not (RESULTS / f"{search}.json").is_file():
        p.error(f"--search-tag: no {search}.json in {RESULTS} (run fan_config_search.py --tag {args.search_tag})")
    searched = json.loads((RESULTS / f"{search}.json").read_text())
    ranked = ranked_candidates(searched)
    by_key = {c["key"]: c for c in ranked}
    unknown = [k for k in args.candidates if k not in by_key]
    if unknown:
        p.error(f"--candidates: not in {search}.json: {', '.join(unknown)} (known: {', '.join(by_key)})")
    if any(seed < 0 for seed in args.seeds):
        p.error("--seeds: a seed is a non-negative integer")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps: a positive number of training steps, got {args.steps}")
    if args.threads < 1:
        p.error(f"--threads: at least 1, got {args.threads}")
    schedule = table1_steps()
    steps = args.steps or schedule
    stretched = steps if steps != schedule else None  # names and files carry the steps
    if stretched and "today" not in args.candidates:
        p.error(f"--steps {steps}: give the key 'today' among --candidates (the reference at {steps} steps)")
    chosen = {model_name(k, seed, stretched): by_key[k] for k in args.candidates for seed in args.seeds}
    seeds = {model_name(k, seed, stretched): seed for k in args.candidates for seed in args.seeds}
    reference = model_name("today", args.seeds[0], stretched) if stretched else TODAY
    commands = {}
    for name, candidate in chosen.items():
        ship = models_dir() / "ablations" / f"{name}.pt"
        commands[name] = train_command(name, candidate["overrides"], seeds[name], steps, args.threads, ship)
        if not ship.is_file():
            print(" ".join(commands[name]), flush=True)
            if subprocess.run(commands[name]).returncode:
                sys.exit(f"fan_config_quality: training {name} failed")
    eval_args = ["--images", args.images, TODAY, *chosen, "--threads", str(args.threads), *EVAL]
    invocation = f"--candidates {' '.join(args.candidates)}" + (
        f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0] else "") + (
        f" --steps {stretched}" if stretched else "") + (f" --search-tag {args.search_tag}" if args.search_tag else "")
    result = fad_eval(eval_args)
    by = {r["model"]: r for r in result["results"]}
    names = [TODAY, *chosen]
    add_params(result["results"], list(chosen))
    write_model_cards(result["results"], result["set"], only=list(chosen),
                      measured_by=f"python benchmarks/fan_config_quality.py {invocation}")
    cards = {n: load_checkpoint(models_dir() / "ablations" / f"{n}.pt").card for n in names}
    latency = {TODAY: by_key["today"], **chosen}
    peak = cpu_peak()
    out = {"cpu": peak.label, "platform": platform.platform(),
           "candidates": {n: {"rank": ranked.index(c) + 1, **c} for n, c in chosen.items()},
           "train_commands": commands, "eval": eval_args, "set": result["set"],
           "results": {n: by[n] for n in names}, "per_level": result["per_level"],
           "training_time_s": {n: cards[n].get("training_time_s") for n in names}}
    result_stem = stem("fan_config_quality" + ("-seeds" if len(args.seeds) > 1 else "")
                       + (f"-steps{stretched}" if stretched else ""), args.search_tag)
    write_json(RESULTS / f"{result_stem}.json", out)
    rows = ["| configuration | GMACs/MP | params | int8 / PMRID (1 / 2 thr) | fp32 / PMRID (1 / 2 thr) | training s | "
            "RAW PSNR | vs today | RAW SSIM | RGB PSNR | RGB SSIM |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        r, lat, v = by[n], latency[n], latency[n]["vs_pmrid"]
        label = "today's (the paper's widths)" if n == TODAY else f"speed rank {ranked.index(lat) + 1}: {lat['label']}"
        label += f", seed {seeds[n]}" if seeds.get(n) else ""
        rows.append(f"| {label} ({n}) | {lat['gmacs_per_megapixel']:.3f} | {lat['params']:,} | "
                    f"{v['int8 x1']:.2f} / {v['int8 x2']:.2f} | {v['fp32 x1']:.2f} / {v['fp32 x2']:.2f} | "
                    f"{cards[n].get('training_time_s', 0):.0f} | {r['raw_psnr']:.3f} | "
                    f"{r['raw_psnr'] - by[reference]['raw_psnr']:+.3f} | {r['raw_ssim']:.4f} | {r['rgb_psnr']:.3f} | "
                    f"{r['rgb_ssim']:.4f} |")
    levels = {n: result["per_level"][f"{n} [torch]"] for n in names}
    per_level = ["| configuration | " + " | ".join(f"a={lv['shot']:.2g}" for lv in levels[TODAY]) + " |",
                 "|---|" + "---:|" * len(levels[TODAY])]
    per_level += [f"| {n} | " + " | ".join(f"{lv['raw_psnr']:.2f}" for lv in levels[n]) + " |" for n in levels]
    spread = ["| configuration | seeds | RAW PSNR mean | max - min | vs today, seed by seed | mean |",
              "|---|---:|---:|---:|---|---:|"]

    def psnr(key: str, seed: int) -> float:
        return by[model_name(key, seed, stretched)]["raw_psnr"]

    for k in args.candidates:
        runs = [psnr(k, seed) for seed in args.seeds]
        paired = [psnr(k, seed) - psnr("today", seed) for seed in args.seeds] if "today" in args.candidates else []
        spread.append(f"| {by_key[k]['label']} ({k}) | {len(runs)} | {sum(runs) / len(runs):.3f} | "
                      f"{max(runs) - min(runs):.3f} | {' / '.join(f'{d:+.2f}' for d in paired)} | "
                      + (f"{sum(paired) / len(paired):+.3f} |" if paired else " |"))
    seed_section = (["How far a run moves with its seed (RAW PSNR over the seeds; against today's configuration "
                     "trained with the same seed, which also fixes the order of the training batches):", "",
                     "\n".join(spread), ""] if len(args.seeds) > 1 else [])
    write_text(RESULTS / f"{result_stem}.md", "\n".join([
        "# Latency-chosen FAN configurations at equal training", "",
        f"Made by `python benchmarks/fan_config_quality.py {invocation} --threads {args.threads}` "
        f"on {out['cpu']}. "
        "Every network trained on the Table 1 schedule from scratch: today's is fan-charbonnier (its card), each "
        "candidate the same command with its `model.config` overrides (`fad-train charbonnier name=NAME "
        f"schedule.steps={steps} model.config.KEY=VALUE ...`, in the JSON and the cards)"
        + (f", {steps} steps instead of the schedule's {schedule} (the column 'vs today' against {reference})"
           if stretched else "") + ". Latency ratios against the "
        f"PMRID architecture from {search}.md (one run for all, on {searched['cpu']['model']} "
        f"({simd_flags(searched['cpu'])})). Set: "
        f"{result['set']['photos']} test photos, {result['set']['crops_per_image']} crops of "
        f"{result['set']['crop']}x{result['set']['crop']} packed each, 6 shot levels in [1e-4, 0.012].", "",
        "\n".join(rows), "", *seed_section, "RAW PSNR per shot level (dB):", "", "\n".join(per_level), ""]))
    print(f"wrote {RESULTS / result_stem}.md")


if __name__ == "__main__":
    main()
