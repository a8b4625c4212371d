"""fad-export's pipeline: quantize (QAT or PTQ, reused when already done), write every
target's files, validate them against PyTorch, and only then publish the folder.

Files are built in a staging folder next to the output, which then replaces the output
folder whole (an interrupted publish leaves the old bundle or the new one); a failed export, a broken
conversion (parity below its bound) or an int8 model that loses more denoising PSNR than
allowed (:class:`ExportRefused`) publishes nothing. An int8 checkpoint shipped next to its
float source (models/nsma/<name>.int8.pt) or left by a previous export is reused when it
was made from the same source with the same recipe. Until the bundle is published, each
finished QAT's checkpoint (and an interrupted QAT's state) stays beside the output, so a
re-run after an interruption or a refusal does not redo it. Exporting several
checkpoints into one bundle (a noise sub-range array) is a loop over :func:`export_model`
with one manifest; each model is validated on patches of its own noise range. With
``ExportOptions.jobs`` > 1 the bundle's QATs first run side by side, one process each
(:func:`quantize_ahead`), into those files; the loop then finds them done.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..data.synth import VALIDATION_CROPS, validation_set
from ..errors import FadError
from ..fileio import replace_folder, restore_folder, sole_writer, write_bytes, write_json, write_text
from ..models.registry import Checkpoint, load_checkpoint
from ..quant.graph import Core
from ..quant.int16 import INT16_BACKEND, Int16Runner, int16_grid
from ..quant.qat import (STATE_EVERY_S, PTQConfig, QATConfig, QATState, FakeQuantRunner, is_quantized,
                         post_training_quantization, quantization_aware_training, quantized_base_grid)
from ..quant.recipe import stored_qat_config
from ..runners.base import (INPUT_BASE, INPUT_BASE_RULE, QUANTIZED_BASE, QUANTIZED_BASE_RULE, RESIDUAL_NOTE,
                            RESIDUAL_OUTPUT)
from ..runners.tiling import DEFAULT_TILE
from ..runners.torch_runner import TorchRunner
from .manifest import (FILE_SUFFIX, FORMAT, MANIFEST, RESIDUAL_BASE_KEY, file_record, preprocessing, sha256,
                       tiling_record)
from .onnx import OPSET, export_onnx
from .tflite import TFLiteOptions, check_input_size, export_tflite, written_conv_cost
from .validate import Thresholds, table, validate_model

TARGETS = ("tflite", "onnx")
REPORT = "report.md"
DYNAMIC_HW = {"onnx-fp32": True, "onnx-int8": True, "tflite-fp32": False, "tflite-int8": False, "tflite-int16": False}


QAT_RESUME_NOTE = (f"the same command resumes the QAT (its state is saved every {STATE_EVERY_S:.0f} s) and keeps "
                   "the QATs that finished")
INT16_METHOD = "16x8 from int8 QAT"  # the manifest's quantization method of a 16x8 export
INT16_ACTIVATIONS = ("16-bit per-tensor symmetric, each clamped to the range the int8 QAT learned for it (the "
                     "input's excepted) and calibrated inside it by the converter")


@dataclass(frozen=True)
class ExportOptions:
    targets: tuple[str, ...] = ("tflite",)
    int8: bool = True
    ptq: bool = False  # calibration only instead of QAT
    tflite: TFLiteOptions = TFLiteOptions()
    qat: QATConfig = QATConfig()
    ptq_config: PTQConfig = PTQConfig()
    thresholds: Thresholds = Thresholds()
    threads: int | None = None
    progress: bool = True
    requantize: bool = False  # QAT/PTQ again even where a shipped int8 checkpoint has the same recipe
    # a shipped int8 checkpoint of the same source is converted whatever QAT recipe made it (its recipe is then the
    # model's: fad-export given no quantization settings); else it is reused only when made with ``qat``
    shipped_recipe: bool = False
    # QATs of a bundle's models run at once, one process each (threads split between them): a QAT step
    # is too small to keep two cores busy (benchmarks/results/qat_jobs.md)
    jobs: int = 1
    device: str = "cpu"  # where QAT trains (cpu, cuda, cuda:N)
    validation_crops: int = VALIDATION_CROPS  # per validation photo and noise level


@dataclass
class Exported:
    """One network's manifest entry plus the checkpoints validation compares against."""

    entry: dict
    float_ckpt: Checkpoint
    int8_ckpt: Checkpoint | None
    quantize_s: float | None = None  # seconds of a new QAT/PTQ (None: reused)


