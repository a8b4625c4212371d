"""Android harness without a phone: the harness drives tests/fakes/adb (a stand-in adb
keeping a folder as the device) exactly as it drives a real one."""
from __future__ import annotations

import json
import os
import struct
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from fad_deploy.android.adb import DeviceEntry, choose_device, parse_devices
from fad_deploy.android.bench import bench_adb, parse_serial
from fad_deploy.android.benchmark import RunConfig
from fad_deploy.android.bundle import load_bundle
from fad_deploy.android.device import DeviceSession, count_cpus
from fad_deploy.android.elf import ABI_MACHINE, check_binary_for_abis, read_elf
from fad_deploy.android.output import parse_benchmark_output, parse_op_profile
from fad_deploy.android.runner import AdbRunner
from fad_deploy.data.noise import NoiseParams
from fad_deploy.errors import FadError
from fad_deploy.export.manifest import FILE_SUFFIX, FORMAT, MANIFEST, file_record, preprocessing
from fad_deploy.fileio import write_json
from fad_deploy.models.registry import Checkpoint, build, model_config
from fad_deploy.runners.tflite_runner import TFLiteRunner

FAKES = Path(__file__).parent / "fakes"
SIZE = 16  # packed h = w of the tiny test models
ANCHOR = NoiseParams(1e-3, 1e-5)
TINY_FAN = {"widths": [8, 8, 16], "expansions": [1, 1, 1]}


# ---- fixtures ---------------------------------------------------------------------------

def tflite_tensor(name: str, shape, ttype: int, buffer: int, scale=None, zero_point=None):
    from ai_edge_litert import schema_py_generated as schema

    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
    if scale is not None:  # per-tensor, or per output channel (dimension 0) for weights and bias
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [float(v) for v in scale], [int(v) for v in zero_point]
    return t


def tflite_buffer(array: np.ndarray | None = None):
    from ai_edge_litert import schema_py_generated as schema

    b = schema.BufferT()
    if array is not None:
        b.data = np.frombuffer(array.tobytes(), np.uint8)
    return b


