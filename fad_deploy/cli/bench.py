"""fad-bench: latency, MACs and activation memory of denoisers on this CPU or an Android phone."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..android.benchmark import DEFAULT_DELEGATES, DEFAULT_REPEATS as ADB_REPEATS, DEFAULT_THREADS as ADB_THREADS, \
    DEFAULT_TIMEOUT_S, DEFAULT_WARMUP as ADB_WARMUP
from ..checks import given_options, input_file, input_folder, json_output, non_empty, non_negative_int, \
    output_folder, plot_output, positive_float, positive_int, require_not_model, require_output, shot_noise, \
    thread_count
from ..errors import FadError, count
from ..fileio import write_json
from ..runners import BACKENDS
from .common import OneLineParser, user_errors
from .export import DEFAULT_GROUP_WIDTH

CPU_DEFAULT_THREADS = (1, 2)
REPORT_SIZE = (512, 512)  # profiles default to one RAW megapixel
SMALL_SIZE = (128, 128)  # packed sizes under this many pixels: a run's fixed costs outweigh its per-pixel work
DEFAULT_QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "quality.json"  # fad-eval's
DEFAULT_CALIBRATION = DEFAULT_QUALITY.with_name("cpu_calibration.json")  # benchmarks/cpu_calibration.py's
# Options that do something on one --device only, or only with latency runs; each None unless given.
ADB_OPTIONS = ("benchmark_binary", "delegate", "noise_a", "timeout")  # the Android group's
CPU_OPTIONS = ("backends", "report", "calibration", "baselines", "no_timing")
TIMING_OPTIONS = ("backends", "threads", "repeats", "warmup", "json", "quality", "plot", "baselines", "no_progress")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fad-bench",
        description="Measure denoisers after warm-up: median and p90 latency per backend (PyTorch fp32, "
        "onnxruntime fp32/int8, TFLite fp32/int8/16x8 with XNNPACK) and thread count, with parameters, MACs per RAW "
        "megapixel (one megapixel = a 4x512x512 packed input), peak activation arena (greedy planner) and the "
        "ratio to this CPU's roofline bound. Exported backends read export/<model>/ (fad-export); an export "
        "folder's name (fan-nsma: the exported noise sub-range array) stands for each network in it. Prints a "
        "table; with --json also the results as JSON and, where fad-eval's quality JSON exists, a "
        "quality/compute/latency plot (beside it, or at --plot).",
    )
    p.add_argument("models", nargs="*", type=non_empty,
                   help="shipped model names, checkpoint paths or export folders (names in export/ or paths; "
                   "default: every model in models/ and every folder in export/); with --device adb, export folders")
    p.add_argument("--device", default="cpu", help="cpu (this machine) or adb[:SERIAL] (an Android phone)")
    p.add_argument("--backends", nargs="+", metavar="B",
                   help=f"CPU backends to time (default: all of {', '.join(BACKENDS)}, those without an export "
                        "listed as skipped; one named here that cannot run makes the exit status 2, after the "
                        "results are written)")
    p.add_argument("--threads", nargs="+", type=thread_count, metavar="N",
                   help=f"thread counts (default on cpu: {' '.join(map(str, CPU_DEFAULT_THREADS))}; on adb: "
                        f"{' '.join(map(str, ADB_THREADS))})")
    p.add_argument("--size", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="packed input height and width (default on cpu: 256 256 = 0.25 RAW megapixels; on adb: "
                        "each model's export size)")
    p.add_argument("--repeats", type=positive_int,
                   help=f"timed runs per measurement (default on cpu: 10; on adb: {ADB_REPEATS})")
    p.add_argument("--warmup", type=non_negative_int,
                   help=f"untimed runs first (default on cpu: 3; on adb: {ADB_WARMUP})")
    p.add_argument("--json", metavar="OUT", type=json_output, help="write the results here (JSON)")
    p.add_argument("--export-dir", metavar="DIR", type=input_folder, help="folder holding <model>/ export folders "
                   "(default: export/ beside models/)")
    p.add_argument("--quality", metavar="JSON", type=input_file, help="fad-eval results for the plot (default: "
                   "benchmarks/results/quality.json when it exists)")
    p.add_argument("--plot", metavar="PNG", type=plot_output, help="plot path: .png, .pdf or .svg (default: beside "
                   "--json, .png)")
    p.add_argument("--report", metavar="DIR", type=output_folder,
                   help="also write profile_<model>.md/.json here: MACs per layer, activation memory timeline, "
                   "accelerator fit and exact-tiling sizes, at --size (default 512 512)")
    p.add_argument("--calibration", metavar="JSON", type=input_file, help="CPU latency model for --report's "
                   "per-layer latency (default: benchmarks/results/cpu_calibration.json when it exists; "
                   "benchmarks/cpu_calibration.py calibrates this machine)")
    p.add_argument("--baselines", nargs="*", metavar="ARCH", help="architectures timed with initial weights next to "
                   "the models (latency does not depend on the weights; exported once into the cache; default: pmrid, "
                   "our PMRID-architecture baseline, when no models are named; none: --baselines alone)")
    p.add_argument("--no-timing", action="store_true", default=None,
                   help="profile only (with --report): no latency runs")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    adb = p.add_argument_group("Android (--device adb)")
    adb.add_argument("--benchmark-binary", metavar="PATH", type=input_file,
                     help="TFLite benchmark_model for the phone's ABI (required with --device adb)")
    adb.add_argument("--delegate", action="append",
                     help=f"xnnpack, cpu, gpu or nnapi (repeatable; default {' '.join(DEFAULT_DELEGATES)})")
    adb.add_argument("--noise-a", type=shot_noise,
                     help="shot-noise level: run the sub-range model the phone would pick")
    adb.add_argument("--timeout", type=positive_float,
                     help=f"seconds per benchmark_model run (default {DEFAULT_TIMEOUT_S:g})")
    return p


def bench_cpu(args, plot: tuple[Path, Path, dict[str, float]] | None = None) -> dict | None:
    from ..profile.bench_cpu import DEFAULT_REPEATS, DEFAULT_SIZE, DEFAULT_WARMUP, BenchConfig, bench_models, \
        default_models, profile_name, run_cpu_bench, write_profiles
    from ..profile.latency import packed_megapixels

    cfg = BenchConfig(
        backends=tuple(dict.fromkeys(args.backends or BACKENDS)),  # one named twice is timed once
        threads=tuple(dict.fromkeys(args.threads or CPU_DEFAULT_THREADS)),
        size=tuple(args.size or DEFAULT_SIZE),
        repeats=DEFAULT_REPEATS if args.repeats is None else args.repeats,
        warmup=DEFAULT_WARMUP if args.warmup is None else args.warmup, export_root=args.export_dir)
    cfg.check()
    if args.no_timing and not args.report:
        raise FadError("--no-timing leaves nothing to do without --report DIR")
    models = bench_models(list(dict.fromkeys(args.models)) or default_models(args.export_dir), args.export_dir)
    read = [m.checkpoint for m in models if m.checkpoint] + [m.export for m in models]
    require_not_model(args.json, read, "argument --json")
    if plot is not None:
        require_not_model(plot[0], read, "the plot" if args.plot is None else "argument --plot")
    cpu_model = None
    if args.report:  # --json or the plot must not be one of --report's files
        reports = {(args.report / profile_name(m.label, suffix)).resolve() for m in models
                   for suffix in (".md", ".json")}
        for path, what in ((args.json, "argument --json"),
                           (plot and plot[0], "the plot" if args.plot is None else "argument --plot")):
            if path is not None and path.resolve() in reports:
                raise FadError(f"{what} {path}: is one of the profiles --report writes; write it elsewhere")
        from ..profile.cpu_model import CpuCostModel

        calibration = args.calibration or (DEFAULT_CALIBRATION if DEFAULT_CALIBRATION.is_file() else None)
        cpu_model = CpuCostModel.load(calibration) if calibration else None
    baselines = []
    if not args.no_timing:
        from ..profile.baseline import BASELINES, baseline_bench_models

        archs = BASELINES if args.baselines is None and not args.models else args.baselines or ()
        baselines = baseline_bench_models(list(archs), cfg.size, cfg.backends)
    labels = [m.label for m in models + baselines]
    if args.plot and plot is not None and not set(labels) & set(plot[2]):  # refused before any timing
        raise FadError(f"argument --plot: none of the models timed ({', '.join(labels)}) is in {plot[1]} "
                       f"({', '.join(plot[2]) or 'no torch rows'}); fad-bench names a checkpoint by its file name")
    doc = None if args.no_timing else run_cpu_bench(models + baselines, cfg, progress=not args.no_progress)
    if args.report:  # after the timing, which may find nothing to measure: then nothing is written
        for path in write_profiles(models, args.report, tuple(args.size or REPORT_SIZE), cpu_model,
                                   written_width=DEFAULT_GROUP_WIDTH):
            print(f"wrote {path}")
    if doc is None:
        return None
    if baselines:
        doc["baselines"] = {b.label: f"the {b.spec[0]} architecture with initial weights, timed only (latency does "
                            "not depend on the weights)" for b in baselines}
    if cfg.size[0] * cfg.size[1] < SMALL_SIZE[0] * SMALL_SIZE[1]:
        doc["note"] = (f"at {cfg.size[0]}x{cfg.size[1]} ({packed_megapixels(*cfg.size):.3g} RAW megapixels) "
                       "each run's fixed costs outweigh its work: ms/MP and the roofline ratio overstate what "
                       f"frames take; time --size {SMALL_SIZE[0]} {SMALL_SIZE[1]} or more")
    return doc


def plan_plot(args) -> tuple[Path, Path, dict[str, float]] | None:
    """(plot path, quality file, fad-eval's RAW PSNR per model), or None for no plot; checked
    before anything is measured: a given --quality is read, and the default plot path
    (--json's with .png) must be writable."""
    from ..profile.plot import load_quality

    given = load_quality(args.quality) if args.quality else None
    source = args.quality or DEFAULT_QUALITY
    out = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if out is None or not source.is_file():
        return None
    if not args.plot:
        require_output(out, "file", "plot (--json's name with .png)")
    return out, source, given if given is not None else load_quality(source)


def write_plot(plot: tuple[Path, Path, dict[str, float]] | None, doc: dict) -> None:
    from ..profile.plot import quality_plot

    if plot is None:
        return
    out, source, quality = plot
    plotted = quality_plot(doc, quality, out)
    print(f"plot: {out} ({', '.join(plotted)})" if plotted else f"no model of {source} was benchmarked: no plot")


@user_errors
def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.device != "cpu" and not args.device.startswith("adb"):
        raise FadError(f"--device {args.device!r}: expected cpu, adb or adb:SERIAL")
    if args.device == "cpu":  # options that would do nothing here
        phone_only = given_options(p, args, ADB_OPTIONS)
        if phone_only:
            raise FadError(f"{', '.join(phone_only)}: for --device adb (an Android phone), not --device cpu")
        timing = given_options(p, args, TIMING_OPTIONS)
        if args.no_timing and timing:
            raise FadError(f"{', '.join(timing)}: for latency runs, which --no-timing turns off")
        if args.calibration and not args.report:
            raise FadError("--calibration is the latency model of --report's per-layer table: add --report DIR")
    else:
        cpu_only = given_options(p, args, CPU_OPTIONS)
        if cpu_only:
            raise FadError(f"{', '.join(cpu_only)}: for --device cpu (this machine), not --device {args.device}")
    plot = plan_plot(args)
    if args.device.startswith("adb"):
        from ..android.bench import bench_adb  # the phone path: same JSON schema (profile/latency.py)

        doc = bench_adb(args)
    else:
        doc = bench_cpu(args, plot)
    if doc is None:
        return
    from ..profile.latency import results_table

    print(results_table(doc))
    for name, note in doc.get("baselines", {}).items():
        print(f"{name}: {note}")
    if "note" in doc:
        print(f"note: {doc['note']}")
    skipped = [f"{m['name']} {reason}" for m in doc["models"] for reason in m.get("skipped", [])]
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if args.json:
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    write_plot(plot, doc)
    if skipped and args.backends:  # (by default every backend is tried: one without an export is skipped)
        raise FadError(f"{count(len(skipped), 'run')} of the --backends asked for could not be made (skipped, above): "
                       "the table holds the rest")

