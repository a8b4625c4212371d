"""Grouped convs written with wider groups (issue 18): the same network, exported with
``fad-export --group-width N`` (adjacent groups merged block-diagonally, so the numbers do
not change), timed against itself as trained and against the PMRID architecture; and with
sibling convs merged (``--sibling-bounds``: fad_deploy.export.tf_graph.MAX_SIBLING_EXTRA_MACS,
again the same numbers).

    python benchmarks/group_width.py [--candidates today d8-12-24] [--widths 8 16] [--sibling-bounds 0 1]
                                     [--rounds 8] [--tag TAG]

XNNPACK runs a 3x3 conv with 4 channels per group at a fraction of the MAC rate of one with
8 or 16 (per_op_fan.md), so merging groups can buy time at more executed MACs (the zeros
outside the blocks). Each configuration (fan_config_search.py's keys) is exported with
initial weights (latency does not depend on them) as trained and at each width, then all are
timed with XNNPACK on 1x512x512x4 (one RAW megapixel), fp32 and int8, 1 and 2 threads, in
one process with rounds interleaved; medians. "As trained" writes no sibling merged. Writes
benchmarks/results/group_width.{md,json} (``--tag T``: group_width-T.*).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

from fad_deploy.export import tf_graph
from fad_deploy.export.tflite import written_conv_cost
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import build
from fad_deploy.profile.baseline import baseline_name, export_architecture
from fad_deploy.profile.side_by_side import PRECISIONS, cpu_record, ratios, simd_flags, time_models
from fad_deploy.profile.table import markdown_table
from fan_config_search import CANDIDATES, PMRID, SIZE, THREADS, files
from fan_vs_pmrid import stem

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def label(key: str, width: int, bound: float) -> str:
    if not width:
        return f"{key}, as trained"
    siblings = f"siblings merged up to {bound:g}x" if bound else "no siblings merged"
    return f"{key}, groups of at least {width}, {siblings}"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", nargs="+", default=["today", "d8-12-24"], metavar="KEY", choices=CANDIDATES,
                   help="configurations (fan_config_search.py's keys; default: today d8-12-24)")
    p.add_argument("--widths", nargs="+", type=int, default=[8, 16], metavar="N",
                   help="group widths to write the grouped convs with (default: 8 16)")
    p.add_argument("--sibling-bounds", nargs="+", type=float, default=[tf_graph.MAX_SIBLING_EXTRA_MACS],
                   metavar="B", help="export at each width with sibling convs merged where their readers gain at "
                   "most B times their MACs (0: none; inf: all; default: fad-export's, "
                   f"{tf_graph.MAX_SIBLING_EXTRA_MACS:g})")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--per-round", type=int, default=1)
    p.add_argument("--tag", help="suffix of the result files, e.g. for another CPU")
    args = p.parse_args()
    if any(w < 1 for w in args.widths):
        p.error("--widths: positive channel counts")
    if any(b < 0 for b in args.sibling_bounds):
        p.error("--sibling-bounds: non-negative factors")
    return args


def main():
    args = parse_args()
    models = {PMRID: files(export_architecture("pmrid", SIZE, ("tflite",), name=baseline_name("pmrid")))}
    variants = []
    for key in args.candidates:
        overrides = CANDIDATES[key][1]
        for width, bound in [(0, 0), *((w, b) for w in args.widths for b in args.sibling_bounds)]:
            with mock.patch.object(tf_graph, "MAX_SIBLING_EXTRA_MACS", bound):
                models[label(key, width, bound)] = files(export_architecture(
                    "fan", SIZE, ("tflite",), config=overrides, name=f"fan-gw-{key}-{width}-{bound:g}",
                    group_width=width))
            cost = written_conv_cost(build("fan", overrides), SIZE, width) if width else None
            variants.append({"key": key, "width": width, "sibling_bound": bound, "label": label(key, width, bound),
                             "executed_macs_ratio": cost["macs_written"] / cost["macs_grouped"] if cost else 1.0})
    cpu = cpu_record()
    rows, load = time_models(models, SIZE, THREADS, args.rounds, args.per_round)
    by = {(r["model"], r["precision"], r["threads"]): r for r in rows}
    table = []
    for v in variants:
        vs_pmrid = ratios(rows, v["label"], PMRID)
        vs_trained = ratios(rows, v["label"], label(v["key"], 0, 0))
        v.update(vs_pmrid={f"{p} x{t}": r for (p, t), r in vs_pmrid.items()},
                 vs_trained={f"{p} x{t}": r for (p, t), r in vs_trained.items()},
                 ms_per_megapixel={f"{p} x{t}": by[v["label"], p, t]["ms_per_megapixel"]
                                   for p in PRECISIONS for t in THREADS})
        table.append([v["label"], f"{v['executed_macs_ratio']:.2f}",
                      *(" / ".join(f"{by[v['label'], p, t]['ms_per_megapixel']:.1f}" for t in THREADS)
                        for p in PRECISIONS),
                      *(" / ".join(f"{vs_pmrid[p, t]:.2f}" for t in THREADS) for p in PRECISIONS),
                      *(" / ".join(f"{vs_trained[p, t]:.2f}" for t in THREADS) for p in PRECISIONS)])
    pmrid = [PMRID, "", *(" / ".join(f"{by[PMRID, p, t]['ms_per_megapixel']:.1f}" for t in THREADS)
                          for p in PRECISIONS), "1", "1", "", ""]
    command = (f"python benchmarks/group_width.py --candidates {' '.join(args.candidates)} --widths "
               f"{' '.join(map(str, args.widths))} --sibling-bounds {' '.join(f'{b:g}' for b in args.sibling_bounds)} "
               f"--rounds {args.rounds} --per-round {args.per_round}"
               + (f" --tag {args.tag}" if args.tag else ""))
    md = "\n\n".join([
        "# Grouped convs written with wider groups (`fad-export --group-width N`), sibling convs merged",
        f"`{command}`: each configuration exported with initial weights as trained and with its grouped convs "
        "written with at least N channels per group (adjacent groups merged, block-diagonal: the same numbers; "
        "depthwise convs stay), and with sibling convs merged where their readers gain at most B times the "
        "siblings' MACs (convs with a ReLU reading one tensor alike, FAN's encoder and decoder Feature-Align "
        "conditioning per level: one conv, each reader on its channels through zero weights; the same numbers, "
        "int8 included), timed with XNNPACK on 1x512x512x4 against the PMRID architecture, fp32 and int8, "
        f"1 and 2 threads, {args.rounds} interleaved rounds of {args.per_round} invokes in one process; medians.",
        f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {simd_flags(cpu)}. Other processes used "
        f"{load['other_processes_cpu_share']:.0%} of the CPU time during the {load['seconds']:.0f} s of timing "
        "(compare ratios only).",
        markdown_table(["export", "executed conv MACs x", "fp32 ms/MP (1 / 2 thr)", "int8 ms/MP (1 / 2 thr)",
                        "fp32 / PMRID (1 / 2)", "int8 / PMRID (1 / 2)", "fp32 / as trained (1 / 2)",
                        "int8 / as trained (1 / 2)"], [pmrid, *table]),
        "Issue 18's targets: int8 <= 0.6 and fp32 <= 0.7 of PMRID's time. The executed MACs count the zeros "
        "outside the blocks (not the merged siblings' zeros); the network's own MACs and its outputs do not "
        "change."])
    write_text(RESULTS / f"{stem('group_width', args.tag)}.md", md + "\n")
    write_json(RESULTS / f"{stem('group_width', args.tag)}.json",
               {"command": command, "cpu": cpu, "load": load, "variants": variants,
                "pmrid_ms_per_megapixel": {f"{p} x{t}": by[PMRID, p, t]["ms_per_megapixel"]
                                           for p in PRECISIONS for t in THREADS}})
    print(f"wrote {RESULTS / stem('group_width', args.tag)}.md")


if __name__ == "__main__":
    main()