def conv_tflite(int8: bool) -> bytes:
    """A 3x3 CONV_2D close to the identity, NHWC 1x16x16x4, as float32 or full-int8 TFLite,
    written with LiteRT's flatbuffer schema (no TensorFlow converter: 0.3 s instead of 15 s)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.05, (4, 3, 3, 4)).astype(np.float32)  # (out, kh, kw, in)
    w[:, 1, 1, :] += np.eye(4, dtype=np.float32)
    bias = rng.normal(0.0, 0.01, 4).astype(np.float32)
    shape, T = (1, SIZE, SIZE, 4), schema.TensorType
    if int8:
        s_in, s_out = 1.0 / 255, 2.0 / 255  # input [0, 1], output [-0.5, 1.5]
        s_w = np.abs(w).reshape(4, -1).max(1) / 127
        wq = np.clip(np.round(w / s_w[:, None, None, None]), -127, 127).astype(np.int8)
        tensors = [tflite_tensor("noisy", shape, T.INT8, 0, [s_in], [-128]),
                   tflite_tensor("w", w.shape, T.INT8, 1, s_w, [0] * 4),
                   tflite_tensor("b", (4,), T.INT32, 2, s_in * s_w, [0] * 4),
                   tflite_tensor("denoised", shape, T.INT8, 0, [s_out], [-64])]
        buffers = [tflite_buffer(), tflite_buffer(wq), tflite_buffer(np.round(bias / (s_in * s_w)).astype(np.int32))]
    else:
        tensors = [tflite_tensor("noisy", shape, T.FLOAT32, 0), tflite_tensor("w", w.shape, T.FLOAT32, 1),
                   tflite_tensor("b", (4,), T.FLOAT32, 2), tflite_tensor("denoised", shape, T.FLOAT32, 0)]
        buffers = [tflite_buffer(), tflite_buffer(w), tflite_buffer(bias)]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    code.version = 3 if int8 else 1  # per-channel int8 conv
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.Conv2DOptions, schema.Conv2DOptionsT()
    op.builtinOptions.padding, op.builtinOptions.strideW, op.builtinOptions.strideH = schema.Padding.SAME, 1, 1
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [3], [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tflite")
    paths = {"fp32": folder / "tiny-fp32.tflite", "int8": folder / "tiny-int8.tflite"}
    for kind, path in paths.items():
        path.write_bytes(conv_tflite(kind == "int8"))
    return paths


def elf_header(machine: int, bits: int = 64) -> bytes:
    """The first 64 bytes of a little-endian ELF executable for ``machine``."""
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHI", 2, machine, 1) + bytes(64 - 24)


@pytest.fixture
def device(tmp_path, monkeypatch):
    """The stand-in adb first on PATH, its device file system under tmp_path/device."""
    bin_dir, root = tmp_path / "bin", tmp_path / "device"
    bin_dir.mkdir()
    root.mkdir()
    adb = bin_dir / "adb"
    # This interpreter runs the stand-in (-S: it needs no site-packages and starts 3x faster).
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKES / "adb"}" "$@"\n')
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_MODE", "")
    return root


@pytest.fixture
def binary(tmp_path) -> Path:
    path = tmp_path / "benchmark_model"
    path.write_bytes(elf_header(ABI_MACHINE["arm64-v8a"][0]))
    return path


def checkpoint(name: str, shot_range=(1e-4, 0.012)) -> Checkpoint:
    net = build("fan", TINY_FAN)
    return Checkpoint(name, "fan", model_config(net), net.state_dict(), shot_range)


def make_bundle(folder: Path, models: list[tuple[Checkpoint, dict[str, Path]]], **extra) -> Path:
    """A fad-export folder: per checkpoint, the given .tflite files by backend, in the manifest.
    (The .tflite files are the tiny test nets, not the checkpoints: the harness only needs
    the checkpoint for its name, anchor and shot range.)"""
    folder.mkdir()
    entries = []
    for ckpt, files in models:
        records = {}
        for backend, src in files.items():
            name = f"{ckpt.name}{FILE_SUFFIX[backend]}"
            (folder / name).write_bytes(src.read_bytes())
            records[backend] = file_record(folder, name, {})
        entries.append({"name": ckpt.name, "source": {"checkpoint": f"{ckpt.name}.pt"},
                        "shot_range": list(ckpt.shot_range), "preprocessing": preprocessing(ckpt), "files": records})
    write_json(folder / MANIFEST, {"format": FORMAT, "models": entries, **extra})
    return folder


@pytest.fixture
def bundle(tmp_path, tiny_models, monkeypatch) -> Path:
    """int8 and float32 files of "tiny", whose checkpoint is shipped (in $FAD_MODELS)."""
    ckpt = checkpoint("tiny")
    monkeypatch.setenv("FAD_MODELS", str(tmp_path / "models"))
    ckpt.save(tmp_path / "models" / "tiny.pt")
    return make_bundle(tmp_path / "tiny", [(ckpt, {"tflite-int8": tiny_models["int8"],
                                                   "tflite-fp32": tiny_models["fp32"]})])


@pytest.fixture
def int8_bundle(tmp_path, tiny_models) -> Path:
    """Only an int8 file, and no checkpoint of that name."""
    return make_bundle(tmp_path / "tiny8", [(checkpoint("tiny8"), {"tflite-int8": tiny_models["int8"]})])


def options(bundle: Path, binary: Path, **kw) -> Namespace:
    base = dict(device="adb", models=[str(bundle)], threads=[1], delegate=["xnnpack"], benchmark_binary=str(binary),
                noise_a=None, timeout=60, repeats=1, json=None, size=None)
    return Namespace(**{**base, **kw})


def run_dirs(root: Path) -> list[Path]:
    tmp = root / "data" / "local" / "tmp"
    return sorted(tmp.glob("fad-run-*")) if tmp.is_dir() else []


def adb_calls(root: Path) -> list[list[str]]:
    return [json.loads(line) for line in (root / "adb.log").read_text().splitlines()]


def shell_commands(root: Path) -> list[str]:
    """The command strings of every `adb -s SERIAL shell CMD` call."""
    return [c[3] for c in adb_calls(root) if c[2:3] == ["shell"]]


# ---- adb device listing and choice -------------------------------------------------------

DEVICES_L = """* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
R58M123ABC             device usb:1-1 product:beyond1 model:SM_G973F device:beyond1 transport_id:1
emulator-5554          unauthorized transport_id:2
0123456789ABCDEF       no permissions (user in plugdev group; are your udev rules wrong?); see [http://x]

"""


def test_parse_devices_reads_states_including_two_word_ones():
    entries = parse_devices(DEVICES_L)
    assert [(e.serial, e.state) for e in entries] == [
        ("R58M123ABC", "device"), ("emulator-5554", "unauthorized"), ("0123456789ABCDEF", "no permissions")]
    assert "model:SM_G973F" in entries[0].info
    assert parse_devices("List of devices attached\nabc\tdevice\n") == [DeviceEntry("abc", "device")]


@pytest.mark.parametrize("entries, serial, message", [
    ([], None, "no Android device found"),
    ([DeviceEntry("A", "device"), DeviceEntry("B", "device")], None, "choose one with --device adb:SERIAL"),
    ([DeviceEntry("A", "unauthorized")], None, "Allow USB debugging"),
    ([DeviceEntry("A", "offline")], None, "is offline"),
    ([DeviceEntry("A", "no permissions")], None, "udev"),
    ([DeviceEntry("A", "device")], "B", "'B' not found; adb sees: A (device)"),
])
def test_choose_device_refuses_with_advice(entries, serial, message):
    with pytest.raises(FadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose_device(entries, serial)


def test_choose_device_picks_by_serial_or_the_only_one():
    two = [DeviceEntry("A", "device"), DeviceEntry("B", "device")]
    assert choose_device(two, "B").serial == "B"
    assert choose_device(two[:1], None).serial == "A"
    assert parse_serial("adb") is None and parse_serial("adb:XYZ") == "XYZ"
    with pytest.raises(FadError, match="expected adb or adb:SERIAL"):
        parse_serial("cpu")


def test_count_cpus_reads_kernel_ranges():
    assert count_cpus("0-7\n") == 8
    assert count_cpus("0-3,6") == 5
    assert count_cpus("0") == 1
    assert count_cpus("Permission denied") is None


# ---- ELF check ---------------------------------------------------------------------------

@pytest.mark.parametrize("abi", ["arm64-v8a", "armeabi-v7a", "x86_64", "x86"])
def test_elf_machine_matches_each_abi(tmp_path, abi):
    machine, bits = ABI_MACHINE[abi]
    path = tmp_path / "bm"
    path.write_bytes(elf_header(machine, bits))
    assert (read_elf(path).machine, read_elf(path).bits) == (machine, bits)
    assert check_binary_for_abis(path, [abi]).machine == machine


def test_elf_check_names_the_mismatch_and_the_download(tmp_path):
    path = tmp_path / "bm"
    path.write_bytes(elf_header(ABI_MACHINE["x86_64"][0]))
    with pytest.raises(FadError, match="x86-64 64-bit ELF.*arm64-v8a.*android_aarch64_benchmark_model"):
        check_binary_for_abis(path, ["arm64-v8a"])
    # A 32-bit ARM build runs on a phone whose ABI list includes armeabi-v7a.
    path.write_bytes(elf_header(ABI_MACHINE["armeabi-v7a"][0], 32))
    assert check_binary_for_abis(path, ["arm64-v8a", "armeabi-v7a"]).bits == 32
    path.write_bytes(b"#!/bin/sh\necho hi\n" + bytes(10))
    with pytest.raises(FadError, match="not an ELF executable"):
        read_elf(path)


# ---- benchmark_model output ---------------------------------------------------------------

CURRENT = """INFO: STARTING!
INFO: Num threads: [4]
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=3 first=131000 curr=120500 min=120500 max=131000 avg=124000 std=4000

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=121000 curr=119000 min=118000 max=1.23457e+06 avg=121345 std=2100

INFO: Inference timings in us: Init: 40210, First inference: 131000, Warmup (avg): 124000, Inference (avg): 1.21345e+05
INFO: Memory footprint delta from the start of the tool (MB): init=4.5 overall=11.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 13.5
"""
OLD = """count=50 curr=80000(all same)
Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9
"""


def test_parse_current_format_with_info_prefix_and_cpp_numbers():
    out = parse_benchmark_output(CURRENT)
    assert out.format == "current"
    assert out.init_ms == pytest.approx(40.21)
    assert out.first_inference_ms == pytest.approx(131.0)
    assert out.warmup_avg_ms == pytest.approx(124.0)
    assert out.inference_avg_ms == pytest.approx(121.345)
    assert out.run_stats_ms["count"] == 50  # the regular runs, not the warm-up line
    assert out.run_stats_ms["max_ms"] == pytest.approx(1234.57)
    assert out.memory_mb == {"init": 4.5, "overall": 11.25, "peak": 13.5}


def test_parse_old_format_and_all_same_stats():
    out = parse_benchmark_output(OLD)
    assert out.format == "old"
    assert (out.init_ms, out.warmup_avg_ms, out.inference_avg_ms) == pytest.approx((38.467, 83.235, 79.7609))
    assert out.first_inference_ms is None and out.memory_mb == {}
    assert out.run_stats_ms == {"count": 50, "min_ms": 80.0, "max_ms": 80.0, "avg_ms": 80.0, "std_ms": 0.0}


def test_parse_nan_warmup_is_none_and_garbled_output_is_an_error():
    out = parse_benchmark_output("Inference timings in us: Init: 5, First inference: nan, "
                                 "Warmup (avg): -nan, Inference (avg): 10")
    assert out.first_inference_ms is None and out.warmup_avg_ms is None and out.inference_avg_ms == 0.01
    with pytest.raises(FadError, match="no inference timings.*Bus error"):
        parse_benchmark_output("?? segfault\nBus error\n")
    with pytest.raises(FadError, match="no output"):
        parse_benchmark_output("")


PROFILE_TEXT = """INFO: Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t         AllocateTensors\t            0.000\t    0.081\t    0.081\t100.000%\t100.000%\t     0.000\t        1\t[AllocateTensors/0]

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t                 CONV_2D\t            0.000\t    4.269\t    4.100\t 60.000%\t 60.000%\t     0.000\t        1\t[net/conv1]
\t                     ADD\t            4.270\t    2.900\t    2.733\t 40.000%\t100.000%\t     0.000\t        1\t[net/add]

Number of nodes executed: 2
============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t        1\t     4.100\t    60.000%\t    60.000%\t     0.000\t        1
\t                     ADD\t        1\t     2.733\t    40.000%\t   100.000%\t     0.000\t        1

Timings (microseconds): count=50 first=7169 curr=6833 min=6800 max=7300 avg=6833 std=100
"""
PROFILE_CSV = """Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, first, avg_ms, %, cdf%, mem KB, times called, name
CONV_2D, 4.269, 4.1, 60%, 60%, 0, 1, net/conv1\tfused
============================== Summary by node type ==============================
node type, count, avg_ms, avg %, cdf %, mem KB, times called
CONV_2D, 1, 4.1, 60%, 60%, 0, 1
"""


def test_parse_op_profile_text_tables_of_the_regular_runs():
    run_order, by_type = parse_op_profile(PROFILE_TEXT)
    assert [(r["type"], r["avg_ms"], r["pct"], r["name"]) for r in run_order] == [
        ("CONV_2D", 4.1, 60.0, "net/conv1"), ("ADD", 2.733, 40.0, "net/add")]  # not AllocateTensors
    assert [(r["type"], r["count"], r["avg_ms"], r["cdf_pct"]) for r in by_type] == [
        ("CONV_2D", 1, 4.1, 60.0), ("ADD", 1, 2.733, 100.0)]


def test_parse_op_profile_csv_form():
    run_order, by_type = parse_op_profile(PROFILE_CSV)
    assert run_order[0]["first_ms"] == 4.269 and run_order[0]["name"] == "net/conv1\tfused"
    assert by_type == [{"type": "CONV_2D", "count": 1, "avg_ms": 4.1, "pct": 60.0, "cdf_pct": 60.0,
                        "mem_kb": 0.0, "times_called": 1}]


# ---- the harness against the stand-in adb ---------------------------------------------------

def test_bench_adb_json_matches_cpu_schema(device, binary, bundle, tmp_path):
    out = bench_adb(options(bundle, binary, threads=[1, 2], repeats=5, json=str(tmp_path / "bench.json")))
    dev = out["device"]
    assert (dev["kind"], dev["serial"], dev["model"], dev["soc"], dev["abi"], dev["android"], dev["cpu_cores"]) == \
        ("adb", "FAKE0001", "Pixel Fake", "SM8550", "arm64-v8a", "14", 8)
    assert dev["benchmark_binary"]["elf"] == "AArch64 64-bit ELF"
    (model,) = out["models"]
    assert set(model) >= {"name", "params", "macs_per_megapixel", "peak_activation_bytes_int8",
                          "peak_activation_bytes_fp32", "results"}
    assert model["name"] == "tiny" and model["skipped"] == []
    # counted on the shipped checkpoint "tiny", as `fad-bench --device cpu` does
    assert model["params"] == sum(p.numel() for p in build("fan", TINY_FAN).parameters())
    assert model["macs_per_megapixel"] > 0 and model["peak_activation_bytes_int8"] > 0
    by_key = {(r["backend"], r["threads"]): r for r in model["results"]}
    assert set(by_key) == {(f"adb-tflite-{k}-xnnpack", t) for k in ("int8", "fp32") for t in (1, 2)}
    for (backend, threads), r in by_key.items():
        assert set(r) >= {"backend", "threads", "median_ms", "p90_ms", "megapixels"}
        # five timed calls of the stand-in: 20000/threads + {0, 100, 200, 300, 400} us
        base = 20.0 / threads
        assert r["median_ms"] == pytest.approx(base + 0.2)
        assert r["p90_ms"] == pytest.approx(base + 0.36)
        assert len(r["invocations"]) == 5
        assert r["megapixels"] == pytest.approx(4 * SIZE * SIZE / 2**20)
        assert r["memory_mb"] == {"init": 3.25, "overall": 5.5, "peak": 7.75}
        assert r["delegation"] == "XNNPACK: full"
        assert r["ops_by_type"][0]["type"] == "CONV_2D" and len(r["run_order"]) == 4
        assert Path(r["profile_csv"]).read_text().startswith("Operator-wise Profiling Info")
        # the stand-in runs the same .tflite with LiteRT: device and host outputs agree exactly
        assert r["parity"]["max_abs_diff"] == 0.0 and r["parity"]["psnr_db"] is None
        assert r["parity"]["device_denoise_psnr_db"] == r["parity"]["host_denoise_psnr_db"]
    assert run_dirs(device) == []
    assert any(c.startswith("rm -rf /data/local/tmp/fad-run-") for c in shell_commands(device))


@pytest.mark.parametrize("mode, fmt", [("info", "current"), ("oldformat", "old"), ("info,oldformat", "old")])
def test_bench_adb_reads_every_output_form(device, binary, int8_bundle, monkeypatch, mode, fmt):
    monkeypatch.setenv("FAKE_ADB_MODE", mode)
    out = bench_adb(options(int8_bundle, binary))
    for r in out["models"][0]["results"]:
        assert r["output_format"] == fmt
        assert r["median_ms"] == pytest.approx(20.0)
    assert run_dirs(device) == []


@pytest.mark.parametrize("mode, message", [
    ("none", "no Android device found"),
    ("unauthorized", "unauthorized: unlock the phone"),
    ("offline", "offline: reconnect"),
    ("nopermissions", "udev"),
    ("two", "2 Android devices attached"),
])
def test_device_problems_are_clear_errors(device, binary, int8_bundle, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_ADB_MODE", mode)
    with pytest.raises(FadError, match=message):
        bench_adb(options(int8_bundle, binary))
    assert not any("push" in c for c in adb_calls(device))


def test_serial_chooses_among_two_devices(device, binary, int8_bundle, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_MODE", "two")
    out = bench_adb(options(int8_bundle, binary, device="adb:FAKE0002"))
    assert out["device"]["serial"] == "FAKE0002"
    assert all(c[:2] == ["-s", "FAKE0002"] for c in adb_calls(device) if c[0] != "devices")


@pytest.mark.parametrize("mode, message", [
    ("garbled", "no inference timings.*Bus error"),
    ("fail", "exit status 1.*Failed to apply XNNPACK delegate"),
    ("nobinary", "could not install benchmark_model.*chmod.*No such file"),
    ("noexec", "could not be executed.*Permission denied"),
])
def test_run_failures_are_clear_and_remove_the_run_folder(device, binary, int8_bundle, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_ADB_MODE", mode)
    with pytest.raises(FadError, match=message):
        bench_adb(options(int8_bundle, binary))
    assert any(c.startswith("mkdir -p /data/local/tmp/fad-run-") for c in shell_commands(device))
    assert run_dirs(device) == []


def test_timeout_kills_the_benchmark_and_removes_the_run_folder(device, binary, int8_bundle, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_MODE", "timeout")
    with pytest.raises(FadError, match="did not finish within 1 s"):
        bench_adb(options(int8_bundle, binary, timeout=1))
    assert any(c.startswith("pkill -f /data/local/tmp/fad-run-") for c in shell_commands(device))
    assert run_dirs(device) == []


def test_binary_problems_are_caught_before_pushing(device, binary, bundle, tmp_path, monkeypatch):
    with pytest.raises(FadError, match="benchmark binary not found"):
        bench_adb(options(bundle, tmp_path / "missing"))
    with pytest.raises(FadError, match="needs --benchmark-binary"):
        bench_adb(options(bundle, binary, benchmark_binary=None))
    monkeypatch.setenv("FAKE_ADB_ABI", "x86_64")
    with pytest.raises(FadError, match="AArch64 64-bit ELF, but the device runs x86_64"):
        bench_adb(options(bundle, binary))
    assert not any("push" in c for c in adb_calls(device))


def test_adb_missing(binary, bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FadError, match="adb not found on PATH.*apt-get install adb"):
        bench_adb(options(bundle, binary))


def test_old_binary_skips_parity_but_keeps_timings(device, binary, int8_bundle, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_ADB_MODE", "oldbinary")
    out = bench_adb(options(int8_bundle, binary))
    for r in out["models"][0]["results"]:
        assert "predates --output_filepath" in r["parity"]["error"]
        assert r["median_ms"] == pytest.approx(20.0)
    assert "no on-device parity check" in capsys.readouterr().err


def test_adb_runner_denoises_like_the_host_and_detects_corruption(device, binary, tiny_models, monkeypatch):
    host = TFLiteRunner(tiny_models["int8"], ANCHOR)
    rng = np.random.default_rng(1)
    noisy = rng.uniform(0.05, 0.6, (2, 4, SIZE, SIZE)).astype(np.float32)
    noise = NoiseParams(2e-3, 2e-5)
    with DeviceSession(None, binary) as session:
        runner = AdbRunner(session, host, RunConfig(threads=2))
        np.testing.assert_array_equal(runner.denoise(noisy, noise), host.denoise(noisy, noise))
        monkeypatch.setenv("FAKE_ADB_MODE", "corrupt")
        assert np.abs(runner.denoise(noisy, noise) - host.denoise(noisy, noise)).max() > 0
        with pytest.raises(FadError, match="takes 16x16 inputs, got 10x10"):
            runner.run(noisy[..., :10, :10])
        remote_dir = device / str(session.run_dir).lstrip("/")
        assert (remote_dir / "benchmark_model").read_bytes() == binary.read_bytes()
    assert not remote_dir.exists()


def test_noise_a_selects_the_sub_range_model(device, binary, tiny_models, tmp_path, recwarn):
    ranges = [(1e-4, 1e-3), (1e-3, 1.2e-2)]
    ckpts = [checkpoint(f"tiny-r{i}", r) for i, r in enumerate(ranges)]
    table = [{"name": c.name, "file": f"{c.name}.int8.tflite", "shot_min": r[0], "shot_max": r[1]}
             for c, r in zip(ckpts, ranges)]
    nsma = make_bundle(tmp_path / "nsma", [(c, {"tflite-int8": tiny_models["int8"]}) for c in ckpts], subranges=table)
    assert [m.name for m in load_bundle(nsma)] == ["tiny-r0", "tiny-r1"]
    assert [m.name for m in load_bundle(nsma, 5e-3)] == ["tiny-r1"]
    out = bench_adb(options(nsma, binary, noise_a=2e-4))
    (model,) = out["models"]
    assert model["name"] == "tiny-r0" and model["shot_range"] == [1e-4, 1e-3]
    assert [r["file"] for r in model["results"]] == ["tiny-r0.int8.tflite"]
    assert "a=0.0002" in model["results"][0]["parity"]["input"]
    assert [m.name for m in load_bundle(nsma, 0.5)] == ["tiny-r1"]  # clamped, with a warning
    assert any("clamped to the nearest" in str(w.message) for w in recwarn)


def test_bundle_without_fp32_file_lists_it_as_skipped(device, binary, int8_bundle):
    (model,) = bench_adb(options(int8_bundle, binary))["models"]
    assert [r["backend"] for r in model["results"]] == ["adb-tflite-int8-xnnpack"]
    assert model["params"] is None  # no checkpoint named tiny8 is shipped
    assert len(model["skipped"]) == 1 and model["skipped"][0].startswith("tflite-fp32: ")


def test_a_failing_delegate_is_skipped_when_others_run(device, binary, int8_bundle, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_MODE", "nogpu")
    (model,) = bench_adb(options(int8_bundle, binary, delegate=["xnnpack", "gpu"]))["models"]
    assert [r["backend"] for r in model["results"]] == ["adb-tflite-int8-xnnpack"]
    assert "adb-tflite-int8-gpu x1: benchmark_model failed" in model["skipped"][-1]
    assert "Failed to apply GPU delegate" in model["skipped"][-1]


def test_fad_bench_cli_writes_the_cpu_schema_json(device, binary, int8_bundle, tmp_path, capsys):
    from fad_deploy.cli.bench import main

    out = tmp_path / "phone.json"
    main(["--device", "adb", str(int8_bundle), "--benchmark-binary", str(binary), "--threads", "1",
          "--repeats", "1", "--json", str(out), "--no-progress"])
    doc = json.loads(out.read_text())
    row = doc["models"][0]["results"][0]
    assert (row["backend"], row["threads"], row["median_ms"]) == ("adb-tflite-int8-xnnpack", 1, 20.0)
    assert Path(row["profile_csv"]).parent == tmp_path / "phone-profiles"
    assert "adb-tflite-int8-xnnpack" in capsys.readouterr().out  # fad-bench's table


def test_fad_bench_cli_device_error_is_one_line(device, binary, int8_bundle, monkeypatch, capsys):
    from fad_deploy.cli.bench import main

    monkeypatch.setenv("FAKE_ADB_MODE", "unauthorized")
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "adb", str(int8_bundle), "--benchmark-binary", str(binary), "--no-progress"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "fad-bench: error: Android device FAKE0001 is unauthorized: unlock the phone and accept the "
        "'Allow USB debugging?' prompt, then run again"]


def test_size_resizes_the_model_on_the_device(device, binary, int8_bundle):
    (model,) = bench_adb(options(int8_bundle, binary, size=[32, 32]))["models"]
    (row,) = model["results"]
    assert row["megapixels"] == pytest.approx(4 * 32 * 32 / 2**20)
    assert row["parity"]["max_abs_diff"] == 0.0 and "packed 32x32" in row["parity"]["input"]
    runs = [c for c in shell_commands(device) if "benchmark_model" in c and c.startswith("/data/")]
    assert runs and all("--input_layer_shape=1,32,32,4" in c for c in runs)