def int16(options: ExportOptions) -> bool:
    return options.int8 and options.tflite.int16


def quantization_config(options: ExportOptions) -> PTQConfig | QATConfig:
    """PTQ's or QAT's settings (a 16x8 export is made from the int8 QAT's checkpoint)."""
    return options.ptq_config if options.ptq else options.qat


def made_by(source_sha: str, method: str, config) -> dict:
    """The recipe an int8 checkpoint records (``extra["quantization"]["recipe"]``): its float
    source, PTQ or QAT, and the settings (a :class:`PTQConfig` or :class:`QATConfig`)."""
    return {"source_sha256": source_sha, "method": method, "output": RESIDUAL_OUTPUT,
            "config": dataclasses.asdict(config)}


def quantization_recipe(source_sha: str, options: ExportOptions) -> dict:
    return made_by(source_sha, "ptq" if options.ptq else "qat", quantization_config(options))


def recipe_of(ckpt: Checkpoint) -> dict | None:
    """The recipe an int8 checkpoint was made with (a QAT's settings completed with the fields
    added since, see :func:`stored_qat_config`)."""
    recipe = (ckpt.extra.get("quantization") or {}).get("recipe")
    if recipe is None or recipe["method"] != "qat":
        return recipe
    return {**recipe, "config": stored_qat_config(recipe["config"])}


def shipped_int8(path: Path) -> Path:
    """Where a float checkpoint's shipped int8 checkpoint lies (models/nsma/<name>.int8.pt)."""
    return path.with_name(f"{path.stem}{FILE_SUFFIX['torch-int8']}")


def reusable(candidates: list[Path], recipe: dict) -> tuple[Path, Checkpoint] | None:
    """The first int8 checkpoint among ``candidates`` made from the same source with the same
    recipe (a shipped one, or a previous export's)."""
    for path in candidates:
        if not path.is_file():
            continue
        try:
            previous = load_checkpoint(path)
        except FadError:
            continue
        if recipe_of(previous) == recipe:
            return path, previous
    return None


def resume_files(out: Path, name: str) -> tuple[Path, Path]:
    """Beside the output folder while an export is unfinished: the int8 checkpoint of a model
    whose QAT/PTQ has finished, and the resume state of one whose QAT was interrupted."""
    return out.parent / f".{out.name}.{name}.int8.pt", out.parent / f".{out.name}.{name}.qat-state.pt"


def quantize(ckpt: Checkpoint, recipe: dict, options: ExportOptions, candidates: list[Path], dest: Path,
             resume: Path, position: int = 0) -> tuple[Checkpoint, float | None]:
    """The int8 checkpoint, written to ``dest``: a shipped or previous export's file (bytes
    unchanged) made from the same source with the same recipe, else a new QAT (resumable
    from ``resume``) or PTQ; and the seconds that took, over every resumed run (None when
    reused). Timings go to the printed summary, never into the files."""
    found = reusable(candidates, recipe)
    if found is not None:
        write_bytes(dest, found[0].read_bytes())
        return found[1], None
    start, state = time.time(), QATState(resume)
    if options.ptq:
        q = post_training_quantization(ckpt, options.ptq_config, options.progress)
    else:
        try:
            q = quantization_aware_training(ckpt, quantization_config(options), options.progress, state, position,
                                            options.device)
        except KeyboardInterrupt as e:
            e.add_note(QAT_RESUME_NOTE)
            raise
    q = dataclasses.replace(q, extra={**q.extra, "quantization": {**q.extra["quantization"], "recipe": recipe}})
    q.save(dest)
    return q, state.earlier_s + time.time() - start


@dataclass(frozen=True)
class QuantizeJob:
    """How :func:`export_model` gets one model's int8 checkpoint (a 16x8 file's too)."""

    recipe: dict
    candidates: list[Path]  # reusable files, the first made with ``recipe`` wins
    done: Path  # a finished QAT's checkpoint, kept beside the output until the bundle is published
    state: Path  # an interrupted QAT's resume state


