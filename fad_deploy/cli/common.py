"""What every CLI shares: user errors become one line on stderr and exit code 2 (after
closing any progress bar), warnings one line each, a stdout whose reader has gone is silenced
(not an error), the parser refuses an output path that is also an input, and every parser takes
``--verbose``."""
from __future__ import annotations

import argparse
import errno
import functools
import os
import re
import signal
import sys
import warnings

from ..checks import path_clash
from ..errors import FadError, count
from ..fileio import put_back, set_handlers
from ..native_logs import show_native_logs

EXIT_USER_ERROR = 2


def device(text: str) -> str:
    """The argparse type of --device: cpu, cuda or cuda:N."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def require_device(name: str) -> None:
    """A FadError unless torch can use device ``name`` (checked before any work)."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FadError(f"--device {name}: CUDA is not available on this machine")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise FadError(f"--device {name}: this machine has {count(torch.cuda.device_count(), 'CUDA device')}")


# what the system refuses mid-run (a full disk, a quota, a read-only or forbidden place): one line, not a traceback
SYSTEM_LIMITS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def user_errors(main):
    """Run ``main``; a :class:`FadError`, or an OSError of :data:`SYSTEM_LIMITS`, prints
    ``<prog>: error: <message>`` and exits 2, Ctrl-C prints "interrupted" and the notes added to
    it on the way up (how to resume) and exits 130,
    warnings print as ``<prog>: warning: <message>``, stdout goes quiet when its reader has gone
    (:class:`QuietWhenGone`), and SIGTERM or SIGHUP stop it as Ctrl-C does (:class:`Terminated`)."""
    prog = "fad-" + main.__module__.rsplit(".", 1)[-1]

    def one_line_warning(message, category, filename, lineno, line=None) -> str:
        return f"{prog}: warning: {message}\n"

    @functools.wraps(main)
    def wrapper(argv=None):
        default_format, warnings.formatwarning = warnings.formatwarning, one_line_warning
        stdout = sys.stdout  # None with no stdout at all (`>&-`): print() then writes nothing
        if stdout is not None:
            sys.stdout = QuietWhenGone(stdout)
        handlers = catch_termination()
        try:
            return main(argv)
        except FadError as e:
            close_progress_bars()
            print(f"{prog}: error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except OSError as e:
            if e.errno not in SYSTEM_LIMITS:
                raise
            close_progress_bars()
            print(f"{prog}: error: {f'{e.filename}: ' if e.filename else ''}{e.strerror}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt as e:
            close_progress_bars()
            print("; ".join(["terminated" if isinstance(e, Terminated) else "interrupted",
                             *getattr(e, "__notes__", ())]), file=sys.stderr)  # notes: how to go on
            sys.exit(128 + e.signal if isinstance(e, Terminated) else 130)
        finally:  # callers in the same process (tests, notebooks) keep their own warning format and stdout
            put_back(handlers)
            warnings.formatwarning = default_format
            if stdout is not None:
                sys.stdout.flush()  # the buffered rest now, where a reader that has gone is silenced, not at exit
                sys.stdout = stdout

    return wrapper


class QuietWhenGone:
    """A text stream (stdout) that goes quiet when its reader has gone (``fad-denoise DIR | head -1``):
    what the tools print is a report beside their work, so the work and its files go on, and no
    traceback follows. Characters its encoding lacks are escaped (\\xe9), as on stderr."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        encoding = getattr(self._stream, "encoding", None)
        if encoding:  # a file name the terminal's encoding lacks: escaped, not a UnicodeEncodeError
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        """Point the stream's file at /dev/null, so its buffered text and all that follows go there."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``) or SIGHUP, raised where Python runs so that it unwinds as
    Ctrl-C does: a file being written is removed, side-by-side workers are stopped."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal = signum


def catch_termination() -> dict:
    """SIGTERM and SIGHUP raise :class:`Terminated` (from the main thread only, where Python runs
    signal handlers); returns the handlers they had, for :func:`put_back`."""
    def terminated(signum, _frame):
        raise Terminated(signum)

    return set_handlers((signal.SIGTERM, signal.SIGHUP), terminated)


def close_progress_bars() -> None:
    """Close the progress bars an exception left open, so that the line printed next starts
    on a line of its own."""
    tqdm = sys.modules.get("tqdm")  # not imported: no bar to close
    if tqdm is not None:
        for bar in list(tqdm.tqdm._instances):
            bar.close()


class VerboseAction(argparse.Action):
    """``--verbose``: show the log lines of TensorFlow, TFLite and other native libraries
    (see fad_deploy.native_logs); stores nothing, like ``--help``."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        show_native_logs()


class OneLineParser(argparse.ArgumentParser):
    """Argument mistakes as one line (``prog: error: ...``) and exit code 2, like every other
    user error; every parser (sub-commands' too) takes ``--verbose``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action=VerboseAction,
                          help="show the log lines of TensorFlow, TFLite and other native libraries (hidden by default)")

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        """argparse's, then an output path equal to an input path is an error (see fad_deploy.checks)."""
        namespace, extras = super().parse_known_args(args, namespace)
        clash = path_clash(self._actions, namespace)
        if clash:
            self.error(clash)
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        """argparse's, but arguments nobody takes are reported by the sub-command given, if any
        (``fad-data synth: error: ...``), as its other mistakes are."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen = [a.choices[getattr(namespace, a.dest)] for a in self._actions
                      if isinstance(a, argparse._SubParsersAction) and getattr(namespace, a.dest, None) in a.choices]
            (chosen or [self])[0].error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace
