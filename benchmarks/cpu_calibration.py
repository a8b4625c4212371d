"""Calibrate the CPU latency model with measured micro-benchmarks and state its error on
FAN's and the PMRID architecture's layers (issue 18).

    python benchmarks/cpu_calibration.py [--rounds 5] [--per-round 2]

Single-op micro-benchmarks at FAN's level shapes (fad_deploy/profile/cpu_model.py) and the
single-op cuts of FAN (export/fan-nsma/fan-nsma-0) and of the PMRID baseline
(fad_deploy/profile/tflite_ops.py) run at one thread, fp32 and int8, in one process with
rounds interleaved. The per-kind model (ms = a + b MACs + c bytes) is fitted on the
micro-benchmarks only, then predicts every layer of both networks; the plain roofline
(MACs / this CPU's peak MAC rate, what fad-bench's roofline column uses) is shown for
comparison. Writes benchmarks/results/cpu_calibration.{md,json} (the json holds the model).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fad_deploy.export.manifest import read_bundle
from fad_deploy.export.tflite import quiet_tensorflow
from fad_deploy.fileio import write_json, write_text
from fad_deploy.profile.baseline import baseline_name, export_architecture
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.profile.cpu_model import fit, micro_benchmarks, micro_model
from fad_deploy.profile.side_by_side import PRECISIONS, OtherLoad, cpu_record, simd_flags
from fad_deploy.profile.table import markdown_table
from fad_deploy.profile.tflite_ops import cut, interleaved_times, interpreter, model_ops

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZE = (512, 512)
THREADS = 1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=2)
    return p.parse_args()


def networks() -> dict[str, dict[str, bytes]]:
    fan = ROOT / "export" / "fan-nsma"
    entry = next(e for e in read_bundle(fan)["models"] if e["name"] == "fan-nsma-0")
    pmrid = export_architecture("pmrid", SIZE, ("tflite",), name=baseline_name("pmrid"))
    pmrid_entry = read_bundle(pmrid)["models"][0]
    return {"FAN": {p: (fan / entry["files"][f"tflite-{p}"]["file"]).read_bytes() for p in PRECISIONS},
            "PMRID architecture": {p: (pmrid / pmrid_entry["files"][f"tflite-{p}"]["file"]).read_bytes()
                                   for p in PRECISIONS}}


def error_stats(pred: np.ndarray, meas: np.ndarray) -> dict:
    rel = np.abs(pred - meas) / meas
    return {"median": float(np.median(rel)), "p90": float(np.percentile(rel, 90)), "max": float(rel.max()),
            "time_weighted": float(np.sum(np.abs(pred - meas)) / np.sum(meas)),
            "total": float(pred.sum() / meas.sum() - 1)}


def main():
    args = parse_args()
    tf = quiet_tensorflow()
    micros = micro_benchmarks()
    nets = networks()
    runs, micro_ops, net_ops = {}, {p: [] for p in PRECISIONS}, {}
    for p in PRECISIONS:
        for m in micros:
            model = micro_model(tf, m, p == "int8")
            (op,) = model_ops(model)
            micro_ops[p].append((m, op))
            runs[f"micro {p} {m.label}"] = interpreter(model, THREADS).invoke
        for name, files in nets.items():
            net_ops[name, p] = model_ops(files[p], SIZE)
            for op in net_ops[name, p]:
                runs[f"{name} {p} {op.index}"] = interpreter(cut(files[p], op.ops, SIZE), THREADS).invoke
    with OtherLoad() as watch:
        times = interleaved_times(runs, args.rounds, args.per_round)
    load = watch.record
    med = {k: float(np.median(v)) for k, v in times.items()}
    peak = cpu_peak()
    model = fit({p: [(op, med[f"micro {p} {m.label}"]) for m, op in micro_ops[p]] for p in PRECISIONS},
                {p: peak.macs_per_s(THREADS, int8=p == "int8") for p in PRECISIONS})
    cpu = cpu_record()
    results, summary, layer_tables = {}, [], []
    for (name, p), ops in net_ops.items():
        meas = np.array([med[f"{name} {p} {op.index}"] for op in ops])
        pred = np.array([model.predict(op, p) for op in ops])
        roof = np.array([op.macs / model.peak[p] * 1e3 for op in ops])
        macs_ops = np.array([op.macs > 0 for op in ops])
        calibrated, roofline = error_stats(pred, meas), error_stats(roof[macs_ops], meas[macs_ops])
        results[f"{name} {p}"] = {"calibrated": calibrated, "roofline": roofline, "layers": [
            {"index": op.index, "op": op.name, "kind": op.kind, "out_shape": list(op.out_shape), "macs": op.macs,
             "bytes": op.bytes, "measured_ms": float(t), "predicted_ms": float(q), "roofline_ms": float(r)}
            for op, t, q, r in zip(ops, meas, pred, roof)]}
        summary.append([name, p, f"{meas.sum():.1f}", f"{pred.sum():.1f}", f"{calibrated['total']:+.0%}",
                        f"{calibrated['median']:.0%}", f"{calibrated['p90']:.0%}", f"{calibrated['time_weighted']:.0%}",
                        f"{roof.sum():.1f}", f"{roofline['median']:.0%}"])
        rows = [[op.index, op.name, op.kind, "x".join(map(str, op.out_shape)), f"{op.macs:,}", f"{t:.3f}", f"{q:.3f}",
                 f"{(q - t) / t:+.0%}", f"{r:.3f}"] for op, t, q, r in zip(ops, meas, pred, roof)]
        layer_tables.append(f"### {name}, {p}\n\n" + markdown_table(
            ["#", "op", "kind", "output", "MACs", "measured ms", "calibrated ms", "error", "roofline ms"], rows))
    coef_rows = [[p, kind, f"{a * 1e3:.1f}", f"{1 / b / 1e6:.1f}" if b else "-", f"{1 / c / 1e6:.2f}" if c else "-",
                  model.fits[p][kind]["samples"], f"{model.fits[p][kind]['max_relative_error']:.0%}"]
                 for p in PRECISIONS for kind, (a, b, c) in sorted(model.coefficients[p].items())]
    md = "\n\n".join([
        "# CPU latency model calibrated by micro-benchmarks (TFLite, XNNPACK, 1 thread)",
        f"`python benchmarks/cpu_calibration.py --rounds {args.rounds} --per-round {args.per_round}`. "
        f"{len(micros)} single-op micro-benchmarks per precision at FAN's level shapes (every kind at 512x512x16, "
        "256x256x24, 128x128x48, 64x64x96, 32x32x160, plus Feature-Align's narrow 3x3 4->8 and 1x1 8->width convs) "
        "and the single-op cuts of FAN (fan-nsma-0) and of the PMRID architecture at 1x512x512x4 run in one process, "
        f"{args.rounds} interleaved rounds of {args.per_round} invokes; medians. The model "
        "(ms = a + b MACs + c bytes per op kind and precision, non-negative least squares on relative error) is "
        "fitted on the micro-benchmarks only and predicts every layer of both networks. The plain roofline is "
        "MACs / the CPU's peak MAC rate (fad-bench's roofline column), over the ops that have MACs.",
        f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {simd_flags(cpu)}; "
        f"peak {model.peak['fp32'] / 1e9:.0f} fp32 / {model.peak['int8'] / 1e9:.0f} int8 GMAC/s per core "
        f"({peak.derivation()}). Other processes used "
        f"{load['other_processes_cpu_share']:.0%} of the CPU time during the {load['seconds']:.0f} s of timing.",
        "## Prediction error (per layer: |predicted - measured| / measured)\n\n" + markdown_table(
            ["network", "precision", "measured ms (sum)", "calibrated ms", "total error", "median layer error",
             "p90 layer error", "time-weighted error", "roofline ms", "roofline median layer error"], summary),
        "## Fitted model: fixed cost, MAC rate and byte rate per op kind\n\n" + markdown_table(
            ["precision", "kind", "a (us)", "GMAC/s (1/b)", "GB/s (1/c)", "micro-benchmarks", "max fit error"],
            coef_rows),
        "## Every layer\n\n" + "\n\n".join(layer_tables),
    ]) + "\n"
    write_text(RESULTS / "cpu_calibration.md", md)
    write_json(RESULTS / "cpu_calibration.json", {"cpu": cpu, "load": load,
                                                  "model": model.to_dict(), "networks": results,
                                                  "micro": {p: [{"label": m.label, "kind": op.kind, "macs": op.macs,
                                                                 "bytes": op.bytes,
                                                                 "ms": med[f"micro {p} {m.label}"]}
                                                                for m, op in micro_ops[p]] for p in PRECISIONS}})
    print(f"wrote {RESULTS / 'cpu_calibration.md'}")


if __name__ == "__main__":
    main()
