"""What every CLI shares: native libraries' log lines hidden unless --verbose, --help
without the heavy libraries, choice lists folded, progress bars closed before an error;
and the shipped exported array in fad-bench and fad-eval."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tqdm import tqdm

from fad_deploy.cli.common import user_errors
from fad_deploy.cli.eval import run as fad_eval
from fad_deploy.data.noise import READ_BAND, READ_BAND_LOW, NoiseParams, add_noise, read_from_shot
from fad_deploy.data.photos import skimage_photo
from fad_deploy.data.synth import save_pairs, synth_pairs
from fad_deploy.errors import FadError, fold
from fad_deploy.export.manifest import FORMAT, MANIFEST
from fad_deploy.fileio import atomic_path, atomic_paths, replace_folder, restore_folder, retired, write_json
from fad_deploy.models.registry import models_dir, resolve_model
from fad_deploy.native_logs import VERBOSE_ENV, quiet_native_logs
from fad_deploy.profile.bench_cpu import BenchModel, bench_models, default_models

NATIVE_LOG = (  # as TensorFlow, absl (XLA, cuDNN) and LiteRT write them
    "2026-12-02 04:25:43.987599: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n"
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "E0000 00:00:1796185603.752581    5606 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
    "W0000 00:00:1796185613.344816    5606 tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.\n"
    "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
)


@pytest.mark.parametrize("setting, verbose", [("0", False), ("no", False), ("", False), ("1", True), ("yes", True)])
def test_native_log_lines_hidden_unless_verbose(setting, verbose, capfd, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, setting)
    with quiet_native_logs():
        os.write(2, NATIVE_LOG.encode() + b"a real problem\n")
        print("from Python", file=sys.stderr)
    err = capfd.readouterr().err
    assert "a real problem\n" in err and "from Python\n" in err  # what is not a log line always passes
    assert all((line in err) == verbose for line in NATIVE_LOG.splitlines())


@pytest.mark.parametrize("exc, code, line", [(FadError("broken input"), 2, "fad-test_cli: error: broken input"),
                                              (KeyboardInterrupt(), 130, "interrupted")])
def test_error_line_follows_a_closed_progress_bar(exc, code, line, capsys):
    @user_errors
    def main(argv=None):
        bar = tqdm(total=3, desc="working")  # the traceback keeps it alive: nothing else closes it
        bar.update(1)
        raise exc

    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == code
    assert "working" in err and err.endswith(f"]\n{line}\n")  # the bar's last state ends its line


@pytest.mark.parametrize("buffering", [1, -1])  # line-buffered (a terminal's), block-buffered (a pipe's)
def test_a_closed_stdout_stops_the_report_not_the_work(tmp_path, monkeypatch, buffering):
    """`fad-denoise DIR | head -1`: the reader goes away after one line; every input is still done."""
    read, write = os.pipe()
    os.close(read)
    monkeypatch.setattr(sys, "stdout", os.fdopen(write, "w", buffering=buffering))

    @user_errors
    def main(argv=None):
        for i in range(3):
            print(f"input {i} done")
            (tmp_path / f"out{i}").write_text("denoised")
        return 0

    assert main() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0", "out1", "out2"]
    sys.stdout.close()  # nothing left to write to the gone reader (its file points at /dev/null now)


def test_a_name_the_stdout_encoding_lacks_is_escaped_not_a_crash(tmp_path, monkeypatch):
    """PYTHONIOENCODING=ascii: fad-denoise had stopped mid-folder at "b-\u00e9.npz"."""
    out = tmp_path / "stdout"
    with open(out, "w", encoding="ascii") as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        assert user_errors(lambda argv=None: print("b-\u00e9.npz -> done") or 0)() == 0
    assert out.read_text() == "b-\\xe9.npz -> done\n"


def test_sigterm_stops_as_ctrl_c_does_leaving_no_partial_file(tmp_path, capsys):
    """`kill PID` / `timeout` mid-write: the file being written goes, one line says why, exit 128 + 15."""
    import signal

    @user_errors
    def main(argv=None):
        with atomic_path(tmp_path / "out.npz") as part:
            part.write_bytes(b"half a file")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 128 + signal.SIGTERM and capsys.readouterr().err.endswith("terminated\n")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # put back for the caller


def test_outputs_written_together_come_out_all_or_none(tmp_path):
    """fad-denoise's DNG and preview: an error after one is written leaves neither (the old files stay)."""
    dng, png = tmp_path / "a-denoised.dng", tmp_path / "a-denoised.png"
    png.write_bytes(b"old preview")
    with pytest.raises(OSError, match="disk full"):
        with atomic_paths(dng, png) as (d, p):
            d.write_bytes(b"dng")
            raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-denoised.png"] and png.read_bytes() == b"old preview"
    with atomic_paths(dng, png) as (d, p):
        d.write_bytes(b"dng")
        p.write_bytes(b"png")
    assert (dng.read_bytes(), png.read_bytes()) == (b"dng", b"png") and len(list(tmp_path.iterdir())) == 2


def test_a_folder_is_replaced_whole_and_a_kill_between_the_renames_is_finished_later(tmp_path, capsys):
    """SIGTERM during the swap comes after both renames; a swap killed between them (SIGKILL) is
    undone or finished by the next restore_folder; the old folder's kept entries are carried over."""
    import signal

    folder, new = tmp_path / "bundle", tmp_path / "staged"
    for f, names in ((folder, ("a.tflite", "notes.txt")), (new, ("b.tflite",))):
        f.mkdir()
        for name in names:
            (f / name).write_text(name)
    (folder / "mine").mkdir()
    (folder / "mine" / "x.txt").write_text("x")

    @user_errors
    def main(argv=None):
        real = os.replace

        def replace_then_kill(src, dst):
            real(src, dst)
            os.kill(os.getpid(), signal.SIGTERM)  # after the first rename: held until the second is done
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "replace", replace_then_kill)
            replace_folder(new, folder, keep=lambda name: name != "a.tflite")
        return 0

    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 128 + signal.SIGTERM and capsys.readouterr().err.endswith("terminated\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert sorted(p.name for p in folder.iterdir()) == ["b.tflite", "mine", "notes.txt"]
    assert (folder / "mine" / "x.txt").read_text() == "x"

    os.replace(folder, retired(folder))  # killed between the renames: only the old folder is left
    restore_folder(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    shutil.copytree(folder, retired(folder))  # killed after them: both are there, the new one stays
    (folder / "b.tflite").write_text("new")
    restore_folder(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"] and (folder / "b.tflite").read_text() == "new"


def test_a_full_disk_is_one_line_and_other_os_errors_stay_tracebacks(tmp_path, capsys):
    import errno

    def failing(err):
        @user_errors
        def main(argv=None):
            with atomic_path(tmp_path / "set.npz") as part:
                part.write_bytes(b"half")
                raise OSError(err, os.strerror(err), str(tmp_path / "set.npz"))
        return main

    with pytest.raises(SystemExit) as e:
        failing(errno.ENOSPC)()
    assert e.value.code == 2 and capsys.readouterr().err == \
        f"fad-test_cli: error: {tmp_path / 'set.npz'}: No space left on device\n"
    assert list(tmp_path.iterdir()) == []  # the part written is gone
    with pytest.raises(OSError, match="Input/output error"):  # not the user's environment: a bug to report
        failing(errno.EIO)()


def test_no_stdout_at_all_is_no_error(monkeypatch):
    """`fad-data info FILE >&-`: Python starts with sys.stdout None, and print() writes nothing."""
    monkeypatch.setattr(sys, "stdout", None)
    assert user_errors(lambda argv=None: print("report") or 0)() == 0


HEAVY = ("torch", "tensorflow", "onnx", "onnxruntime", "ai_edge_litert", "scipy", "skimage", "rawpy", "matplotlib")
CLIS = ("data", "train", "eval", "export", "bench", "denoise")


def test_help_imports_no_heavy_library():
    code = f"""
import contextlib, importlib, io, json, sys
loaded = {{}}
for cli in {CLIS!r}:
    with contextlib.redirect_stdout(io.StringIO()) as help_text, contextlib.suppress(SystemExit):
        importlib.import_module("fad_deploy.cli." + cli).main(["--help"])
    assert "usage: fad-" + cli in help_text.getvalue()
    loaded[cli] = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps(loaded))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {cli: [] for cli in CLIS}


def test_fold_lists_few_names_whole_and_many_folded_closest_first():
    assert fold(["torch", "onnx-fp32", "tflite-int8"]) == "torch, onnx-fp32, tflite-int8"
    names = [f"net-{i:02d}" for i in range(20)]
    assert fold(names, limit=4) == "net-00, net-01, net-02, net-03 and 16 more"
    assert fold(names, "net-007", limit=4).startswith("net-07, ")  # the likeliest meant first


def test_unknown_model_lists_the_shipped_ones_folded(tmp_path, monkeypatch):
    monkeypatch.setenv("FAD_MODELS", str(tmp_path))
    for i in range(20):
        (tmp_path / f"net-{i:02d}.pt").touch()
    with pytest.raises(FadError, match=r"unknown model 'net-007' \(shipped models: net-07, .* and 12 more\)$"):
        resolve_model("net-007")
    monkeypatch.setenv("FAD_MODELS", str(tmp_path / "net-00.pt"))
    with pytest.raises(FadError, match=r"unknown model 'net-00' \(FAD_MODELS=.*net-00.pt: a file, not a folder\)$"):
        resolve_model("net-00")


# ---- the shipped exported array in fad-bench and fad-eval ----------------------------------------

SHIPPED_ARRAY = models_dir().parent / "export" / "fan-nsma"  # fad-export's default bundle
ARRAY_MODELS = [f"fan-nsma-{i}" for i in range(4)]


def test_bench_names_the_exported_array_and_measures_it_by_default():
    assert "fan-nsma" in default_models()
    models = bench_models(["fan-nsma"])
    assert [m.label for m in models] == ARRAY_MODELS and all(m.export == SHIPPED_ARRAY for m in models)
    assert [m.checkpoint for m in models] == [models_dir() / "nsma" / f"{n}.pt" for n in ARRAY_MODELS]
    assert [m.label for m in bench_models([str(SHIPPED_ARRAY)])] == ARRAY_MODELS


def test_bench_takes_16x8_files_beside_a_bundle_as_its_int16_backend_not_as_more_models(tmp_path, monkeypatch):
    monkeypatch.setenv("FAD_MODELS", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.pt").touch()
    root = tmp_path / "export"
    files = {"arr": "tflite-int8", "arr-int16": "tflite-int16", "net-int16": "tflite-int16",
             "solo-int16": "tflite-int16", "other-int16": "tflite-int8", "other": "tflite-int8"}
    for name, backend in files.items():  # fad-export --activations int16 writes <name>-int16
        (root / name).mkdir(parents=True)
        write_json(root / name / MANIFEST, {"format": FORMAT, "models": [{"name": "m", "files": {backend: {}}}]})
    # a 16x8 folder with nothing beside it is its own; an int8 one named so is too
    assert default_models(root) == ["arr", "net", "other", "other-int16", "solo-int16"]
    beside = BenchModel("arr-0", None, root / "arr")
    assert beside.folder("tflite-int16") == root / "arr-int16" and beside.folder("tflite-int8") == root / "arr"
    assert BenchModel("x", None, root / "solo-int16").folder("tflite-int16") == root / "solo-int16"
    assert BenchModel("net", None, root / "net").folder("tflite-int16") == root / "net-int16"
    assert BenchModel("o", None, root / "other").folder("tflite-int16") == root / "other"
    monkeypatch.chdir(root / "arr")
    assert BenchModel("arr-0", None, Path(".")).folder("tflite-int16") == root / "arr-int16"  # (fad-bench .)
    (root / "net-int16").rename(root / "gone")  # neither export/net nor its 16x8 folder: the latter is named
    with pytest.raises(FadError, match=f"no export folder {root / 'net-int16'} .*--activations int16"):
        BenchModel("net", None, root / "net").runner("tflite-int16", 1)


def fad_bench(*argv) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != VERBOSE_ENV}
    return subprocess.run([str(Path(sys.executable).with_name("fad-bench")), "fan-nsma", "--threads", "1", "--size",
                           "32", "32", "--repeats", "1", "--warmup", "0", "--no-progress", *map(str, argv)],
                          capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=300)


def test_bench_times_the_exported_array_without_native_log_lines(tmp_path):
    done = fad_bench("--backends", "torch", "tflite-int8", "tflite-fp32", "--json", tmp_path / "bench.json")
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert [m["name"] for m in doc["models"]] == ARRAY_MODELS
    assert all([r["backend"] for r in m["results"]] == ["torch", "tflite-int8", "tflite-fp32"] for m in doc["models"])
    assert done.stderr == ""  # no XNNPACK delegate line, nothing else
    verbose = fad_bench("--backends", "tflite-int8", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in verbose.stderr


def two_level_set(folder: Path) -> str:
    """A fad-data set of one photo's 32-pixel crop at a low and a high noise level."""
    save_pairs(folder / "set.npz", synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [2e-4, 5e-3], seed=0))
    return str(folder / "set.npz")


def test_eval_of_the_exported_array_runs_just_the_array(tmp_path, capsys):
    result = fad_eval(["--set", two_level_set(tmp_path), "--nsma", str(SHIPPED_ARRAY), "--backend", "tflite-int8"])
    assert [(r["model"], r["backend"]) for r in result["results"]] == [("noisy", "-"), ("nsma (n=4)", "tflite-int8")]


def test_eval_nsma_without_a_folder_evaluates_the_shipped_array(tmp_path):
    result = fad_eval(["--set", two_level_set(tmp_path), "--nsma", "--threads", "1"])
    assert [(r["model"], r["backend"]) for r in result["results"]] == [("noisy", "-"), ("nsma (n=4)", "torch")]


def test_eval_runs_read_dominated_images_as_fad_denoise_does(tmp_path, capsys):
    save_pairs(tmp_path / "read.npz", synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [1e-5], seed=0,
                                                  read=1e-3))
    result = fad_eval(["--set", str(tmp_path / "read.npz"), "--nsma", str(SHIPPED_ARRAY), "--backend", "tflite-int8"])
    err = capsys.readouterr().err
    assert f"1 of 1 images have read noise outside {READ_BAND_LOW:g} to {READ_BAND:g} times UPI's line" in err
    noisy, array = (r["raw_psnr"] for r in result["results"])
    assert array > noisy + 1.5  # run at (a, b) it came out no better than the noisy input (read_dominated.md)


@pytest.mark.parametrize("multiple, moved", [(10.0, False), (0.05, True)])
def test_eval_denoises_a_dark_frame_at_high_noise(tmp_path, capsys, multiple, moved):
    """A dark frame at read noise the networks learnt (10x UPI's line) runs at its own level: taken
    for read-dominated at its mean level and moved into the shot term, it came out several times
    noisier than it went in. One far below the line runs on the band's bottom: at its own level it
    came out worse than it went in (read_dominated.md's dark crops)."""
    noise = NoiseParams(0.012, multiple * float(read_from_shot(0.012)))
    pairs = synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [noise.shot], seed=0, read=noise.read)
    clean = pairs["clean"] * 0.02
    save_pairs(tmp_path / "dark.npz", {**pairs, "clean": clean,
                                       "noisy": add_noise(clean, noise, np.random.default_rng(0))})
    result = fad_eval(["--set", str(tmp_path / "dark.npz"), "--nsma", str(SHIPPED_ARRAY), "--backend", "tflite-int8"])
    assert ("1 of 1 images have read noise outside" in capsys.readouterr().err) == moved
    noisy, array = (r["raw_psnr"] for r in result["results"])
    assert array > noisy + 6



