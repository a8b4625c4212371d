"""Argument checks declared once: number ranges and input/output paths.

Every CLI declares its arguments with these as argparse ``type=`` (the parser then also
refuses an output path that is one of the inputs, see :func:`path_clash`), and the training
config declares its number fields with them (``Annotated[int, positive_int]``), so a wrong
value is refused, naming the argument, before any work starts and before anything is
written. Checks raise ``ValueError`` with a description of the problem; as argparse types
they raise ``argparse.ArgumentTypeError`` (``prog: error: argument --x: ...``, exit 2), and
for outputs that are not arguments :func:`require_output` raises a FadError. Only the
standard library is imported up front, so the checks cost nothing at start-up.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import tempfile
from pathlib import Path

from .errors import FadError


class Number:
    """A finite whole number or real number within optional (open or closed) bounds."""

    def __init__(self, kind: type = float, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False):
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open

    def __str__(self) -> str:
        noun = "a whole number" if self.kind is int else "a finite number"
        low, high = (f"{b:g}" if isinstance(b, float) else f"{b}" for b in (self.low, self.high))
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {high}"
        return noun

    def check(self, value):
        """``value`` if it is such a number, else ValueError."""
        ok = not isinstance(value, bool) and (isinstance(value, int) if self.kind is int else
                                              isinstance(value, (int, float)) and math.isfinite(value))
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        if not ok:
            raise ValueError(f"expected {self}, got {value!r}")
        return self.kind(value)

    def __call__(self, text: str):
        """The argparse type: parse ``text`` and check it."""
        try:
            return self.check(self.kind(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self}, got {text!r}")


positive_int = Number(int, 1)
non_negative_int = Number(int, 0)
random_seed = Number(int, 0, 2**32 - 1)  # numpy's and torch's seeds alike
MAX_THREADS = 1024  # far beyond any CPU's cores, far below the count at which starting threads crashes the process
thread_count = Number(int, 1, MAX_THREADS)
positive_float = Number(float, 0, low_open=True)
non_negative_float = Number(float, 0)
unit_fraction = Number(float, 0, 1, high_open=True)  # in [0, 1)
# a and b in variance = a x + b, x in [0, 1]: up to 0.1 (a noise std of 0.32 at white, beyond any camera's; the
# shipped models cover a in [1e-4, 0.012]), where UPI's line puts b at 0.022, so every set made stays RAW-like
shot_noise = Number(float, 0, 0.1, low_open=True)
read_noise = Number(float, 0, 0.1)


class RunName:
    """A training run's name: one folder name (the run goes to runs/<name>), checked as a
    :class:`Number` is (``check``)."""

    def check(self, value: str) -> str:
        if value in ("", ".", "..") or "/" in value or os.sep in value:
            raise ValueError(f"expected one folder name (the run goes to runs/<name>; out= sets any folder), "
                             f"got {value!r}")
        return value


run_name = RunName()


def non_empty(text: str) -> str:
    """A name or path (of a model, bundle or preset): not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a name or path, got nothing")
    return text


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def check_writable_folder(folder: Path, path: Path) -> None:
    """ValueError unless files can be created in ``folder`` (on the way to ``path``).

    Tries it (an unnamed temporary file), since permission bits say nothing for root,
    read-only mounts or pseudo file systems."""
    if not folder.is_dir():
        raise ValueError(f"{path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:  # (a pseudo file system such as /proc answers "no such file" for the folder it has)
        reason = "no files can be made there" if e.errno in (errno.ENOENT, errno.EOPNOTSUPP) else e.strerror
        raise ValueError(f"{path}: cannot write in {folder} ({reason})")


def check_output(path: Path, kind: str = "file") -> Path:
    """``path`` if an output ``kind`` ("file", "folder" or "any") can be written there: not an
    existing entry of the other kind, and its folder (created when missing) writable."""
    if path.is_dir() and kind == "file":
        raise ValueError(f"{path}: is a folder; give a file name")
    if path.exists() and not path.is_dir() and kind == "folder":
        raise ValueError(f"{path}: is a file, not a folder")
    check_writable_folder(nearest_existing(path if path.is_dir() else path.parent), path)
    return path


def require_output(path: Path, kind: str, what: str) -> Path:
    """:func:`check_output` for an output not given as an argument (a default, a config
    setting): a FadError starting with ``what``."""
    try:
        return check_output(path, kind)
    except ValueError as e:
        raise FadError(f"{what}: {e}")


def require_apart(folder: Path, inputs: list[Path], what: str) -> None:
    """A FadError when the output ``folder`` holds one of the ``inputs`` (writing there could
    overwrite it or its companions, such as an array's manifest.json)."""
    for path in inputs:
        if path.resolve().parent == folder.resolve():
            raise FadError(f"{what} {folder}: holds the input {path.name}; write to another folder")


def require_replaceable(folder: Path, what: str) -> None:
    """A FadError unless ``folder`` can be replaced whole, as fad-export replaces its bundle: the
    folder it is in writable (the new one is built beside it), not the current folder or one
    holding it (the shell would be left in a removed one), and no file system mounted at it or
    inside it (a mount cannot be renamed, and removing the old folder would reach into it)."""
    if Path.cwd().resolve().is_relative_to(folder.resolve()):
        raise FadError(f"{what} {folder}: is or holds the current folder, which the export replaces whole; "
                       "write to another folder")
    folder = Path(os.path.realpath(folder))
    try:
        check_writable_folder(nearest_existing(folder.parent), folder)
    except ValueError as e:
        raise FadError(f"{what} {e}: the new folder is built beside it")
    if folder.is_dir():
        for root, _, _ in os.walk(folder):  # (links to folders are not followed)
            if os.path.ismount(root):
                raise FadError(f"{what} {folder}: {'is' if Path(root) == folder else 'holds'} a mount point"
                               f"{'' if Path(root) == folder else f' ({root})'}, which an export cannot replace "
                               "whole; write to another folder")


def check_memory(nbytes: int, what: str) -> None:
    """A FadError when ``what`` (``nbytes`` bytes) would not fit in the memory available now."""
    import psutil

    free = psutil.virtual_memory().available
    if nbytes > free:
        raise FadError(f"{what} would take {nbytes / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB of "
                       "memory available")


class FolderPath(type(Path())):
    """A path given with a trailing separator: its user means a folder, even where the name has
    a suffix (``--out run.v2/``)."""


def as_path(text: str) -> Path:
    """``text`` as a Path, a :class:`FolderPath` when it ends in a separator (which Path drops)."""
    return FolderPath(text) if text.endswith(("/", os.sep)) else Path(text)


class PathArg:
    """An argparse type for a path; ``kind`` is "file", "folder" or "any", and a file must
    end in one of ``suffixes`` when given. Subclasses define ``check(path)``, which returns
    the path or raises ValueError."""

    def __init__(self, kind: str, suffixes: tuple[str, ...] = ()):
        self.kind, self.suffixes = kind, suffixes

    def __call__(self, text: str) -> Path:
        if not text.strip():  # Path("") is the current folder: a folder nobody meant to name
            raise argparse.ArgumentTypeError("expected a path, got nothing")
        path = as_path(text)
        try:
            if self.kind == "file" and isinstance(path, FolderPath):
                raise ValueError(f"{text}: names a folder (trailing {text[-1]}); give a file name")
            self.check(path)
            if self.suffixes and path.suffix.lower() not in self.suffixes:
                names = ", ".join(self.suffixes[:-1]) + " or " * (len(self.suffixes) > 1) + self.suffixes[-1]
                raise ValueError(f"{path}: expected a {names} file")
            return path
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e))


