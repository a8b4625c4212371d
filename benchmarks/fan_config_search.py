"""A small search over FAN's configuration knobs by measured TFLite latency (issue 18):
group width, expansions, widths and where Feature-Align runs, each candidate at most
2.7 GMACs per RAW megapixel, timed against the PMRID architecture in one process.

    python benchmarks/fan_config_search.py [--rounds 6] [--per-round 1] [--group-width 16] [--tag TAG]
                                           [--candidates KEY ...]
    python benchmarks/fan_config_search.py --overrides KEY   (a candidate's fad-train settings)

Every candidate is exported like the PMRID baseline (initial weights with seeded noise,
int8 ranges from random inputs: latency does not depend on the weights), as fad-export
writes it (grouped convs in groups of at least --group-width channels, default fad-export's;
0: as trained, as in the rounds before the twelfth; sibling convs merged), timed with
XNNPACK on a 1x512x512x4 input (one RAW megapixel), fp32 and int8, 1 and 2 threads, all
rounds interleaved. The candidates come from the per-op tables (per_op_fan.md): the
grouped 3x3 convs at 4 channels per group and the full-resolution Feature-Align run at a
fraction of the 1x1 convs' MAC rate. Writes benchmarks/results/fan_config_search.{md,json}
(``--tag T``: fan_config_search-T.*, which fan_config_quality.py --search-tag T quotes).
Quality at equal training is not measured here.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from fad_deploy.cli.export import DEFAULT_GROUP_WIDTH
from fad_deploy.fileio import write_json, write_text
from fad_deploy.export.manifest import read_bundle
from fad_deploy.models.fan import FANConfig
from fad_deploy.models.registry import build
from fad_deploy.profile.baseline import baseline_name, export_architecture
from fad_deploy.profile.macs import count_macs
from fad_deploy.profile.side_by_side import PRECISIONS, cpu_record, ratios, simd_flags, time_models
from fad_deploy.profile.table import markdown_table
from fan_vs_pmrid import stem

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SIZE = (512, 512)
THREADS = (1, 2)
MAC_BUDGET = 2.7e9  # per RAW megapixel
PMRID = "PMRID architecture"
LEVELS = len(FANConfig().widths)


def dense(*hidden: int, below: int | tuple[int, ...] = 4, **overrides) -> dict:
    """Overrides for dense 3x3 blocks on ``hidden`` channels at the first levels (FANConfig.hidden, each level's
    group width its hidden width) and groups of ``below`` channels (one for all, or per level) at the others."""
    rest = LEVELS - len(hidden)
    below = (below,) * rest if isinstance(below, int) else below
    return {"hidden": [*hidden, *[0] * rest], "group_width": [*hidden, *below], **overrides}


# key (names the trained model: fan-<key>-charbonnier) -> (label, FANConfig overrides of today's configuration)
CANDIDATES = {
    "today": ("paper (today)", {}),
    "fa1": ("FA from level 1", {"align_min_level": 1}),
    "fa2": ("FA from level 2", {"align_min_level": 2}),
    "g2": ("group width 2", {"group_width": 2}),
    "g2-fa1": ("group width 2, FA from level 1", {"group_width": 2, "align_min_level": 1}),
    "g8-fa1-e11122": ("group width 8, FA from level 1, expansions 1,1,1,2,2",
                      {"group_width": 8, "align_min_level": 1, "expansions": [1, 1, 1, 2, 2]}),
    "w12-fa1": ("widths 12.., FA from level 1", {"widths": [12, 24, 48, 96, 160], "align_min_level": 1}),
    "g1": ("group width 1 (depthwise)", {"group_width": 1}),
    "g1-fa1-w16-192": ("group width 1, FA from level 1, widths 16,32,64,128,192",
                       {"group_width": 1, "align_min_level": 1, "widths": [16, 32, 64, 128, 192]}),
    # second round, from the first: wider groups and no full-resolution Feature-Align pay off
    "g8-fa2-e11122": ("group width 8, FA from level 2, expansions 1,1,1,2,2",
                      {"group_width": 8, "align_min_level": 2, "expansions": [1, 1, 1, 2, 2]}),
    "g8-fa1-e11112": ("group width 8, FA from level 1, expansions 1,1,1,1,2",
                      {"group_width": 8, "align_min_level": 1, "expansions": [1, 1, 1, 1, 2]}),
    "g8-fa1-w8": ("group width 8, FA from level 1, widths 8,24,..",
                  {"group_width": 8, "align_min_level": 1, "widths": [8, 24, 48, 96, 160]}),
    "g8-fa2-w8": ("group width 8, FA from level 2, widths 8,24,..",
                  {"group_width": 8, "align_min_level": 2, "widths": [8, 24, 48, 96, 160]}),
    "g16-fa1-e1-w8": ("group width 16, FA from level 1, expansions 1, widths 8,24,..",
                      {"group_width": 16, "align_min_level": 1, "expansions": [1, 1, 1, 1, 1],
                       "widths": [8, 24, 48, 96, 160]}),
    # third round: the second's fast candidates lost 2-3.6 dB without full-resolution Feature-Align
    # (fan_config_quality.md), so keep it there and make that level cheap: a depthwise conv
    # where 4-channel groups run at 14 GMAC/s, one conditioning conv per level for both Feature-Aligns
    "sa": ("shared FA conditioning", {"shared_align": True}),
    "g1x4": ("depthwise at full resolution", {"group_width": [1, 4, 4, 4, 4]}),
    "g1x4-sa": ("depthwise at full resolution, shared FA conditioning",
                {"group_width": [1, 4, 4, 4, 4], "shared_align": True}),
    "g1x8-sa": ("depthwise at full resolution, group width 8 below, shared FA conditioning",
                {"group_width": [1, 8, 8, 8, 8], "shared_align": True}),
    "g1x8-sa-e11122": ("depthwise at full resolution, group width 8 below, shared FA, expansions 1,1,1,2,2",
                       {"group_width": [1, 8, 8, 8, 8], "shared_align": True, "expansions": [1, 1, 1, 2, 2]}),
    "g1-sa": ("group width 1 (depthwise), shared FA conditioning", {"group_width": 1, "shared_align": True}),
    "g1x8-sa-w12": ("depthwise at full resolution, width 12 there, group width 8 below, shared FA",
                    {"group_width": [1, 8, 8, 8, 8], "shared_align": True, "widths": [12, 24, 48, 96, 160]}),
    "g1x8-sa-w8": ("depthwise at full resolution, width 8 there, group width 8 below, shared FA",
                   {"group_width": [1, 8, 8, 8, 8], "shared_align": True, "widths": [8, 24, 48, 96, 160]}),
    # fourth round: the third's knobs cost quality too (fan_config_quality.md), so each of the fast
    # candidates' knobs alone, to say what each costs in time and in dB at equal training
    "g8": ("group width 8", {"group_width": 8}),
    "e11122": ("expansions 1,1,1,2,2", {"expansions": [1, 1, 1, 2, 2]}),
    "w8": ("widths 8,24,..", {"widths": [8, 24, 48, 96, 160]}),
    # fifth round: every depthwise-at-full-resolution candidate above also shrank the first block, which reads
    # the 4-plane RAW, from 16 hidden channels to 4 (hidden = max(c_in, 4 x group width)); give it 16 back
    "g1-sa-h16": ("group width 1, shared FA conditioning, first block 16 wide",
                  {"group_width": 1, "shared_align": True, "min_hidden": 16}),
    "g1x4-h16": ("depthwise at full resolution, first block 16 wide",
                 {"group_width": [1, 4, 4, 4, 4], "min_hidden": 16}),
    "g1x4-sa-h16": ("depthwise at full resolution, shared FA conditioning, first block 16 wide",
                    {"group_width": [1, 4, 4, 4, 4], "shared_align": True, "min_hidden": 16}),
    # sixth round: g1-sa-h16 meets the AVX2 CPU's targets at a quality cost; buy capacity back with depth
    # where MACs are few: one more residual ARNet block at the coarsest level(s) (FANConfig.extra_blocks)
    "g1-sa-h16-x4": ("group width 1, shared FA, first block 16 wide, a second block at level 4",
                     {"group_width": 1, "shared_align": True, "min_hidden": 16, "extra_blocks": [0, 0, 0, 0, 1]}),
    "g1-sa-h16-x34": ("group width 1, shared FA, first block 16 wide, a second block at levels 3 and 4",
                      {"group_width": 1, "shared_align": True, "min_hidden": 16, "extra_blocks": [0, 0, 0, 1, 1]}),
    # seventh round: the sixth lost as much as g1-sa-h16, so its loss is at full resolution; PMRID's own
    # depthwise convolutions are 5x5: give the depthwise ones a larger kernel there (FANConfig.group_kernel)
    "g1-sa-h16-k5x3": ("group width 1, shared FA, first block 16 wide, 5x5 group convs at full resolution",
                       {"group_width": 1, "shared_align": True, "min_hidden": 16, "group_kernel": [5, 3, 3, 3, 3]}),
    "g1-sa-h16-k5": ("group width 1, shared FA, first block 16 wide, 5x5 group convs",
                     {"group_width": 1, "shared_align": True, "min_hidden": 16, "group_kernel": 5}),
    # eighth round: XNNPACK runs a dense 3x3 conv on 8 channels at 3-4x the MAC rate of 4-channel groups
    # (per_op_fan-avx2.md: 11.2 against 2.8 GMAC/s in int8); narrow dense blocks at the fine levels keep the
    # group conv's MACs and mix every channel (FANConfig.hidden)
    "d8x0": ("dense 3x3 on 8 hidden channels at full resolution", dense(8)),
    "d8-12": ("dense 3x3 on 8 / 12 hidden channels at levels 0 / 1", dense(8, 12)),
    "d8-12-24": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2", dense(8, 12, 24)),
    "d8-12-sa": ("dense 3x3 on 8 / 12 hidden channels at levels 0 / 1, shared FA conditioning",
                 dense(8, 12, shared_align=True)),
    "d10-12": ("dense 3x3 on 10 / 12 hidden channels at levels 0 / 1", dense(10, 12)),
    "d8-12-24-sa": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, shared FA conditioning",
                    dense(8, 12, 24, shared_align=True)),
    "d8-16-24": ("dense 3x3 on 8 / 16 / 24 hidden channels at levels 0 / 1 / 2", dense(8, 16, 24)),
    "d8-12-24-48": ("dense 3x3 on 8 / 12 / 24 / 48 hidden channels at levels 0 / 1 / 2 / 3", dense(8, 12, 24, 48)),
    "d8-12-g1x2": ("dense 3x3 on 8 / 12 hidden channels at levels 0 / 1, depthwise at level 2",
                   dense(8, 12, below=(1, 4, 4))),
    "d8-12-g1": ("dense 3x3 on 8 / 12 hidden channels at levels 0 / 1, depthwise below", dense(8, 12, below=1)),
    "d8-12-g1-sa": ("dense 3x3 on 8 / 12 hidden channels at levels 0 / 1, depthwise below, shared FA",
                    dense(8, 12, below=1, shared_align=True)),
    "d8-12-24-48-sa": ("dense 3x3 on 8 / 12 / 24 / 48 hidden channels at levels 0 / 1 / 2 / 3, shared FA",
                       dense(8, 12, 24, 48, shared_align=True)),
    # ninth round (the full-resolution skip's copies now export as a tiled conv: tf_graph.py): d8-12-24 keeps
    # today's quality; of its int8 time the 3x3 head to 4 channels takes 7% at half the MAC rate of the dense 3x3
    # on 8 channels
    "d8-12-24-h1": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, 1x1 head",
                    dense(8, 12, 24, head_kernel=1)),
    "d8-12-24-sa-h1": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, shared FA, 1x1 head",
                       dense(8, 12, 24, shared_align=True, head_kernel=1)),
    "d8-12-24-48-h1": ("dense 3x3 on 8 / 12 / 24 / 48 hidden channels at levels 0 / 1 / 2 / 3, 1x1 head",
                       dense(8, 12, 24, 48, head_kernel=1)),
    # tenth round: the 1x1 head cost 0.46 dB and shared conditioning 0.10 dB
    # (fan_config_quality-steps9600-avx2-tiled.md); cheaper forms of the full-resolution 3x3s instead: a separable
    # head (depthwise 3x3 + 1x1), a 1x1 conditioning conv or 4 conditioning channels at full resolution
    # (FANConfig.head_depthwise, align_kernel, align_hidden)
    "d8-12-24-hdw": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, separable head",
                     dense(8, 12, 24, head_depthwise=True)),
    "d8-12-24-sa-hdw": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, shared FA, separable head",
                        dense(8, 12, 24, shared_align=True, head_depthwise=True)),
    "d8-12-24-c1": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, 1x1 FA conditioning at level 0",
                    dense(8, 12, 24, align_kernel=[1, 3, 3, 3, 3])),
    "d8-12-24-c1-hdw": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, 1x1 FA conditioning at "
                        "level 0, separable head", dense(8, 12, 24, align_kernel=[1, 3, 3, 3, 3], head_depthwise=True)),
    "d8-12-24-a4": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, 4 FA conditioning channels at "
                    "level 0", dense(8, 12, 24, align_hidden=[4, 8, 8, 8, 8])),
    "d8-12-24-a4-hdw": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, 4 FA conditioning channels "
                        "at level 0, separable head",
                        dense(8, 12, 24, align_hidden=[4, 8, 8, 8, 8], head_depthwise=True)),
    "d8-12-24-c1-sa-hdw": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, shared 1x1 FA conditioning "
                           "at level 0, separable head",
                           dense(8, 12, 24, align_kernel=[1, 3, 3, 3, 3], shared_align=True, head_depthwise=True)),
    "d8-12-24-c11-hdw": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, 1x1 FA conditioning at "
                         "levels 0 / 1, separable head",
                         dense(8, 12, 24, align_kernel=[1, 1, 3, 3, 3], head_depthwise=True)),
    # eleventh round (the AVX-512 VNNI CPU): dense 48 at level 3 buys d8-12-24 0.04 of PMRID's int8 time but costs
    # 0.19 dB (its 192 hidden channels cut to 48); keep them and run them in wider groups, which XNNPACK runs at a
    # higher MAC rate, at level 3 or at levels 3 and 4
    "d8-12-24-g8": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, groups of 8 below",
                    dense(8, 12, 24, below=8)),
    "d8-12-24-g16": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, groups of 16 below",
                     dense(8, 12, 24, below=16)),
    "d8-12-24-g8x4": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, groups of 8 at level 3",
                      dense(8, 12, 24, below=(8, 4))),
    "d8-12-24-g16x4": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, groups of 16 at level 3",
                       dense(8, 12, 24, below=(16, 4))),
    # of d8-12-24-g8's int8 time the two 3x3 conditioning convs at full resolution (4 -> 8 channels) take 9%: share
    # that level's alone (shared conditioning at every level cost 0.10 dB: fan_config_quality-steps9600-avx2-tiled.md)
    "d8-12-24-sa0": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, shared FA conditioning at level 0",
                     dense(8, 12, 24, shared_align=[True, False, False, False, False])),
    "d8-12-24-g8-sa0": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, groups of 8 below, shared FA "
                        "conditioning at level 0", dense(8, 12, 24, below=8, shared_align=[True, False, False, False, False])),
    # thirteenth round: over three seeds d8-12-24 loses its 0.27 dB mostly at high noise (0.5-0.7 dB at a = 0.012
    # with seeds 1 and 2), and cutting level 3 too (d8-12-24-48) costs 0.12 dB more: depth at level 3, which
    # adds 0.18 GMACs/MP (d8-12-24 2.35 -> 2.53, today's MACs)
    "d8-12-24-x3": ("dense 3x3 on 8 / 12 / 24 hidden channels at levels 0 / 1 / 2, a second block at level 3",
                    dense(8, 12, 24, extra_blocks=[0, 0, 0, 1, 0])),
    # the head on 2x2 blocks left d8-12-24 0.05 of PMRID's fp32 time below the target: wider at full resolution
    "d10-12-24": ("dense 3x3 on 10 / 12 / 24 hidden channels at levels 0 / 1 / 2", dense(10, 12, 24)),
    "d12-12-24": ("dense 3x3 on 12 / 12 / 24 hidden channels at levels 0 / 1 / 2", dense(12, 12, 24)),
}


def fad_train_settings(overrides: dict) -> list[str]:
    """A candidate's overrides as fad-train settings (model.config.KEY=VALUE)."""
    return [f"model.config.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in overrides.items()]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--overrides", metavar="KEY", choices=CANDIDATES,
                   help="print the candidate's fad-train settings (model.config.KEY=VALUE ...) and exit, e.g. for "
                        "train_gpu.sh's FAN")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--per-round", type=int, default=1)
    p.add_argument("--group-width", type=int, default=DEFAULT_GROUP_WIDTH, metavar="N",
                   help="write grouped convs with at least N channels per group, as fad-export --group-width "
                        f"(default {DEFAULT_GROUP_WIDTH}, fad-export's; 0: as trained)")
    p.add_argument("--tag", help="suffix of the result files (fan_config_search-TAG.md, ...), e.g. for another CPU")
    p.add_argument("--candidates", nargs="+", metavar="KEY", choices=CANDIDATES,
                   help="time only these candidates (default: all, which needs more than 24 GiB: each model keeps "
                        "its interpreters for the interleaved rounds; 20 fit in 24 GiB); give a --tag so the full "
                        "search's files stay")
    return p.parse_args()