def test_eval_runs_images_below_the_range_as_fad_denoise_does(tmp_path, capsys):
    """A shipped student run at a = 1e-6 (below its training floor, 1e-4) returned garbage; run at
    the floor with part of its change kept it stays at least as good as the noisy input."""
    save_pairs(tmp_path / "low.npz", synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [1e-6], seed=0))
    result = fad_eval(["--set", str(tmp_path / "low.npz"), "fan-student", "--threads", "1"])
    assert "1 of 1 images lie below a network's noise range (a < 0.0001)" in capsys.readouterr().err
    noisy, student = (r["raw_psnr"] for r in result["results"])
    assert student > noisy - 0.1, (noisy, student)


def test_eval_says_which_networks_run_images_above_their_range(tmp_path, capsys):
    """fan-nsma-0 (a up to 3.3e-4) had been scored at a = 2e-3 without a word."""
    save_pairs(tmp_path / "high.npz", synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [2e-3], seed=0))
    fad_eval(["--set", str(tmp_path / "high.npz"), "fan-nsma-0", "fan-student", "--threads", "1"])
    (note,) = [line for line in capsys.readouterr().err.splitlines() if "above a network's noise range" in line]
    assert note.startswith("fad-eval: images above a network's noise range run at their own level")
    assert note.endswith(": 1 of 1 for fan-nsma-0 (a > 0.000331)")  # not the student: 2e-3 is inside its range


