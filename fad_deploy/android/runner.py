"""The `adb` backend: a :class:`Runner` whose network runs on the phone in
`benchmark_model`, fed from a raw input file and read back from its output dump.

`benchmark_model` can do both since TensorFlow 2.11 (2022): ``--input_layer_value_files``
loads an input tensor from a binary file of exactly the tensor's bytes, and
``--output_filepath`` writes the output tensors' raw bytes after the last run. A build
older than that ignores the flag with an "Unconsumed cmdline flags" warning; that is an
:class:`OutputNotWritten` error here, so callers can skip the parity check.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import FadError
from ..fileio import write_text
from ..runners.base import IN_CHANNELS, Runner
from ..runners.tflite_runner import RESIZABLE_MULTIPLE, TFLiteRunner, dequantize, quantize
from .benchmark import PROFILE_FLAGS, RunConfig, input_flags, model_flags, run_benchmark
from .device import DeviceSession
from .output import BenchmarkOutput, parse_op_profile

TIMED_RUNS = 50  # benchmark_model's own default: inferences averaged per invocation
DENOISE_FLAGS = ["--warmup_runs=1", "--num_runs=1", "--min_secs=0", "--warmup_min_secs=0"]
UNCONSUMED = "Unconsumed cmdline flags"


class OutputNotWritten(FadError):
    """The benchmark binary did not write --output_filepath (it predates the flag)."""


class AdbRunner(Runner):
    """``host`` (the same .tflite on the host's LiteRT) describes the model's I/O; the
    network itself runs on the device of ``session`` with ``config``."""

    def __init__(self, session: DeviceSession, host: TFLiteRunner, config: RunConfig):
        self.session, self.host, self.config = session, host, config
        self.anchor, self.residual, self.base_grid = host.anchor, host.residual, host.base_grid  # the same file
        self.input_size = host.input_size
        self.backend = f"adb-{host.backend}-{config.delegate}"
        self.graph = session.push(host.path)
        self.timings: list[BenchmarkOutput] = []  # every timed invocation of :meth:`time`

    def _shape(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        if hw != self.input_size and (any(s % RESIZABLE_MULTIPLE for s in (*hw, *self.input_size))):
            raise FadError(f"{self.host.path}: the model takes {self.input_size[0]}x{self.input_size[1]} inputs, "
                           f"got {hw[0]}x{hw[1]} (use multiples of {RESIZABLE_MULTIPLE} to resize it)")
        return (1, hw[0], hw[1], self.host.channels)

    def _flags(self, hw: tuple[int, int], value_file: str | None = None) -> list[str]:
        """Input flags only to feed a file or to resize: the model's own shape needs none."""
        shape = self._shape(hw)
        resize_or_feed = value_file is not None or hw != self.input_size
        return model_flags(self.graph, self.config) + (input_flags(shape, value_file) if resize_or_feed else [])

    def run_one(self, nhwc: np.ndarray, tmp: Path) -> np.ndarray:
        """One (1, h, w, c) float32 input through the device -> (1, h, w, 4) float32."""
        inp = self.host.interpreter.get_input_details()[0]
        out = self.host.interpreter.get_output_details()[0]
        x = nhwc if inp["dtype"] == np.float32 else quantize(nhwc, *inp["quantization"], inp["dtype"])
        local_in, local_out = tmp / "input.bin", tmp / "output.bin"
        local_in.write_bytes(np.ascontiguousarray(x, dtype=inp["dtype"]).tobytes())
        remote_in, remote_out = self.session.remote("input.bin"), self.session.remote("output.bin")
        adb = self.session.adb
        adb.push(str(local_in), remote_in)
        adb.shell(["rm", "-f", remote_out])  # a stale dump must never pass for this run's output
        flags = self._flags(nhwc.shape[1:3], remote_in) + [f"--output_filepath={remote_out}", *DENOISE_FLAGS]
        text, _ = run_benchmark(self.session, flags, self.config, f"denoise with {self.host.path.name}")
        if UNCONSUMED in text and "output_filepath" in text:
            raise OutputNotWritten(f"{self.session.binary}: this benchmark_model predates --output_filepath "
                                   f"(TF 2.11): download a current nightly build to check on-device outputs")
        try:
            adb.pull(remote_out, str(local_out))
        except FadError:
            raise OutputNotWritten(f"benchmark_model wrote no {remote_out} on {adb.serial}: the build ignores "
                                   f"--output_filepath (it needs TF 2.11 or newer)") from None
        y = np.fromfile(local_out, dtype=out["dtype"])
        shape = (*nhwc.shape[:3], IN_CHANNELS)
        if y.size != np.prod(shape):
            raise FadError(f"{self.host.path.name} on {adb.serial}: the output dump holds {y.size} values, expected "
                           f"{np.prod(shape)} (one (1, h, w, 4) output)")
        y = y.reshape(shape)
        return y.astype(np.float32) if out["dtype"] == np.float32 else dequantize(y, *out["quantization"])

    def run_network(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float32)
        nhwc = np.ascontiguousarray(u.transpose(0, 2, 3, 1))
        with tempfile.TemporaryDirectory(prefix="fad-adb-") as tmp:
            outs = [self.run_one(nhwc[i : i + 1], Path(tmp)) for i in range(len(nhwc))]
        return np.ascontiguousarray(np.concatenate(outs).transpose(0, 3, 1, 2))

    def time(self, u: np.ndarray, warmup: int = 1, repeats: int = 5) -> list[float]:
        """Steady-state milliseconds per inference of ``repeats`` invocations of benchmark_model,
        each the average of at least :data:`TIMED_RUNS` runs after ``warmup`` runs. The tool
        feeds random data of ``u``'s size (a conv net's time does not depend on the values)."""
        flags = self._flags(tuple(np.shape(u)[-2:])) + [f"--warmup_runs={warmup}", f"--num_runs={TIMED_RUNS}"]
        self.timings = [run_benchmark(self.session, flags, self.config, f"timing {self.host.path.name}")[1]
                        for _ in range(repeats)]
        return [t.inference_avg_ms for t in self.timings]

    def profile(self, hw: tuple[int, int], csv_path: str | Path | None = None) -> BenchmarkOutput:
        """One extra invocation with op profiling and memory monitoring (both slow the tool down,
        so they are kept out of :meth:`time`). The profile CSV is copied to ``csv_path``."""
        remote_csv = self.session.remote("profile.csv")
        flags = self._flags(hw) + PROFILE_FLAGS + [f"--profiling_output_csv_file={remote_csv}"]
        _, result = run_benchmark(self.session, flags, self.config, f"profiling {self.host.path.name}")
        if result.run_order or result.by_node_type:  # the build printed the tables instead of writing the CSV
            return result
        with tempfile.TemporaryDirectory(prefix="fad-adb-") as tmp:
            local = Path(tmp) / "profile.csv"
            try:
                self.session.adb.pull(remote_csv, str(local))
            except FadError:
                return result  # no op profile from this build: timings and memory still stand
            csv = local.read_text(errors="replace")
        result.run_order, result.by_node_type = parse_op_profile(csv)
        if csv_path is not None:
            write_text(csv_path, csv)
        return result
