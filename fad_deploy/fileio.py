"""Atomic file writes (an output is either complete or absent, never half-written), a folder
replaced whole, and the one .npz reader."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import FadError

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest zip date: a constant stamp for reproducible .npz
# what np.load raises for a .npz it cannot read: missing, unreadable, damaged inside, pickled arrays
# (zip: RuntimeError for an encrypted member, and its subclass for an unknown compression method or
# version; numpy: a header it cannot parse)
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, tokenize.TokenError,
                   SyntaxError)


def load_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, or one error line saying that the ``what`` (e.g.
    "evaluation set") cannot be read and why."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise FadError(f"{path}: cannot read {what}: not an .npz archive (truncated, empty or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except NPZ_READ_ERRORS as e:
        raise FadError(f"{path}: cannot read {what} ({e})") from None
    not_arrays = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]  # members np.save did not write
    if not_arrays:
        raise FadError(f"{path}: cannot read {what}: not a numpy array: {', '.join(not_arrays)} (damaged or written "
                       "by another program?)")
    return arrays


@contextlib.contextmanager
def temporary_beside(path: Path) -> Iterator[Path]:
    """A new empty hidden file next to ``path``, with the permissions of a new file there; removed
    on exit unless it was renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private to their creator
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield a temporary path next to each of ``paths``; on success rename them onto ``paths``
    together (Ctrl-C or a kill waits until all are renamed): every output or none, unless a rename
    itself fails (the paths are checked as outputs first), which leaves the ones before it."""
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(temporary_beside(Path(p))) for p in paths]
        yield tmps
        with uninterrupted():
            for tmp, path in zip(tmps, paths):
                os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez_compressed's format, with fixed zip timestamps so that equal arrays give
    byte-identical files (numpy stamps each member with the current time)."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(name + ".npy", date_time=ZIP_EPOCH)
                member.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(member, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def set_handlers(signums, handler) -> dict:
    """Set ``handler`` for the signals ``signums`` (from the main thread only, where Python runs
    signal handlers; elsewhere nothing is set); returns the handlers they had, for :func:`put_back`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum in signums}


def put_back(handlers: dict) -> None:
    """Restore the signal handlers :func:`set_handlers` returned."""
    for signum, handler in handlers.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: not set from Python


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends (then the first one caught is raised
    as usual), so that steps which must go together are not split. Only the main thread can."""
    caught = []
    before = set_handlers((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), lambda signum, _: caught.append(signum))
    try:
        yield
    finally:
        put_back(before)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def sole_writer(path: Path, what: str) -> Iterator[None]:
    """Hold the lock on writing ``path`` (a hidden .lock file beside it, whatever link names it)
    for the block, as ``what`` (a tool's name); a FadError naming the holder when another process
    holds it. The file goes with its holder; one locked after its holder removed it is not taken."""
    import fcntl

    path = Path(os.path.realpath(path))
    lock = path.parent / f".{path.name}.lock"
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            f = open(lock, "a+")
        except OSError as e:
            raise FadError(f"{path}: cannot write its lock file in {lock.parent} ({e.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise FadError(f"{path}: another process ({holder}) is writing it now; wait for it to end") from None
        try:
            if os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino:
                break  # the file at that name is the one locked
        except FileNotFoundError:
            pass
        f.close()  # its holder removed it before this process locked it: take the one at its name now
    with f:
        f.truncate(0)
        f.write(f"{what}, pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def retired(folder: Path) -> Path:
    """Where :func:`replace_folder` puts the folder it replaces, for the moment of the swap."""
    return folder.parent / f".{folder.name}.old"


def restore_folder(folder: Path) -> None:
    """Settle a :func:`replace_folder` that was killed during its swap: where ``folder`` is missing
    (killed between the renames), the old folder goes back; where the new one is in place, the old
    one is removed. A FadError where the old one cannot be removed."""
    old = retired(folder)
    if old.is_dir():
        if not folder.exists():
            os.replace(old, folder)
            return
        shutil.rmtree(old, ignore_errors=True)
        if old.exists():
            raise FadError(f"{old}: the folder an earlier export replaced cannot be removed; remove it")


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst, follow_symlinks=False)


def replace_folder(new: Path, folder: Path, keep: Callable[[str], bool]) -> None:
    """Put the folder ``new`` in place of ``folder`` whole: a reader finds the old folder or the
    new one, never a mix. Entries of the old folder that ``keep`` (by name) and ``new`` lacks are
    carried over (hard links where the file system has them, else copies)."""
    restore_folder(folder)
    if not folder.exists():
        os.replace(new, folder)
        return
    for entry in folder.iterdir():
        if keep(entry.name) and not os.path.lexists(new / entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=link_or_copy)
            else:
                link_or_copy(entry, new / entry.name)
    with contextlib.suppress(OSError):  # (a folder this user does not own keeps the new one's)
        shutil.copystat(folder, new)  # the folder's permissions, times and extended attributes stay
    old = retired(folder)
    with uninterrupted():
        os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        warnings.warn(f"{old}: the replaced folder could not all be removed; remove it")
