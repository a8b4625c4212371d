"""`fad-bench --device adb[:SERIAL]`: exported bundles measured on an Android phone, in the
JSON schema of `fad-bench --device cpu` (built with the same functions, profile/latency.py).

Per TFLite file, delegate and thread count: ``repeats`` timed invocations of
benchmark_model, each the steady-state average of at least 50 inferences (median_ms and
p90_ms are over these invocation averages: the tool prints no per-inference times); one
profiling invocation (op table, memory: profiling slows the tool down, so it is kept
apart); and, once per file and delegate, the on-device denoise parity check. A
configuration the tool cannot run (a delegate failing on this phone) is listed under
``skipped``, as on the CPU; device problems and timeouts stop the run.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import FadError
from ..models.registry import load_checkpoint, resolve_model
from ..profile.latency import model_entry, packed_megapixels, result_from_times
from ..runners.tflite_runner import TFLiteRunner
from .benchmark import DEFAULT_DELEGATES, DEFAULT_REPEATS, DEFAULT_THREADS, DEFAULT_TIMEOUT_S, DEFAULT_WARMUP, \
    DELEGATE_FLAGS, BenchmarkFailed, RunConfig
from .bundle import DeviceModel, default_bundles, load_bundle, resolve_bundle
from .device import DeviceSession
from .parity import parity_check, parity_input
from .runner import TIMED_RUNS, AdbRunner, OutputNotWritten

ADB_PREFIX = "adb"
FACT_KEYS = ("params", "macs_per_megapixel", "peak_activation_bytes_int8", "peak_activation_bytes_fp32", "macs")
TIMING_NOTE = (f"median/p90 over benchmark_model invocations, each the average of >= {TIMED_RUNS} inferences "
               f"after warm-up; megapixels are RAW megapixels (a 4x512x512 packed input = 1)")


def parse_serial(device: str) -> str | None:
    """'adb' -> None (the only attached phone), 'adb:SERIAL' -> SERIAL."""
    kind, _, serial = device.partition(":")
    if kind != ADB_PREFIX:
        raise FadError(f"--device {device!r}: expected adb or adb:SERIAL")
    return serial or None


def as_tuple(value, default) -> tuple:
    if value is None:
        return tuple(default)
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


@dataclass(frozen=True)
class AdbBenchConfig:
    threads: tuple[int, ...] = DEFAULT_THREADS
    delegates: tuple[str, ...] = DEFAULT_DELEGATES
    repeats: int = DEFAULT_REPEATS
    warmup: int = DEFAULT_WARMUP
    timeout_s: float = DEFAULT_TIMEOUT_S
    size: tuple[int, int] | None = None  # packed h, w; default: each model's exported size
    noise_a: float | None = None
    profile_dir: Path | None = None  # where pulled op-profile CSVs go
    progress: bool = True

    @classmethod
    def from_options(cls, options) -> AdbBenchConfig:
        """From fad-bench's arguments (missing or None attributes take the defaults)."""
        get = lambda name: getattr(options, name, None)  # noqa: E731
        json_path = get("json")
        cfg = cls(threads=as_tuple(get("threads"), DEFAULT_THREADS),
                  delegates=as_tuple(get("delegate"), DEFAULT_DELEGATES),
                  repeats=DEFAULT_REPEATS if get("repeats") is None else int(get("repeats")),
                  warmup=DEFAULT_WARMUP if get("warmup") is None else int(get("warmup")),
                  timeout_s=DEFAULT_TIMEOUT_S if get("timeout") is None else float(get("timeout")),
                  size=tuple(get("size")) if get("size") else None, noise_a=get("noise_a"),
                  profile_dir=Path(json_path).with_name(Path(json_path).stem + "-profiles") if json_path else None,
                  progress=not get("no_progress"))
        cfg.check()
        return cfg

    def check(self) -> None:
        for d in self.delegates:
            if d not in DELEGATE_FLAGS:
                raise FadError(f"--delegate {d!r}: choose from {', '.join(DELEGATE_FLAGS)}")
        if not self.threads or min(self.threads) < 1:
            raise FadError(f"--threads {' '.join(map(str, self.threads))}: thread counts must be at least 1")
        if self.repeats < 1 or self.warmup < 0:
            raise FadError(f"--repeats {self.repeats} --warmup {self.warmup}: need at least 1 repeat, warm-up >= 0")
        if self.timeout_s <= 0:
            raise FadError(f"--timeout {self.timeout_s:g}: must be positive")
        if self.size is not None and min(self.size) < 1:
            raise FadError(f"--size {self.size[0]} {self.size[1]}: height and width must be positive")


