"""What every CLI shares: native libraries' log lines hidden unless --verbose, --help
without the heavy libraries, choice lists folded, progress bars closed before an error."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tqdm import tqdm

from fad_deploy.cli.common import user_errors
from fad_deploy.errors import FadError
from fad_deploy.native_logs import VERBOSE_ENV, quiet_native_logs

NATIVE_LOG = (  # as TensorFlow, absl (XLA, cuDNN) and LiteRT write them
    "2026-12-02 04:25:43.987599: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n"
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "E0000 00:00:1796185603.752581    5606 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
    "W0000 00:00:1796185613.344816    5606 tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
)


@pytest.mark.parametrize("verbose", [False, True])
def test_native_log_lines_hidden_unless_verbose(verbose, capfd, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1" if verbose else "0")
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