def quantize_job(name: str, ckpt: Checkpoint, path: Path, options: ExportOptions,
                 published: Path) -> QuantizeJob | None:
    """The quantization :func:`export_model` runs or reuses for model ``name`` (None: none, as
    for a float export or an int8 checkpoint given as it is)."""
    if not options.int8 or is_quantized(ckpt):
        return None
    done, state = resume_files(published, name)
    shipped = [] if options.requantize else [
        published / f"{name}{FILE_SUFFIX['torch-int8']}", shipped_int8(path)]
    recipe = quantization_recipe(sha256(path), options)
    if options.shipped_recipe and shipped and shipped_int8(path).is_file():
        made = recipe_of(load_checkpoint(shipped_int8(path)))
        if made is not None and made["source_sha256"] == recipe["source_sha256"] and made["method"] == "qat":
            recipe = made
    return QuantizeJob(recipe, [done] + shipped, done, state)


def worker_setup() -> None:
    """A side-by-side QAT's process: Ctrl-C is left to fad-export, which stops them all (SIGTERM,
    on which a file being written is removed, as on any exit), and its progress bar takes a thread
    lock (tqdm's default, a multiprocessing lock, would be reported leaked when it is stopped)."""
    import signal
    import threading

    from tqdm import tqdm

    def stop(*_):
        raise SystemExit(1)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    tqdm.set_lock(threading.RLock())


def quantize_worker(path: Path, job: QuantizeJob, options: ExportOptions, threads: int, position: int) -> float:
    """One of :func:`quantize_ahead`'s QATs, in its own process: into ``job.done``; its seconds."""
    import torch

    torch.set_num_threads(threads)
    return quantize(load_checkpoint(path), job.recipe, options, [], job.done, job.state, position)[1]


def quantize_ahead(models: list[tuple[str, Path]], options: ExportOptions, published: Path) -> dict[str, float]:
    """With ``options.jobs`` > 1, the QATs :func:`export_model` would run, side by side: one
    process each, the CPU threads split between them, each into its job's ``done`` file, where
    export_model then finds it. Returns the seconds each took, by model name."""
    if options.jobs < 2 or options.ptq:
        return {}
    todo = []
    for name, path in models:
        job = quantize_job(name, load_checkpoint(path), path, options, published)
        if job is not None and reusable(job.candidates, job.recipe) is None:
            todo.append((path, job, name))
    if len(todo) < 2:
        return {}
    import multiprocessing

    from ..train.config import DataConfig, TrainConfig
    from ..train.trainer import resolve_cache

    resolve_cache(TrainConfig(data=DataConfig(cache=options.qat.cache)))  # built once, before the workers read it
    jobs = min(options.jobs, len(todo))
    threads = options.threads or max(1, len(os.sched_getaffinity(0)) // jobs)
    pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=worker_setup)
    try:
        runs = [(name, pool.apply_async(quantize_worker, (path, job, options, threads, i % jobs)))
                for i, (path, job, name) in enumerate(todo)]
        seconds = {name: run.get() for name, run in runs}
    except BaseException as e:
        pool.terminate()  # an error or an interruption stops them all (each QAT's resume state is kept)
        if isinstance(e, KeyboardInterrupt):
            e.add_note(QAT_RESUME_NOTE)
        if options.progress:  # below the workers' bars, which they cannot close
            sys.stderr.write("\n" * jobs)
        raise
    finally:
        pool.close()
        pool.join()
    return seconds


def export_model(name: str, path: Path, options: ExportOptions, staging: Path, published: Path) -> Exported:
    """Quantize and export one checkpoint into ``staging``; returns its manifest entry."""
    ckpt = load_checkpoint(path)
    if is_quantized(ckpt) and not options.int8:
        raise FadError(f"{path}: an int8 QAT checkpoint; export it with --int8 (a float export would drop its "
                       "quantization and its input map, and run as another network)")
    if "tflite" in options.targets:  # before minutes of QAT
        check_input_size(options.tflite.input_size, Core(ckpt.build()).multiple)
    tiling = tiling_record(ckpt, options.tflite.input_size if "tflite" in options.targets else (DEFAULT_TILE,) * 2)
    source_sha = sha256(path)
    version = f"{name} (fad-deploy {__version__}, source sha256 {source_sha[:12]})"
    pre = {**preprocessing(ckpt), "output": RESIDUAL_NOTE}
    description = {"model": name, "arch": ckpt.arch, "version": version, "preprocessing": pre}
    files: dict[str, dict] = {}

    def put(backend: str, data: bytes, info: dict) -> None:
        file = f"{name}{FILE_SUFFIX[backend]}"
        write_bytes(staging / file, data)
        files[backend] = file_record(staging, file, info)

    int8_ckpt = quant_info = quantize_s = None
    job = quantize_job(name, ckpt, path, options, published)
    if options.int8:
        int8_file = f"{name}{FILE_SUFFIX['torch-int8']}"
        if job is None:  # an int8 checkpoint, exported as it is
            int8_ckpt = ckpt
            write_bytes(staging / int8_file, path.read_bytes())
        else:
            int8_ckpt, quantize_s = quantize(ckpt, job.recipe, options, job.candidates, staging / int8_file,
                                             job.state)
            if quantize_s is not None:  # kept until the bundle is published: a re-run does not redo it
                write_bytes(job.done, (staging / int8_file).read_bytes())
        files["torch-int8"] = file_record(staging, int8_file,
                                          {"format": "fad-deploy checkpoint with extra.quantization"})
        q = int8_ckpt.extra["quantization"]
        quant_info = {"method": q["method"], "weights": q["weights"], "activations": q["activations"],
                      "quantizers": len(q["fake_quant"])}
        if int16(options):
            quant_info = {**quant_info, "method": INT16_METHOD, "activations": INT16_ACTIVATIONS, "int8": q["method"]}
    if int16(options):  # what the quantized file's residual goes onto (the manifest's residual_base)
        base = {"int16": INPUT_BASE, "rule": INPUT_BASE_RULE, "input_grid": int16_grid(int8_ckpt)}
    else:
        base_grid = quantized_base_grid(int8_ckpt) if int8_ckpt is not None else None
        base = {"int8": QUANTIZED_BASE, "rule": QUANTIZED_BASE_RULE, "input_grid": base_grid} if base_grid else None
    for target in options.targets:
        if target == "tflite":
            put("tflite-fp32", *export_tflite(ckpt, dataclasses.replace(options.tflite, int8=False, float_io=False),
                                              version, description))
            if int8_ckpt is not None:
                backend = "tflite-int16" if int16(options) else "tflite-int8"
                put(backend, *export_tflite(int8_ckpt, dataclasses.replace(options.tflite, int8=True),
                                            version, {**description, RESIDUAL_BASE_KEY: base}))
        elif target == "onnx":
            meta = {"version": version, "preprocessing": str(pre)}
            put("onnx-fp32", *export_onnx(ckpt, False, meta))
            if int8_ckpt is not None:
                put("onnx-int8", *export_onnx(int8_ckpt, True, meta))
        else:
            raise FadError(f"unsupported target {target!r}: choose from {', '.join(TARGETS)}")
    entry = {"name": name, "arch": ckpt.arch, "config": ckpt.config,
             "params": sum(v.numel() for k, v in ckpt.state_dict.items() if v.is_floating_point()),
             "source": {"checkpoint": path.name, "sha256": source_sha}, "version": version,
             "shot_range": list(ckpt.shot_range), "output": RESIDUAL_OUTPUT, "preprocessing": pre,
             "quantization": quant_info, "tiling": tiling,
             "files": files}
    if base is not None:
        entry[RESIDUAL_BASE_KEY] = base
    if "tflite" in options.targets:
        t = options.tflite
        entry["written_conv_cost"] = {
            "groups_written_as": "plain convs" if not t.group_conv else
            f"groups of at least {t.group_width} channels" if t.group_width else "trained",
            **written_conv_cost(ckpt.build(), t.input_size, t.written_group_width)}
    return Exported(entry, ckpt, int8_ckpt, quantize_s)


def references(item: Exported) -> dict:
    refs = {"torch": TorchRunner(item.float_ckpt)}
    if item.int8_ckpt is not None:
        refs["torch-int8"] = FakeQuantRunner(item.int8_ckpt)
    if "tflite-int16" in item.entry["files"]:
        refs[INT16_BACKEND] = Int16Runner(item.int8_ckpt)
    return refs


def publish(staging: Path, out: Path) -> None:
    """Put the staged bundle in place of ``out`` whole (a reader finds the old bundle or the new
    one, never a mix); files in ``out`` that are not the old bundle's (the user's) are kept."""
    old = set()
    if (out / MANIFEST).is_file():
        from .manifest import read_bundle

        try:
            old = {r["file"] for e in read_bundle(out)["models"] for r in e["files"].values()} | {REPORT, MANIFEST}
        except FadError:
            old = set()
    replace_folder(staging, out, keep=lambda name: name not in old)


def report(manifest: dict, rows: list[dict], options: ExportOptions) -> str:
    lines = [f"# fad-export: {', '.join(m['name'] for m in manifest['models'])}", ""]
    for m in manifest["models"]:
        q = m["quantization"]
        lines += [f"## {m['name']} ({m['arch']}, {m['params']:,} parameters)", "",
                  f"- source: {m['source']['checkpoint']} (sha256 {m['source']['sha256'][:12]})",
                  f"- noise range a in [{m['shot_range'][0]:.3g}, {m['shot_range'][1]:.3g}], anchor "
                  f"a_A = {m['preprocessing']['anchor']['shot']:.4g}, b_A = {m['preprocessing']['anchor']['read']:.4g}",
                  f"- exact tiling (manifest \"tiling\"): {m['tiling']['tile'][0]}x{m['tiling']['tile'][1]} tiles, "
                  f"receptive-field margin {m['tiling']['margin']}, aligned to {m['tiling']['align']}"]
        if q:
            made = f"{q['method'].upper()}, {q['quantizers']} quantizers" if "quantizers" in q else q["method"].upper()
            lines.append(f"- quantized: {made}; weights {q['weights']}; activations {q['activations']}")
        lines += ["", "| file | bytes | KB | dynamic h, w | sha256 |", "| --- | ---: | ---: | --- | --- |"]
        for backend, r in m["files"].items():
            dyn = {True: "yes", False: "no (fixed; resizable to multiples of "
                   f"{r.get('resizable_to_multiples_of', '?')})"}.get(DYNAMIC_HW.get(backend), "-")
            lines.append(f"| {r['file']} | {r['bytes']} | {r['bytes'] / 1024:.1f} | {dyn} | {r['sha256'][:16]} |")
        for r in m["files"].values():
            if "size_breakdown" in r:
                b = r["size_breakdown"]
                consts = ", ".join(f"{k} constants {v:,} B" for k, v in sorted(b["constants"].items()))
                lines.append(f"- {r['file']}: {consts}, per-channel quantization parameters "
                             f"{b['quantization_params']:,} B, graph and metadata {b['graph_and_metadata']:,} B")
        if "written_conv_cost" in m:
            c = m["written_conv_cost"]
            lines += ["", f"convs as written, the same numbers (grouped convs as {c['groups_written_as']}, "
                      "block-diagonal; sibling convs merged, their readers with zero weights off their channels; "
                      "narrow 3x3 convs on 2x2 blocks of their output, 4x4 stride 2 with zeros): "
                      "conv MACs "
                      f"{c['macs_grouped']:,} -> {c['macs_written']:,} (x{c['macs_written'] / c['macs_grouped']:.2f}), "
                      f"conv weights {c['weights_grouped']:,} -> {c['weights_written']:,} "
                      f"(x{c['weights_written'] / c['weights_grouped']:.2f}) at the export size"]
        lines.append("")
    t = options.thresholds
    sets = "; ".join(f"{m['name']}: {m['validation_set']['patches']} patches of {m['validation_set']['size']}x"
                     f"{m['validation_set']['size']} packed, {m['validation_set']['levels']} shot-noise levels "
                     f"({m['validation_set']['set']})" for m in manifest["models"])
    lines += ["## Validation", "", "**PASSED**: every file within the bounds.", "",
              f"Seeded validation patches ({sets}). Networks output the residual; the runner adds it in float to "
              f"the input, or for int8 files to the quantized input where the manifest's residual_base says so "
              f"(the same for every backend). Parity = PSNR of the denoised network output "
              f"(anchor space, peak = the reference's range) against the PyTorch reference; parity (RAW) = the "
              f"same on the denoised RAW in [0, 1], where the k-sigma inverse scales differences by a / a_A. "
              f"Bounds: int8 >= {t.parity_int8_db} dB vs the fake-quant network, 16x8 >= {t.parity_int16_db} dB "
              f"vs its PyTorch network ({INT16_BACKEND}: the int8 QAT's weights, activations clamped to its "
              f"ranges), float >= {t.parity_float_db} dB vs fp32, quantized TFLite denoising drop <= "
              f"{t.max_drop_db} dB on average "
              f"and <= {t.max_level_drop_db} dB at every noise level.", "",
              table(rows), "",
              "The int8 input is on one per-tensor scale over the anchor-space range (~a_A / a_min times the "
              "[0, 1] RAW range), the output on its own over the residual: the per-level table shows what int8 "
              "costs at each noise level.", "",
              "ONNX models take any N, h, w (the padding to the network's multiple is in the graph); TFLite "
              "models have a fixed input size (the runner resizes the interpreter to other multiples of the "
              f"network's multiple; delegates may not). ONNX opset {OPSET}."]
    return "\n".join(lines) + "\n"