def model_facts(name: str, hw: tuple[int, int]) -> dict:
    """Parameters, MACs and activation arena of the network at ``hw``, counted on its source
    checkpoint as on the CPU, when that checkpoint is found by name; else None."""
    try:
        checkpoint = load_checkpoint(resolve_model(name))
    except FadError:
        return {k: None for k in FACT_KEYS}
    facts = model_entry(name, checkpoint.build(), hw).to_dict()
    return {k: facts[k] for k in FACT_KEYS}


def measure(runner: AdbRunner, cfg: AdbBenchConfig, threads: int, hw: tuple[int, int], csv: Path | None) -> dict:
    times = runner.time(np.zeros((1, 4, *hw), np.float32), warmup=cfg.warmup, repeats=cfg.repeats)
    profile = runner.profile(hw, csv)
    first = runner.timings[0]
    return {
        **result_from_times(runner.backend, threads, times, packed_megapixels(*hw)).to_dict(),
        "file": runner.host.path.name,
        "delegate": runner.config.delegate,
        "delegation": profile.delegation,
        "init_ms": round(float(np.median([t.init_ms for t in runner.timings])), 3),
        "first_inference_ms": first.first_inference_ms,
        "invocations": [t.run_stats_ms or {"avg_ms": t.inference_avg_ms} for t in runner.timings],
        "output_format": first.format,
        "memory_mb": profile.memory_mb,
        "ops_by_type": profile.by_node_type,
        "run_order": profile.run_order,
        "profile_csv": str(csv) if csv and csv.is_file() else None,
    }


def device_parity(runner: AdbRunner, host: TFLiteRunner, hw: tuple[int, int], shot: float) -> dict:
    try:
        return parity_check(runner, host, *parity_input(hw, shot))
    except OutputNotWritten as e:
        print(f"warning: no on-device parity check: {e}", file=sys.stderr)
        return {"error": str(e)}


def bench_model(session: DeviceSession, model: DeviceModel, cfg: AdbBenchConfig, bar) -> dict:
    results, skipped = [], list(model.missing)
    facts = None
    for backend, path in model.files.items():
        host = TFLiteRunner(path, model.anchor, backend=backend, residual=model.residual,
                            base_grid=model.base_grid if backend == "tflite-int8" else None)
        hw = cfg.size or host.input_size
        facts = facts or model_facts(model.checkpoint, hw)
        for delegate in cfg.delegates:
            parity = None
            for threads in cfg.threads:
                runner = AdbRunner(session, host, RunConfig(threads, delegate, cfg.timeout_s))
                bar.set_postfix_str(f"{model.name} {runner.backend} x{threads}")
                csv = cfg.profile_dir / f"{model.name}-{runner.backend}-t{threads}.csv" if cfg.profile_dir else None
                try:
                    row = measure(runner, cfg, threads, hw, csv)
                    parity = parity or device_parity(runner, host, hw, cfg.noise_a or model.anchor.shot)
                except BenchmarkFailed as e:
                    skipped.append(f"{runner.backend} x{threads}: {e}")
                else:
                    results.append({**row, "parity": parity})
                bar.update(1)
    return {"name": model.name, **facts, "shot_range": list(model.shot_range), "results": results,
            "skipped": skipped}


def bench_adb(options) -> dict:
    """Measure the bundles named in ``options.models`` (default: every bundle in export/) on
    the phone of ``options.device``; returns the fad-bench JSON document."""
    serial = parse_serial(options.device)
    binary = getattr(options, "benchmark_binary", None)
    if not binary:
        raise FadError("--device adb needs --benchmark-binary PATH: TFLite's benchmark_model for the phone "
                       "(see android_harness/README.md for the download)")
    cfg = AdbBenchConfig.from_options(options)
    root, names = getattr(options, "export_dir", None), getattr(options, "models", None)
    bundles = [resolve_bundle(n, root) for n in names] if names else default_bundles(root)
    models = [m for b in bundles for m in load_bundle(b, cfg.noise_a)]  # fail on a bad bundle before the phone
    jobs = sum(len(m.files) for m in models) * len(cfg.threads) * len(cfg.delegates)
    with DeviceSession(serial, binary) as session, \
            tqdm(total=jobs, desc="fad-bench adb", unit="run", disable=not cfg.progress) as bar:
        entries = [bench_model(session, m, cfg, bar) for m in models]
        device = {**session.facts.to_json(), "timing": TIMING_NOTE,
                  "benchmark_binary": {"path": str(session.binary), "elf": session.elf.describe()}}
    if not any(m["results"] for m in entries):
        reasons = [s for m in entries for s in m["skipped"]]
        raise FadError(f"nothing could be measured on {device['serial']}: {' | '.join(reasons) or 'no models'}")
    return {"device": device, "models": entries}
