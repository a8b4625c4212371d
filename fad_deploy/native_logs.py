"""Native libraries' log lines (TensorFlow, XLA, absl, cuDNN, XNNPACK) stay off normal runs.

TensorFlow, XLA and LiteRT log from C++ straight to file descriptor 2, past Python's
``sys.stderr``: some lines come before any log level is read, and LiteRT's "INFO: Created
TensorFlow Lite XNNPACK delegate for CPU." has no switch at all. So the few places that
load these libraries (TensorFlow's import, the TFLite converter, a LiteRT interpreter's
allocation) run inside :func:`quiet_native_logs`, which catches what is written to file
descriptor 2 meanwhile and passes on every line that is not such a log line. With
``FAD_VERBOSE=1`` (set by every CLI's ``--verbose``) nothing is hidden.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

VERBOSE_ENV = "FAD_VERBOSE"
LOG_LINE = re.compile(  # info, warning and error lines; fatal ones pass
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] "  # TensorFlow: "2026-12-02 04:25:43.987599: I port.cc:153] ..."
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "  # absl: "E0000 00:00:1796185603.752581   5606 cuda_dnn.cc:8579] ..."
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: "  # second line of TensorFlow's CPU-feature notice
    r"|fully_quantize: \d+, inference_type: "  # the TFLite converter's int8 quantizer
    r"|INFO: "  # LiteRT: "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
)


class ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


ERRORS_ONLY = ErrorsOnly()


def verbose() -> bool:
    """Whether native log lines are shown (``FAD_VERBOSE`` set, and not 0, no, false or off)."""
    return os.environ.get(VERBOSE_ENV, "0").strip().lower() not in ("", "0", "no", "false", "off")


@contextlib.contextmanager
def quiet_logger(name: str):
    """Inside the block, the Python logger ``name`` (a library's) logs nothing, not even errors it
    recovers from; does nothing when :func:`verbose`."""
    logger = logging.getLogger(name)
    was, logger.disabled = logger.disabled, not verbose() or logger.disabled
    try:
        yield
    finally:
        logger.disabled = was


def show_native_logs() -> None:
    """Show native log lines from now on, in this process and the processes it starts."""
    os.environ[VERBOSE_ENV] = "1"


def drop_log_lines(text: str) -> str:
    """``text`` without the native log lines."""
    return "\n".join(line for line in text.split("\n") if not LOG_LINE.match(line))


@contextlib.contextmanager
def quiet_native_logs():
    """Inside the block, what is written to file descriptor 2 is held back; afterwards the
    lines that are not native log lines go to ``sys.stderr``. TensorFlow's own switches
    (``TF_CPP_MIN_LOG_LEVEL``, unless set) are turned down too, and the tensorflow and absl
    Python loggers pass errors only from then on. Does nothing when :func:`verbose`."""
    if verbose():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for logger in ("tensorflow", "absl"):  # absl: the converter's Python warnings (16x8's input type)
        logging.getLogger(logger).addFilter(ERRORS_ONLY)  # a filter: TensorFlow sets these loggers' levels again
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        stderr_fd = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(stderr_fd, 2)
            os.close(stderr_fd)
            held.seek(0)
            sys.stderr.write(drop_log_lines(held.read().decode(errors="replace")))