def rounded(rows: list[dict]) -> list[dict]:
    """Validation rows with numbers rounded (stable manifests across re-runs)."""
    def r(v):
        return round(v, 3) if isinstance(v, float) else {k: r(x) for k, x in v.items()} if isinstance(v, dict) else v
    return [{k: r(v) for k, v in row.items()} for row in rows]


class ExportRefused(FadError):
    """Validation refused the export (parity or int8 drop out of bounds); nothing was written."""


def export_bundle(models: list[tuple[str, Path]], options: ExportOptions, out: Path,
                  extra: dict | None = None) -> tuple[dict, dict[str, float]]:
    """Export ``models`` [(name, checkpoint path)] into ``out`` with one manifest; validate; publish.
    ``extra`` adds top-level manifest keys (e.g. a noise sub-range array's selection table).
    Returns the manifest and the seconds each new QAT/PTQ took (by model name)."""
    folder = Path(os.path.realpath(out))  # given as a link: the bundle replaces the folder it points to
    with sole_writer(folder, "fad-export"):  # its staging folder and QAT files too
        restore_folder(folder)  # a publish killed half-way (a previous int8 checkpoint there is reused)
        staging = folder.parent / f".{folder.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            made = quantize_ahead(models, options, folder)
            items = [export_model(name, path, options, staging, folder) for name, path in models]
            for it in items:
                it.quantize_s = made.get(it.entry["name"], it.quantize_s)
            manifest = {"format": FORMAT, "generator": f"fad-deploy {__version__}", "targets": list(options.targets),
                        "dynamic_hw": {b: v for b, v in DYNAMIC_HW.items()
                                       if any(b in it.entry["files"] for it in items)},
                        "models": [it.entry for it in items], **(extra or {})}
            write_json(staging / MANIFEST, manifest)  # the runners find the staged files through it
            rows = []
            for it in items:
                pairs, described = validation_set(it.float_ckpt.shot_range, options.validation_crops)
                model_rows = validate_model(staging, it.entry, references(it), pairs, options.thresholds,
                                            enforce_drop=options.int8, threads=options.threads)
                it.entry["validation_set"] = {"set": described, "patches": len(pairs["noisy"]),
                                              "size": int(pairs["noisy"].shape[-1]),
                                              "levels": len(set(pairs["shot"].tolist()))}
                it.entry["validation"] = rounded(model_rows)
                rows += model_rows
            failed = [f"{r['model']} {r['backend']}: {'; '.join(r['failed'])}" for r in rows if not r["ok"]]
            print(table(rows))
            if failed:  # a conversion that does not reproduce PyTorch, or loses too much, is never published
                raise ExportRefused(f"validation failed, nothing written to {out}: {' | '.join(failed)}")
            manifest["validation"] = {"passed": True, "thresholds": dataclasses.asdict(options.thresholds)}
            write_json(staging / MANIFEST, manifest)
            write_text(staging / REPORT, report(manifest, rows, options))
            publish(staging, folder)
            for it in items:
                resume_files(folder, it.entry["name"])[0].unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest, {it.entry["name"]: it.quantize_s for it in items if it.quantize_s is not None}