def test_eval_refuses_an_exported_file_and_a_model_taken_as_the_array_folder(tmp_path):
    save_pairs(tmp_path / "s.npz", synth_pairs([("coffee", skimage_photo("coffee"))], 16, 1, [2e-3], seed=0))
    for argv, message in (
            ([str(models_dir().parent / "export" / "fan-nsma" / "fan-nsma-0.int8.tflite")],
             "fan-nsma-0.int8.tflite: an exported model file; name its checkpoint with --backend (e.g. fan-nsma-0 "
             "--backend tflite-int8), or its folder with --nsma"),
            (["--nsma", "fan-student"], "--nsma fan-student: not a model array folder; --nsma takes the folder after "
                                        "it, so name the models first (fad-eval fan-student --nsma)"),
            (["--nsma", str(models_dir().parent / "export" / "fan-nsma")],
             "fan-nsma holds exported models: run them with --backend (e.g. --backend tflite-int8)")):
        with pytest.raises(FadError) as e:
            fad_eval(["--set", str(tmp_path / "s.npz"), *argv])
        assert message in str(e.value), e.value


def test_eval_json_names_the_set_levels_as_its_per_level_rows_do(tmp_path):
    """Its set's shot_levels (float64) had not matched the per-level rows' keys (the set's float32)."""
    (tmp_path / "photos").mkdir()
    Image.fromarray((skimage_photo("coffee") * 255).astype(np.uint8)).save(tmp_path / "photos" / "coffee.png")
    result = fad_eval(["--images", str(tmp_path / "photos"), "unet-plain", "--crop", "16", "--crops-per-image", "1",
                       "--levels", "2", "--threads", "1"])
    assert result["set"]["shot_levels"] == [row["shot"] for row in result["per_level"]["unet-plain [torch]"]]


def test_eval_names_an_int8_checkpoint_beside_its_float_model(tmp_path):
    """Both had been named fan-nsma-0 and refused as a name clash."""
    nsma = models_dir() / "nsma"
    result = fad_eval(["--set", two_level_set(tmp_path), str(nsma / "fan-nsma-0.pt"), str(nsma / "fan-nsma-0.int8.pt"),
                       "--threads", "1"])
    assert [r["model"] for r in result["results"]] == ["noisy", "fan-nsma-0", "fan-nsma-0 int8"]
