"""One writer per run folder: an OS file lock on ``WORKDIR/.ncsn-lock``.

The lock is ``flock(2)`` on an open file, so the kernel releases it when the holding process
ends in any way, ``kill -9`` included; a stale lock file is harmless (it is not deleted,
which would let two processes lock two different files of the same name, except with the
folder itself when a run that created the folder fails before writing anything into it).
The holder writes its PID into the file so that a refused second writer can name it.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ncsn.errors import NCSNError

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock, as on file systems without locks
    fcntl = None

LOCK_FILE = ".ncsn-lock"
F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "LOCK_FILE",
    "WorkdirBusy",
    "WorkdirLock",
    "exclusive_workdir",
    "make_workdir",
    "missing_dirs",
]


class WorkdirBusy(NCSNError):
    """Another process is writing to the run folder."""


def make_workdir(workdir: str | Path) -> Path:
    """Create the run folder (and its parents) if needed."""
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NCSNError(
            f"cannot create workdir {workdir} ({e.strerror}); choose another --workdir"
        ) from None
    return workdir


def missing_dirs(workdir: str | Path) -> list[Path]:
    """The folders that :func:`make_workdir` would create for ``workdir``, deepest first."""
    out, p = [], Path(workdir).absolute()
    while not os.path.lexists(p) and p != p.parent:
        out.append(p)
        p = p.parent
    return out


class WorkdirLock:
    """An exclusive, non-blocking lock on a run folder (a context manager)."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> WorkdirLock:
        """Take the lock or raise :class:`WorkdirBusy` naming the holder's PID."""
        if fcntl is None:
            return self
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise NCSNError(
                f"cannot open the lock file {self.path} ({e.strerror}); the workdir must be "
                "writable and the lock file a regular file (not a link): choose another --workdir"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NCSNError(
                f"the lock file {self.path} is not a regular file; remove it or choose another "
                "--workdir"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusy(
                    f"workdir {self.workdir} is in use by another ncsn process "
                    f"(PID {holder or 'unknown'}); wait for it to finish or stop it, or "
                    "choose another --workdir"
                ) from None
            return self  # a file system without locks (some network mounts): go on unlocked
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard_if_unused(self, created: list[Path]) -> None:
        """Undo :func:`make_workdir` when the run wrote nothing (it failed at its start).

        ``created``: the folders this process made (:func:`missing_dirs`, deepest first). Only
        they are removed, only while they hold nothing but this lock file, and while the lock
        is still held, so no other ncsn process can be using the folder.
        """
        if self.workdir.absolute() not in created:
            return
        try:
            if set(os.listdir(self.workdir)) - {LOCK_FILE}:
                return
            if self.fd is not None:
                os.unlink(self.path)
            for folder in created:
                os.rmdir(folder)  # fails, and stops here, if anything else appeared in it
        except OSError:
            return

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def exclusive_workdir(fn: F) -> F:
    """Run ``fn`` holding the lock of the folder passed as its ``workdir`` argument.

    The folder is created first. A second caller on the same folder, in this or another
    process, gets :class:`WorkdirBusy` at once.
    """
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        workdir = make_workdir(bound.arguments["workdir"])
        with WorkdirLock(workdir):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
