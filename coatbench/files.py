"""Writing files so that nothing saved is lost, and a failed write is one clear line.

- An append is an append: one write under an exclusive lock (`fcntl.flock`), then fsync. Two
  processes appending to one file keep every line; a crash mid-write leaves at most a torn last
  line, which readers skip, and the next append starts on a line of its own.
- A replacement (a baseline, a rendered report) is written aside and renamed over the file:
  a reader or a crash sees the old file or the new one. It goes through a symbolic link to
  its target, keeps an existing file's mode, and gives a new file the umask's mode.
- Whether a file can be written is checked before anything is measured (`check_writable`).
- Ctrl-C, SIGTERM and SIGHUP wait while a write is under way (`signals_held`): they end the
  process after the line is whole, never with half of it on disk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from coatbench.errors import CoatbenchError

MIN_FREE_BYTES = 1 << 20  # below this, a disk counts as full before anything is measured

_FIXES = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some space on that disk",
    errno.EROFS: "it is on a read-only file system: choose another place",
    errno.EACCES: "choose a place you may write to",
    errno.EPERM: "choose a place you may write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EEXIST: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "it is a directory: give a file name",
    errno.ENOENT: "a folder on the way does not exist and cannot be made: fix the path",
}


class WriteError(CoatbenchError):
    """A file could not be written (bad input: exit 2, one line)."""


def _failed(path: Path, error: OSError) -> WriteError:
    fix = _FIXES.get(error.errno, "check the path and the disk")
    return WriteError(f"cannot write {path}: {error.strerror or error}: {fix}")


def check_writable(path: Path) -> None:
    """Raise WriteError unless `path` can be written, leaving no trace: an existing file is
    opened for appending; otherwise a probe file is made and removed in the nearest folder on
    the way that exists (the missing ones are made when the file is written)."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory: give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        if path.exists():
            with open(path, "ab"):
                pass
        else:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise _failed(path, error) from None
    if free < MIN_FREE_BYTES:
        raise WriteError(f"cannot write {path}: its disk has {free:,} bytes free: free some space on that disk")


def check_readable(path: Path, what: str, fix: str) -> None:
    """Refuse `path` (a `what`, e.g. "results file") unless it is a regular file, saying which
    it is instead: missing, a loop of symbolic links, a directory, a pipe or a device; `fix`
    says what to give instead of a directory or a special file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CoatbenchError(f"{what} {path} is a loop of symbolic links: point it at a file") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise CoatbenchError(f"{what} {path} does not exist: check the path") from None
        raise CoatbenchError(f"cannot read {what} {path}: {error.strerror}: check its permissions") from None
    if stat.S_ISDIR(mode):
        raise CoatbenchError(f"{what} {path} is a directory: {fix}")
    if not stat.S_ISREG(mode):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise CoatbenchError(f"{what} {path} is {kind}, not a file: {fix}")


def check_not_input(output: Path, inputs: Sequence[Path], option: str) -> None:
    """Refuse to write `output` (given with `option`) where it is one of the files read."""
    for given in inputs:
        same = os.path.samefile(output, given) if Path(output).exists() and Path(given).exists() else (
            os.path.realpath(output) == os.path.realpath(given))  # fmt: skip
        if same:
            raise WriteError(f"{option} {output} is also an input: writing it would destroy it; give another path")


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait (blocked, pending) until the block ends, then act. Python
    runs signal handlers in the main thread, so elsewhere there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def append_locked(path: Path, data: bytes) -> None:
    """Append `data` (whole lines) to `path` in one locked, synced write, all or nothing; the file
    and its folder are made if missing (a new file gets the umask's mode, an existing one keeps
    its own)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with signals_held(), open(path, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            end = os.fstat(f.fileno()).st_size
            try:
                if end and _last_byte(path, end) != b"\n":
                    data = b"\n" + data  # after a torn line: the new one stays whole
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                os.ftruncate(f.fileno(), end)  # a write cut short (a full disk) leaves no torn line
                raise
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    except OSError as error:
        raise _failed(path, error) from None


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, all or nothing (see the module docstring)."""
    target = Path(os.path.realpath(path))  # through a symbolic link: its target gets the data
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else 0o666 & ~_umask()
        with signals_held():
            _replace(target, data, mode)
    except OSError as error:
        raise _failed(Path(path), error) from None


def _replace(target: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