def files(folder: Path) -> dict:
    entry = read_bundle(folder)["models"][0]
    return {**{p: folder / entry["files"][f"tflite-{p}"]["file"] for p in PRECISIONS},
            "arch": entry["arch"], "config": entry["config"]}


def main():
    args = parse_args()
    if args.overrides:
        print(" ".join(fad_train_settings(CANDIDATES[args.overrides][1])))
        return
    candidates, over_budget = {}, {}
    keys = {label: key for key, (label, _) in CANDIDATES.items()}
    for key, (label, overrides) in CANDIDATES.items():
        if args.candidates and key not in args.candidates:
            continue
        macs = count_macs(build("fan", overrides), SIZE).gmacs_per_megapixel
        if macs * 1e9 > MAC_BUDGET:
            over_budget[label] = macs
            continue
        candidates[label] = files(export_architecture("fan", SIZE, ("tflite",), config=overrides,
                                                      name=f"fan-search-{key}", group_width=args.group_width))
    models = {PMRID: files(export_architecture("pmrid", SIZE, ("tflite",), name=baseline_name("pmrid"))),
              **candidates}
    cpu = cpu_record()
    rows, load = time_models(models, SIZE, THREADS, args.rounds, args.per_round)
    by = {(r["model"], r["precision"], r["threads"]): r for r in rows}
    table, results = [], []
    for label in candidates:
        r = ratios(rows, label, PMRID)
        first = by[label, "int8", 1]
        results.append({"key": keys[label], "label": label, "overrides": CANDIDATES[keys[label]][1],
                        "gmacs_per_megapixel": first["gmacs_per_megapixel"], "params": first["params"],
                        "vs_pmrid": {f"{p} x{t}": v for (p, t), v in r.items()},
                        "ms_per_megapixel": {f"{p} x{t}": by[label, p, t]["ms_per_megapixel"]
                                             for p in PRECISIONS for t in THREADS}})
        table.append([f"{label} ({keys[label]})", f"{first['gmacs_per_megapixel']:.3f}", f"{first['params']:,}",
                      *(" / ".join(f"{by[label, p, t]['ms_per_megapixel']:.0f}" for t in THREADS) for p in PRECISIONS),
                      *(" / ".join(f"{r[p, t]:.2f}" for t in THREADS) for p in PRECISIONS)])
    table.sort(key=lambda row: float(row[-1].split(" / ")[0]))
    pmrid = [PMRID, f"{by[PMRID, 'int8', 1]['gmacs_per_megapixel']:.3f}", f"{by[PMRID, 'int8', 1]['params']:,}",
             *(" / ".join(f"{by[PMRID, p, t]['ms_per_megapixel']:.0f}" for t in THREADS) for p in PRECISIONS),
             "1", "1"]
    today = dataclasses.asdict(FANConfig())
    only = " ".join(args.candidates or [])
    md = "\n\n".join([
        "# FAN configuration search by measured TFLite latency",
        f"`python benchmarks/fan_config_search.py --rounds {args.rounds} --per-round {args.per_round} "
        f"--group-width {args.group_width}"
        f"{f' --tag {args.tag}' if args.tag else ''}{f' --candidates {only}' if args.candidates else ''}`: every "
        "candidate within 2.7 GMACs per RAW megapixel exported with initial weights (seeded noise; latency does not "
        "depend on the weights), its grouped convs written with at least "
        f"{args.group_width or 'their trained'} channels per group and sibling convs merged (as fad-export writes "
        "them), and timed with XNNPACK on 1x512x512x4 against the PMRID architecture, fp32 and int8, "
        f"1 and 2 threads, {args.rounds} interleaved rounds of {args.per_round} invokes in one process; medians.",
        f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {simd_flags(cpu)}. Other processes used "
        f"{load['other_processes_cpu_share']:.0%} of the CPU time during the {load['seconds']:.0f} s of timing "
        "(compare ratios only).",
        f"Today's configuration: {today}. Candidates override it; sorted by int8 1-thread time vs PMRID "
        "(issue 18's targets: int8 <= 0.6, fp32 <= 0.7).",
        markdown_table(["candidate", "GMACs/MP", "params", "fp32 ms/MP (1 / 2 thr)", "int8 ms/MP (1 / 2 thr)",
                        "fp32 / PMRID (1 / 2)", "int8 / PMRID (1 / 2)"], [pmrid, *table]),
        "Over the MAC budget, not timed: " + (", ".join(f"{k} ({v:.2f})" for k, v in over_budget.items()) or "none")
        + ". Quality at equal training is not measured here: a chosen configuration still has to be trained "
        "and compared on held-out photos.",
    ]) + "\n"
    out = stem("fan_config_search", args.tag)
    write_text(RESULTS / f"{out}.md", md)
    write_json(RESULTS / f"{out}.json", {"cpu": cpu, "load": load, "group_width": args.group_width, "rows": rows,
                                         "candidates": results,
                                         "over_budget": over_budget})
    print(f"wrote {RESULTS / out}.md")


if __name__ == "__main__":
    main()
