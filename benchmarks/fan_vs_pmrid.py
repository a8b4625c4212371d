"""FAN against the PMRID architecture per RAW megapixel on this CPU (issue 18): TFLite with
XNNPACK (ai_edge_litert), fp32 and int8, 1 and 2 threads, one 4x512x512 packed input, all
in one process with rounds interleaved; then the measured per-op latency of both.

    python benchmarks/fan_vs_pmrid.py [--rounds 8] [--per-round 2] [--op-rounds 5] [--tag TAG]

Models:
- FAN: the shipped export of the first noise-subrange model (export/fan-nsma/fan-nsma-0; its grouped
  convs written as fad-export writes them, in groups of at least 16 channels by default);
- PMRID architecture: our PMRID baseline (fad_deploy/models/pmrid.py) with initial weights,
  int8 ranges calibrated on random inputs (fad_deploy/profile/baseline.py);
- FAN architecture, initial weights: fan-nsma-0's configuration exported the same way as
  the PMRID baseline, a control that latency does not depend on the weights;
- FAN with its grouped convs as block-diagonal plain convs (``fad-export --no-group-conv``,
  the same weights): more MACs on kernels that run more MACs per second.
Each TFLite file is resized to 512x512; only ``invoke`` is timed (no I/O conversion).

Writes benchmarks/results/fan_vs_pmrid.{md,json} and per_op_fan.md, per_op_pmrid.md
(with .json; ``--tag T`` appends -T to each name, for another CPU), recording the CPU, its
SIMD flags and the share of CPU time other processes used during the timing (the machine is
shared: compare ratios within one run).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.export.manifest import read_bundle
from fad_deploy.export.tflite import TFLiteOptions, export_tflite, written_conv_cost
from fad_deploy.fileio import write_bytes, write_json, write_text
from fad_deploy.models.registry import load_checkpoint
from fad_deploy.profile.baseline import baseline_name, export_architecture
from fad_deploy.profile.side_by_side import PRECISIONS, OtherLoad, cpu_record, ratios, simd_flags, time_models
from fad_deploy.profile.table import markdown_table
from fad_deploy.profile.tflite_ops import kind_summary, op_rows, per_op_times

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FAN_BUNDLE, FAN_MODEL = ROOT / "export" / "fan-nsma", "fan-nsma-0"
SIZE = (512, 512)  # packed: one RAW megapixel
THREADS = (1, 2)
TARGETS = {"int8": 0.6, "fp32": 0.7}  # issue 18: FAN ms/MP at most this times PMRID's, same run
PER_OP_THREADS = 1  # per-op tables at one thread: each op's time is its own
PLAIN = "FAN, grouped convs as plain convs"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds of the side-by-side timing")
    p.add_argument("--per-round", type=int, default=2, help="invokes per model and round")
    p.add_argument("--op-rounds", type=int, default=5, help="interleaved rounds of the per-op timing")
    p.add_argument("--tag", help="suffix of the result files (fan_vs_pmrid-TAG.md, ...), e.g. for another CPU")
    return p.parse_args()


def model_files() -> dict[str, dict]:
    """name -> {"fp32"/"int8": tflite path, "arch", "config", "weights"}."""
    entry = next(e for e in read_bundle(FAN_BUNDLE)["models"] if e["name"] == FAN_MODEL)
    fan = {p: FAN_BUNDLE / entry["files"][f"tflite-{p}"]["file"] for p in PRECISIONS}
    models = {"FAN": {**fan, "arch": entry["arch"], "config": entry["config"],
                      "weights": f"trained ({FAN_MODEL}, shipped export; int8 by QAT)"}}
    width = entry["files"]["tflite-int8"].get("group_width", 0)  # the control writes its groups as the export did
    for label, arch, config in (("PMRID architecture", "pmrid", None),
                                ("FAN architecture (control)", entry["arch"], entry["config"])):
        name = baseline_name(arch) if config is None else f"{FAN_MODEL}-arch"
        folder = export_architecture(arch, SIZE, ("tflite",), config=config, name=name,
                                     group_width=0 if config is None else width)
        files = read_bundle(folder)["models"][0]["files"]
        models[label] = {**{p: folder / files[f"tflite-{p}"]["file"] for p in PRECISIONS}, "arch": arch,
                         "config": config, "weights": float_card(folder)}
    models[PLAIN] = {**plain_conv_files(), "arch": entry["arch"], "config": entry["config"],
                     "weights": f"trained ({FAN_MODEL}: the shipped checkpoints, exported with --no-group-conv)"}
    return models


def plain_conv_files() -> dict[str, Path]:
    """fan-nsma-0's shipped float and int8 checkpoints exported with their grouped convs as
    block-diagonal plain convs, into the cache."""
    folder = default_cache_dir() / "fan_vs_pmrid"
    files = {}
    for p, suffix in (("fp32", ".pt"), ("int8", ".int8.pt")):
        ckpt = load_checkpoint(ROOT / "models" / "nsma" / f"{FAN_MODEL}{suffix}")
        model, _ = export_tflite(ckpt, TFLiteOptions(int8=p == "int8", group_conv=False), "plain convs", {})
        files[p] = folder / f"{FAN_MODEL}-plain-conv.{p}.tflite"
        write_bytes(files[p], model)
    return files


def float_card(folder: Path) -> str:
    name = read_bundle(folder)["models"][0]["name"]
    return load_checkpoint(folder / f"{name}.pt").card["weights"] + "; int8 ranges calibrated on random inputs"


def ratio_rows(rows: list[dict], a: str, b: str) -> list[dict]:
    r = ratios(rows, a, b)
    return [{"precision": p, "threads": t, "ratio": r[p, t], "target": TARGETS[p]} for p in PRECISIONS for t in THREADS]


def side_by_side_md(rows: list[dict], fan_ratios: list[dict], control: list[dict], plain: dict, plain_macs: dict,
                    cpu: dict, load: dict, models: dict, args) -> str:
    by = {(r["model"], r["precision"], r["threads"]): r for r in rows}
    table = []
    for name in models:
        first = by[name, "fp32", 1]
        cells = [name, f"{first['gmacs_per_megapixel']:.3f}", f"{first['params']:,}"]
        for p in PRECISIONS:
            cells.append(" / ".join(f"{by[name, p, t]['ms_per_megapixel']:.1f}" for t in THREADS))
            cells.append(" / ".join(f"{by[name, p, t]['gmac_per_s']:.1f}" for t in THREADS))
        table.append(cells)
    ratio_table = [[r["precision"], r["threads"], f"{r['ratio']:.2f}", f"<= {r['target']}",
                    "met" if r["ratio"] <= r["target"] else "missed"] for r in fan_ratios]
    control_table = [[r["precision"], r["threads"], f"{r['ratio']:.2f}"] for r in control]
    plain_table = [[p, t, f"{plain['FAN'][p, t]:.2f}", f"{plain['PMRID architecture'][p, t]:.2f}"]
                   for p in PRECISIONS for t in THREADS]
    weights = "\n".join(f"- {name}: {m['weights']}" for name, m in models.items())
    return "\n\n".join([
        "# FAN vs the PMRID architecture on this CPU (TFLite, XNNPACK)",
        f"`python benchmarks/fan_vs_pmrid.py --rounds {args.rounds} --per-round {args.per_round} "
        f"--op-rounds {args.op_rounds}{f' --tag {args.tag}' if args.tag else ''}`. One process; every model, "
        "precision and thread count is timed in "
        f"{args.rounds} interleaved rounds of {args.per_round} `invoke` calls on a 1x512x512x4 input (one RAW "
        "megapixel, 2**20 Bayer pixels); medians. MACs are counted on the PyTorch graph (one MAC per "
        "multiply-accumulate).",
        f"CPU: {cpu['model']}, {cpu['cores']} cores ({cpu['logical_cpus']} logical), flags: {simd_flags(cpu)}. "
        f"The machine is shared: other processes used {load['other_processes_cpu_share']:.0%} of its CPU time "
        f"during the {load['seconds']:.0f} s of timing (1-min load average {load['load_average_1min'][0]} -> "
        f"{load['load_average_1min'][1]}), so absolute times are noisy; the ratios below come from this one run.",
        weights + "\n\nLatency does not depend on the weights' values (the kernels do the same work for any "
        "numbers): the control row, FAN's own configuration with initial weights exported the same way as the "
        "PMRID baseline, should time like the trained FAN (ratios in the last table).",
        markdown_table(["model", "GMACs/MP", "params", "fp32 ms/MP (1 / 2 threads)", "fp32 GMAC/s (1 / 2)",
                        "int8 ms/MP (1 / 2 threads)", "int8 GMAC/s (1 / 2)"], table),
        "## FAN / PMRID architecture, time per megapixel (issue 18's targets)\n\n"
        + markdown_table(["precision", "threads", "FAN / PMRID", "target", ""], ratio_table),
        "## Control: FAN initial weights / FAN trained\n\n"
        + markdown_table(["precision", "threads", "ratio"], control_table),
        "## FAN with its grouped convs as block-diagonal plain convs (`fad-export --no-group-conv`)\n\n"
        f"The same weights; the plain convs run {plain_macs['macs_written'] / plain_macs['macs_grouped']:.2f}x "
        "the conv MACs (zeros outside the blocks) on the dense kernels. Its time over FAN's and over the PMRID "
        "architecture's:\n\n"
        + markdown_table(["precision", "threads", "/ FAN", "/ PMRID architecture"], plain_table),
        f"Per-op tables: [{stem('per_op_fan', args.tag)}.md]({stem('per_op_fan', args.tag)}.md), "
        f"[{stem('per_op_pmrid', args.tag)}.md]({stem('per_op_pmrid', args.tag)}.md).",
    ]) + "\n"


def stem(name: str, tag: str | None) -> str:
    """A result file's name without suffix: ``name``, tagged with --tag (another CPU's run)."""
    return f"{name}-{tag}" if tag else name


def per_op_md(name: str, files: dict, results: dict, load: dict, args) -> str:
    parts = [f"# Per-op latency of {name} (TFLite, XNNPACK, {PER_OP_THREADS} thread, 1x512x512x4 input)",
             "Measured, not estimated: the model is cut into single-op sub-models (each a valid .tflite with "
             "one op and its weights; its activation inputs become model inputs, at the shapes of the 512x512 "
             "run), each timed alone in its own interpreter with XNNPACK on random input. A PAD that feeds a "
             "convolution is timed with it (XNNPACK folds it into the convolution's padding). The sub-models and "
             f"the whole model run in {args.op_rounds} interleaved rounds of {args.per_round} invokes; medians. "
             "A cut op starts with its input cold in cache and pays one invoke's fixed cost, so the per-op sum "
             "differs from the whole model; both are given. MACs: one per conv tap, per elementwise output, per "
             "pooled input. Bytes: every input (weights and biases included) and the output, at their stored "
             "types. Shares are of the per-op sum.",
             f"Machine as in [{stem('fan_vs_pmrid', args.tag)}.md]({stem('fan_vs_pmrid', args.tag)}.md); "
             "other processes used "
             f"{load['other_processes_cpu_share']:.0%} of its CPU time during these {load['seconds']:.0f} s."]
    for p in PRECISIONS:
        r = results[p]
        total = sum(row["ms"] for row in r["ops"])
        macs = sum(row["macs"] for row in r["ops"])
        summary = [[k["kind"], k["ops"], f"{k['macs'] / 1e6:.1f}", f"{k['mac_share']:.1%}", f"{k['ms']:.2f}",
                    f"{k['time_share']:.1%}", f"{k['gmac_per_s']:.1f}", f"{k['bytes'] / 1e6:.2f}"]
                   for k in r["kinds"]]
        ops = [[row["index"], row["op"], row["kind"], "x".join(map(str, row["out_shape"])), f"{row['macs']:,}",
                f"{row['bytes']:,}", f"{row['ms']:.3f}", f"{row['gmac_per_s']:.1f}", f"{row['share']:.1%}"]
               for row in r["ops"]]
        parts += [f"## {p} ({Path(files[p]).name})",
                  f"Per-op sum {total:.1f} ms, whole model {r['whole_ms']:.1f} ms (sum / whole "
                  f"{total / r['whole_ms']:.2f}); {macs / 1e9:.3f} GMACs, {macs / total / 1e6:.1f} GMAC/s overall.",
                  "### By op kind (slowest first)\n\n" + markdown_table(
                      ["kind", "ops", "MMACs", "MAC share", "ms", "time share", "GMAC/s", "MB moved"], summary),
                  "### Every op (execution order)\n\n" + markdown_table(
                      ["#", "op", "kind", "output", "MACs", "bytes", "ms", "GMAC/s", "share"], ops)]
    return "\n\n".join(parts) + "\n"


def per_op(models: dict, name: str, args) -> dict:
    results = {}
    for p in PRECISIONS:
        ops, medians, whole = per_op_times(models[name][p], SIZE, PER_OP_THREADS, args.op_rounds, args.per_round)
        results[p] = {"whole_ms": whole, "ops": op_rows(ops, medians), "kinds": kind_summary(ops, medians)}
    return results


def main():
    args = parse_args()
    models = model_files()
    cpu = cpu_record()
    rows, load = time_models(models, SIZE, THREADS, args.rounds, args.per_round)
    fan_ratios = ratio_rows(rows, "FAN", "PMRID architecture")
    control = ratio_rows(rows, "FAN architecture (control)", "FAN")
    plain = {other: ratios(rows, PLAIN, other) for other in ("FAN", "PMRID architecture")}
    plain_macs = written_conv_cost(load_checkpoint(ROOT / "models" / "nsma" / f"{FAN_MODEL}.pt").build(), SIZE)
    out = stem("fan_vs_pmrid", args.tag)
    write_text(RESULTS / f"{out}.md",
               side_by_side_md(rows, fan_ratios, control, plain, plain_macs, cpu, load, models, args))
    write_json(RESULTS / f"{out}.json", {
        "cpu": cpu, "load": load, "size": list(SIZE), "rows": rows, "fan_over_pmrid": fan_ratios,
        "control_over_fan": control, "weights": {n: m["weights"] for n, m in models.items()},
        "plain_conv_over": {k: [{"precision": p, "threads": t, "ratio": r} for (p, t), r in v.items()]
                            for k, v in plain.items()}, "plain_conv_macs": plain_macs})
    print(f"wrote {RESULTS / out}.md")
    for name, base in (("FAN", "per_op_fan"), ("PMRID architecture", "per_op_pmrid")):
        with OtherLoad() as load:
            results = per_op(models, name, args)
        out = stem(base, args.tag)
        write_text(RESULTS / f"{out}.md", per_op_md(name, models[name], results, load.record, args))
        write_json(RESULTS / f"{out}.json", {"model": name, "cpu": cpu, "load": load.record,
                                             "threads": PER_OP_THREADS, **results})
        print(f"wrote {RESULTS / out}.md")


if __name__ == "__main__":
    main()
