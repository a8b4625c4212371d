"""Quality benchmark: the paper's Tables 1, 3 and 5 analogues, a classical-baseline
table, example crops and a PSNR-vs-GMACs plot, on photos never used in training
(Debian's mate-backgrounds nature photos, `fad-data fetch` puts them in
$FAD_CACHE/photos/test). Also refreshes the model cards in models/.

    python benchmarks/quality.py [--quick]     # writes benchmarks/results/quality.*
"""
from __future__ import annotations

import argparse
import json
import functools
import shlex
import sys
from pathlib import Path

import numpy as np

from fad_deploy.cli.eval import parser as eval_parser
from fad_deploy.cli.eval import run as fad_eval
from fad_deploy.data.noise import SHOT_RANGE
from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import validation_shots
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir, resolve_model

RESULTS = Path(__file__).parent / "results"
TABLES = {
    "Table 1 analogue: architecture (all Charbonnier, 2400 steps from scratch)":
        ["noisy", "unet-plain", "unet-wavelet", "fan-charbonnier", "fan-noskip"],
    "Table 3 analogue: loss (each fine-tuned 600 more steps from fan-charbonnier)":
        ["noisy", "fan-charbonnier-ft", "fan-kd", "fan-kd-fm"],
    # fan-charbonnier: the student's network on UPI-Lite's schedule (the equal-training comparison)
    "Table 5 analogue: baselines scaled to the student's compute":
        ["noisy", "upi-lite", "cycleisp-lite", "fan-charbonnier", "fan-pretrain-gpu", "fan-student-gpu", "fan-student",
         "teacher"],
    # loss.level_weighting: "relative" makes each image's errors relative to its noise std
    "The GPU student fine-tuned further on the CPU: loss weighting over noise levels, then longer":
        ["noisy", "fan-student-gpu", "fan-student-ft-anchor", "fan-student-ft-relative", "fan-student-cpu-kd",
         "fan-student"],
}
# BM3D takes ~90 s per megapixel, so the classical table uses a smaller seeded set.
CLASSICAL = ("Classical baselines (per Bayer plane, generalised Anscombe VST; smaller set)",
             ["noisy", "nlm", "bm3d", "fan-student", "teacher"])
ROW_LABELS = {
    "unet-plain": "Plain U-Net", "unet-wavelet": "Wavelet U-Net", "fan-charbonnier": "Feature-Align",
    "fan-noskip": "FA w/o shrunk skips", "fan-charbonnier-ft": "Charbonnier", "fan-kd": "Knowledge dist.",
    "fan-kd-fm": "KD + Feature Matching", "upi-lite": "UPI-Raw-Lite", "teacher": "Teacher (UPI-style)",
    "noisy": "Input", "nlm": "Non-local means", "bm3d": "BM3D", "nsma (n=4)": "NSMA (n=4)",
}
MODELS = ["teacher", "fan-student", "fan-student-gpu", "fan-student-ft-anchor", "fan-student-ft-relative",
          "fan-student-cpu-kd", "fan-pretrain-gpu", "unet-plain", "fan-charbonnier", "unet-wavelet",
          "fan-noskip", "fan-charbonnier-ft", "fan-kd", "fan-kd-fm", "upi-lite", "cycleisp-lite"]


def losses(loss: dict) -> str:
    """A training stage's losses, from its card's config (KD + FM: distillation + Feature Matching)."""
    names = ["Charbonnier"] + [label for key, label in (("distillation", "KD"), ("feature_matching", "FM"))
                               if loss.get(key, 0) > 0]
    weighting = ", noise-relative" if loss.get("level_weighting") == "relative" else ""
    return " + ".join(names) + weighting


@functools.cache  # every row label and the stage table walk the same chains
def training_chain(name: str) -> tuple[tuple[str, dict], ...]:
    """(name, card) of a model and of the checkpoints it was fine-tuned from (model.init),
    oldest stage first."""
    ckpt = load_checkpoint(resolve_model(name))
    init = ckpt.card["config"]["model"].get("init")
    return (*(training_chain(init) if init else ()), (ckpt.name, ckpt.card))


def stage(card: dict) -> str:
    """One training stage from its card: steps x batch, where, and the losses."""
    config = card["config"]
    return f"{card.get('steps')} steps x {config['data']['batch']} on {card.get('device')} ({losses(config['loss'])})"


def schedule(name: str) -> str:
    """How a model trained, every stage of its chain in order."""
    return ", then ".join(stage(card) for _, card in training_chain(name))


