"""Build `benchmark_model` command lines and run them in a device session."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import FadError
from .adb import AdbTimeout
from .device import DeviceSession
from .output import BenchmarkOutput, parse_benchmark_output, tail

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_THREADS = (1, 4)  # one big core, and the usual big-core cluster of a phone
DEFAULT_DELEGATES = ("xnnpack",)
DEFAULT_REPEATS, DEFAULT_WARMUP = 5, 1
# Delegate name -> benchmark_model flags. "cpu" is TFLite's own kernels (XNNPACK disabled).
DELEGATE_FLAGS = {
    "xnnpack": ["--use_xnnpack=true"],
    "cpu": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
PROFILE_FLAGS = ["--enable_op_profiling=true", "--report_peak_memory_footprint=true"]
INPUT_NAME = "fad_input"  # benchmark_model only warns when this differs from the model's name
EXIT_NOT_EXECUTABLE = (126, 127)  # the shell's "cannot execute" and "not found"


class BenchmarkFailed(FadError):
    """benchmark_model ran but failed (exit status, garbled output): this configuration, not the device."""


@dataclass(frozen=True)
class RunConfig:
    """How the model runs: threads and delegate, the same for timing, profiling and parity."""

    threads: int = 1
    delegate: str = "xnnpack"
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        if self.delegate not in DELEGATE_FLAGS:
            raise FadError(f"unknown delegate {self.delegate!r}: choose from {', '.join(DELEGATE_FLAGS)}")
        if self.threads < 1:
            raise FadError(f"threads {self.threads}: must be at least 1")
        if self.timeout_s <= 0:
            raise FadError(f"timeout {self.timeout_s}: must be positive")


def model_flags(graph: str, config: RunConfig) -> list[str]:
    return [f"--graph={graph}", f"--num_threads={config.threads}", *DELEGATE_FLAGS[config.delegate]]


def input_flags(shape: tuple[int, ...], value_file: str | None = None) -> list[str]:
    """Fix the input shape (resizing the model) and optionally feed it from a raw file."""
    flags = [f"--input_layer={INPUT_NAME}", f"--input_layer_shape={','.join(map(str, shape))}"]
    if value_file:
        flags.append(f"--input_layer_value_files={INPUT_NAME}:{value_file}")
    return flags


def run_benchmark(session: DeviceSession, flags: list[str], config: RunConfig, what: str) -> tuple[str, BenchmarkOutput]:
    """One invocation on the device -> (raw output, parsed output); failures name ``what``."""
    try:
        result = session.adb.shell([session.remote_binary, *flags], timeout=config.timeout_s, check=False)
    except AdbTimeout:
        session.stop_binary()
        raise FadError(f"benchmark_model on {session.adb.serial} ({what}) did not finish within "
                       f"{config.timeout_s:g} s: raise --timeout, or use a smaller model or input") from None
    text = (result.stdout or "") + (result.stderr or "")
    if result.returncode in EXIT_NOT_EXECUTABLE:
        raise FadError(f"{session.remote_binary} could not be executed on {session.adb.serial}: {tail(text)}")
    if result.returncode != 0:
        raise BenchmarkFailed(f"benchmark_model failed on {session.adb.serial} ({what}, exit status "
                              f"{result.returncode}): {tail(text) or 'no output'}")
    try:
        return text, parse_benchmark_output(text)
    except FadError as e:
        raise BenchmarkFailed(f"{what}: {e}") from None