class InputPath(PathArg):
    """An existing, readable file or folder."""

    def check(self, path: Path) -> Path:
        noun = {"file": "file", "folder": "folder", "any": "file or folder"}[self.kind]
        if not path.exists():
            raise ValueError(f"{path}: no such {noun}")
        if self.kind == "file" and path.is_dir():
            raise ValueError(f"{path}: is a folder, not a file")
        if self.kind == "folder" and not path.is_dir():
            raise ValueError(f"{path}: is a file, not a folder")
        if not (path.is_dir() or path.is_file()):  # a pipe or a device: readers would wait on it, or read it once
            raise ValueError(f"{path}: not a regular file (a pipe, socket or device); give a file")
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise ValueError(f"{path}: not readable")
        return path


class OutputPath(PathArg):
    """A file or folder to write (see :func:`check_output`)."""

    def check(self, path: Path) -> Path:
        return check_output(path, self.kind)


input_file, input_folder, input_path = InputPath("file"), InputPath("folder"), InputPath("any")
output_file, output_folder, output_path = OutputPath("file"), OutputPath("folder"), OutputPath("any")
npz_output = OutputPath("file", (".npz",))  # sets and caches: readers tell them by their suffix
plot_output = OutputPath("file", (".png", ".pdf", ".svg"))
json_output = OutputPath("file", (".json",))
checkpoint_output = OutputPath("file", (".pt",))


def argument_name(action: argparse.Action) -> str:
    """How error messages name an argument: its first option string, else its metavar or name."""
    return action.option_strings[0] if action.option_strings else action.metavar or action.dest


def given_options(parser: argparse.ArgumentParser, namespace: argparse.Namespace, dests: tuple[str, ...]) -> list[str]:
    """The options among ``dests`` (arguments whose default is None) that were given, named as
    error messages name them, in the parser's order."""
    return [argument_name(a) for a in parser._actions if a.dest in dests and getattr(namespace, a.dest) is not None]


def path_values(namespace: argparse.Namespace, action: argparse.Action) -> list[Path]:
    """The paths an argument was given (none, one, or several for nargs / append)."""
    value = getattr(namespace, action.dest, None)
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, Path)]


def replaces_a_file_in(path: Path, folder: Path) -> bool:
    """Whether writing ``path`` would replace an existing file inside ``folder`` (at any depth)."""
    target = path.resolve()
    return folder.is_dir() and folder.resolve() in target.parents and target.is_file()


def path_clash(actions: list[argparse.Action], namespace: argparse.Namespace) -> str | None:
    """The error for an output argument whose path is also an input argument's or another
    output argument's, or None."""
    inputs = {p.resolve(): argument_name(a) for a in actions if isinstance(a.type, InputPath)
              for p in path_values(namespace, a)}
    outputs: dict[Path, str] = {}
    for action in actions:
        if isinstance(action.type, OutputPath):
            for path in path_values(namespace, action):
                if path.resolve() in inputs:
                    return f"argument {argument_name(action)}: {path} is also an input ({inputs[path.resolve()]})"
                if path.resolve() in outputs:
                    return f"argument {argument_name(action)}: {path} is also an output ({outputs[path.resolve()]})"
                outputs[path.resolve()] = argument_name(action)
    return None


def require_not_input(path: Path | None, inputs: list[tuple[str, Path]], what: str) -> None:
    """A FadError when the output ``path`` is one of the ``inputs`` ((what it is, path) pairs) a
    command reads, which :func:`path_clash` cannot see (found from names, paths or settings), or
    would replace a file inside an input that is a folder (a bundle's manifest or models)."""
    for kind, source in inputs:
        if path is not None and path.resolve() == Path(source).resolve():
            raise FadError(f"{what}: {path} is also an input ({kind})")
        if path is not None and replaces_a_file_in(path, Path(source)):
            raise FadError(f"{what}: {path} would replace a file inside the input folder {source} ({kind}); "
                           "write elsewhere")


def require_not_model(path: Path | None, models: list[Path], what: str) -> None:
    """:func:`require_not_input` for models a command reads."""
    require_not_input(path, [("a model", m) for m in models], what)