def stages_table(rows: list[dict], name: str) -> str:
    """The model's training chain stage by stage: what each stage cost and gained on this set."""
    by = {r["model"]: r for r in rows}
    out = ["| Checkpoint | Stage | Threads | Training time (min) | RAW PSNR | Gain (dB) | dB per hour |",
           "|---|---|---|---|---|---|---|"]
    before = None
    for ckpt_name, card in training_chain(name):
        minutes = card["training_time_s"] / 60
        psnr = by[ckpt_name]["raw_psnr"] if ckpt_name in by else None
        gain = psnr - before if psnr is not None and before is not None else None
        args = shlex.split(card["command"])
        threads = args[args.index("--threads") + 1] if "--threads" in args else "-"
        measured = f"{psnr:.3f}" if psnr is not None else "-"
        change = f"{gain:+.3f} | {gain / minutes * 60:+.3f}" if gain is not None else "- | -"
        out.append(f"| {ckpt_name} | {stage(card)} | {threads} | {minutes:.1f} | {measured} | {change} |")
        before = psnr
    return "\n".join(out)


def row_labels(names: list[str]) -> dict[str, str]:
    """ROW_LABELS plus the labels of the models trained on their own schedules (read from their cards)."""
    own = {"fan-pretrain-gpu": "Student, {} (its pretraining)", "fan-student-gpu": "Student, {} (the GPU student)",
           "fan-student-ft-anchor": "Student, {}", "fan-student-ft-relative": "Student, {}",
           "fan-student-cpu-kd": "Student, {}",
           "fan-student": "Student, {} (shipped)", "teacher": "Teacher (UPI-style), {}",
           "upi-lite": "UPI-Raw-Lite, {}", "cycleisp-lite": "CycleISP-Lite, {}",
           "fan-charbonnier": "Feature-Align, {}"}
    return {**ROW_LABELS, **{n: label.format(schedule(n)) for n, label in own.items() if n in names}}


def markdown_table(rows: list[dict], names: list[str], labels: dict[str, str]) -> str:
    by = {r["model"]: r for r in rows}
    out = ["| Method | RAW PSNR | RAW SSIM | RGB PSNR | RGB SSIM | GMACs/MP | Params |", "|---|---|---|---|---|---|---|"]
    for n in names:
        if n not in by:
            out.append(f"| {labels.get(n, n)} | (not available) | | | | | |")
            continue
        r = by[n]
        macs = f"{r['gmacs_per_megapixel']:.3f}" if r.get("gmacs_per_megapixel") else "-"
        params = f"{r['params']:,}" if r.get("params") else "-"
        out.append(f"| {labels.get(n, n)} | {r['raw_psnr']:.3f} | {r['raw_ssim']:.4f} | {r['rgb_psnr']:.3f} | "
                   f"{r['rgb_ssim']:.4f} | {macs} | {params} |")
    return "\n".join(out)


def example_figure(set_args: argparse.Namespace, names: list[str], out: Path) -> None:
    """Noisy / ground truth / teacher / student crops at a high and a low noise level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fad_deploy.cli.eval import make_set
    from fad_deploy.evaluate.quality import denoise_set
    from fad_deploy.isp.process import preview_rgb
    from fad_deploy.runners import load_runner
    from fad_deploy.runners.tiling import framed

    pairs, _ = make_set(set_args)
    shots = np.unique(pairs["shot"])
    picks = [int(np.flatnonzero(pairs["shot"] == shots[k])[1]) for k in (-1, len(shots) // 2)]
    sub = {k: v[picks] for k, v in pairs.items()}
    columns = [("Noisy", sub["noisy"]), ("Ground truth", sub["clean"])]
    for n in names:
        columns.append((n, denoise_set(framed(load_runner("torch", resolve_model(n))), sub)))
    fig, axes = plt.subplots(len(picks), len(columns), figsize=(3 * len(columns), 3.2 * len(picks)))
    for i in range(len(picks)):
        meta = {k: sub[k][i] for k in ("red_gain", "blue_gain", "rgb_gain", "cam2rgb")}
        for j, (title, raws) in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(preview_rgb(raws[i], meta))
            ax.set_title(f"{title}\nshot a={sub['shot'][i]:.2g}" if j == 0 else title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def psnr_vs_macs_plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r.get("gmacs_per_megapixel"):
            ax.scatter(r["gmacs_per_megapixel"], r["raw_psnr"])
            ax.annotate(r["model"], (r["gmacs_per_megapixel"], r["raw_psnr"]), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per megapixel of RAW input (4x512x512 packed)")
    ax.set_ylabel("RAW PSNR (dB)")
    ax.set_title("Quality vs compute (held-out photos)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def validation_levels(shot_range) -> str:
    shots = validation_shots(shot_range)
    return f"{len(shots)} levels in [{shots.min():.3g}, {shots.max():.3g}]"


def kept_best(card: dict) -> str:
    step = card.get("kept_best_of_step")
    return "" if step is None else f"; the shipped weights are those of step {step}, the best on validation " \
        "(schedule.keep_best; step 0 = the initial weights)"


def write_model_cards(rows: list[dict], set_info: dict, only: list[str] | None = None,
                      measured_by: str = "python benchmarks/quality.py", folder: Path | None = None) -> None:
    """models/<name>.md + .json: how each shipped model was made and what it measures (every
    float model whose card no other benchmark made, or the ones named in ``only``). ``folder``:
    only the checkpoints under it (an array's folder: other arrays reuse its models' names)."""
    by = {r["model"]: r for r in rows}
    for path in sorted((folder or models_dir()).rglob("*.pt")):
        ckpt = load_checkpoint(path)
        if ckpt.extra.get("quantization") or (only is not None and ckpt.name not in only):
            continue  # int8 checkpoints: their cards come from ship_int8.py
        card_json = path.with_suffix(".json")
        if only is None and card_json.is_file() and \
                json.loads(card_json.read_text()).get("measured_by", measured_by) != measured_by:
            continue  # e.g. fan_config_quality.py's candidates keep their own cards
        card = dict(ckpt.card)
        spec = card.pop("config", {}).get("model", {})
        init = spec.get("init") and spec["init"] + (", cut to this network's ARNet widths (model.narrow)"
                                                    if spec.get("narrow") else "")
        metrics = {k: by[ckpt.name][k] for k in ("raw_psnr", "raw_ssim", "rgb_psnr", "rgb_ssim")} \
            if ckpt.name in by else None
        info = {"name": ckpt.name, "arch": ckpt.arch, "config": ckpt.config, "shot_range": list(ckpt.shot_range),
                "params": by.get(ckpt.name, {}).get("params"),
                "gmacs_per_megapixel": by.get(ckpt.name, {}).get("gmacs_per_megapixel"),
                "training": card, "test_metrics": metrics, "test_set": set_info,
                "measured_by": measured_by}
        write_json(path.with_suffix(".json"), info)
        lines = [f"# {ckpt.name}", "", f"Network `{ckpt.arch}`, trained on shot noise a in "
                 f"[{ckpt.shot_range[0]:g}, {ckpt.shot_range[1]:g}] (k-sigma anchor at a={ckpt.anchor.shot:.3g}).", "",
                 "## How it was made", "", f"    {card.get('command', '?')}", "",
                 f"- data: {card.get('data')}", f"- teacher: {card.get('teacher')}",
                 f"- initialised from: {init or 'random weights'}",
                 *(f"- note: {note}" for note in card.get("notes", [])),  # e.g. a rename since training
                 f"- steps: {card.get('steps')} (of {card.get('scheduled_steps', card.get('steps'))} scheduled), samples seen: {card.get('samples_seen')}, "
                 f"training time: {card.get('training_time_s')} s on {card.get('device')} "
                 f"(world size {card.get('world_size')})",
                 f"- validation RAW PSNR (scikit-image photos, {validation_levels(ckpt.shot_range)}): "
                 f"{card.get('validation_raw_psnr')} dB" + kept_best(card), "",
                 "## Measured on held-out photos", ""]
        if metrics:
            lines += [f"Set: {set_info}", "", "| RAW PSNR | RAW SSIM | RGB PSNR | RGB SSIM | GMACs/MP | Params |",
                      "|---|---|---|---|---|---|",
                      f"| {metrics['raw_psnr']:.3f} | {metrics['raw_ssim']:.4f} | {metrics['rgb_psnr']:.3f} | "
                      f"{metrics['rgb_ssim']:.4f} | {info['gmacs_per_megapixel']} | {info['params']} |", "",
                      f"GMACs per megapixel of RAW input (4x512x512 packed). Re-measure with `{measured_by}`."]
        elif tuple(ckpt.shot_range) != SHOT_RANGE:
            lines.append("A sub-range model: measured in its sub-range against the full-range student in "
                         "`benchmarks/results/nsma.md` (and the array's `models/nsma/manifest.json`).")
        else:
            lines.append("(not in the benchmark run)")
        write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=str(default_cache_dir() / "photos" / "test"))
    p.add_argument("--quick", action="store_true", help="1 crop per photo, 3 levels, no BM3D (a smoke run)")
    args = p.parse_args(argv)
    names = [m for m in MODELS if any(models_dir().rglob(f"{m}.pt"))]
    size = ["--crops-per-image", "1", "--levels", "3"] if args.quick else ["--crops-per-image", "2", "--levels", "6"]
    main_args = ["--images", args.images, *names, "--threads", "2", "--baselines", "nlm", *size]
    if (models_dir() / "nsma" / "manifest.json").is_file():
        main_args.append("--nsma")
    result = fad_eval(main_args)
    add_params(result["results"], names)
    classical_names = [n for n in CLASSICAL[1] if n in names]
    classical_args = ["--images", args.images, *classical_names, "--threads", "2", "--seed", "1",
                      "--baselines", "nlm" if args.quick else "nlm,bm3d", "--crops-per-image", "1", "--levels", "4"]
    classical = fad_eval(classical_args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "quality.json", {**result, "classical": classical,
                                         "commands": {"main": main_args, "classical": classical_args}})
    md = ["# Quality on held-out photos", "",
          f"Command: `python benchmarks/quality.py{' --quick' if args.quick else ''}` "
          f"(runs `fad-eval {' '.join(main_args)}`). Set: {result['set']}.", "",
          "RAW metrics on the 4 packed Bayer planes (data range 1); RGB after the minimal ISP (white balance, "
          "bilinear demosaic, colour matrix, gamma 1/2.2). GMACs per megapixel of RAW input (4x512x512 packed).", ""]
    labels = row_labels(names)
    for title, rows in TABLES.items():
        md += [f"## {title}", "", markdown_table(result["results"], rows, labels), ""]
    if any(r["model"].startswith("nsma") for r in result["results"]):
        md += ["## Table 2 analogue: Noise Subrange Model Array", "",
               markdown_table(result["results"], ["noisy", "fan-student", "nsma (n=4)"], labels), "",
               "Per sub-range numbers: benchmarks/results/nsma.md.", ""]
    if "fan-student" in names:
        md += ["## The shipped student's training, stage by stage", "",
               "Each stage fine-tunes the checkpoint above it; training time as in its card (validation "
               "and saving not counted); threads: torch CPU threads (--threads) of a CPU run.", "",
               stages_table(result["results"], "fan-student"), ""]
    md += [f"## {CLASSICAL[0]}", "", f"Set: {classical['set']}", "",
           markdown_table(classical["results"], CLASSICAL[1], labels), ""]
    md += ["## Per shot level (RAW PSNR, dB)", "", per_level_table(result["per_level"]), "",
           "The classical set, per level:", "", per_level_table(classical["per_level"]), "",
           "![examples](quality_examples.png)", "", "![psnr vs macs](quality_psnr_vs_macs.png)", ""]
    write_text(RESULTS / "quality.md", "\n".join(md))
    psnr_vs_macs_plot(result["results"], RESULTS / "quality_psnr_vs_macs.png")
    example_figure(eval_parser().parse_args(main_args), [n for n in ("teacher", "fan-student") if n in names],
                   RESULTS / "quality_examples.png")
    write_model_cards(result["results"], result["set"])
    print(f"wrote {RESULTS / 'quality.md'}")


def per_level_table(per_level: dict[str, list[dict]]) -> str:
    levels = sorted({lv["shot"] for v in per_level.values() for lv in v})
    lines = ["| model | " + " | ".join(f"a={a:.2g}" for a in levels) + " |", "|---|" + "---|" * len(levels)]
    lines += [f"| {name} | " + " | ".join(f"{x['raw_psnr']:.2f}" for x in lv) + " |"
              for name, lv in per_level.items()]
    return "\n".join(lines)


def card_row(path: Path, metrics: dict) -> dict:
    """A :func:`write_model_cards` row for the checkpoint at ``path``: its name, ``metrics``,
    parameters and GMACs per RAW megapixel."""
    from fad_deploy.profile.macs import count_macs

    ckpt = load_checkpoint(path)
    net = ckpt.build()
    return {"model": ckpt.name, **metrics, "params": sum(p.numel() for p in net.parameters()),
            "gmacs_per_megapixel": round(count_macs(net).gmacs_per_megapixel, 3)}


def add_params(rows: list[dict], names: list[str]) -> None:
    for r in rows:
        if r["model"] in names:
            r["params"] = sum(v.numel() for v in load_checkpoint(resolve_model(r["model"])).build().parameters())


if __name__ == "__main__":
    sys.exit(main())
