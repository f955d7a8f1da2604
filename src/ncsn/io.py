"""Safe file output: atomic writes and output-path checks.

Every file the library writes goes through :func:`atomic_write`, so a crash, a full disk or
a signal leaves either the old file or the complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ncsn.errors import NCSNError

__all__ = [
    "WriteError",
    "atomic_write",
    "check_output_path",
    "check_outputs_apart",
    "sha256_file",
]


class WriteError(NCSNError, OSError):
    """A file could not be written (full disk, read-only folder); the old file is unchanged.

    Attributes ``path`` (the file) and ``reason`` (the system's words) let callers say more.
    """

    path: Path
    reason: str


def check_output_path(path: str | os.PathLike, *, what: str = "output file") -> Path:
    """Check that ``path`` can be written: its folder exists and is writable.

    Args:
        path: The file that will be written.
        what: How the file is named in the error message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        NCSNError: When the parent folder is missing, not a folder or not writable.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise NCSNError(
            f"{what} {path}: folder {parent} does not exist; create it first (mkdir -p {parent})"
        )
    if not parent.is_dir():
        raise NCSNError(f"{what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise NCSNError(f"{what} {path}: folder {parent} is not writable")
    if path.is_dir():
        raise NCSNError(f"{what} {path} is a folder; give a file name")
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    A device or pipe (``/dev/null``, a FIFO) is written directly: replacing it by a regular
    file would break it for every other program.

    Args:
        path: The final file.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file object. Use ``f.name`` to hand the path to a library that
        writes by file name.

    Raises:
        WriteError: When the disk is full or the folder is not writable; ``path`` is then
            unchanged and no temporary file is left behind.
    """
    path = Path(path)
    if _is_special(path):  # /dev/null, a pipe: write into it; never replace it by a file
        try:
            with open(path, mode) as f:
                yield f
        except OSError as e:
            raise _write_error(path, e) from None
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, NCSNError):
            raise _write_error(path, e) from None
        raise


def _is_special(path: Path) -> bool:
    """A device, pipe or socket (not a link to one, which is replaced like a file)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def _write_error(path: Path, e: OSError) -> WriteError:
    err = WriteError(
        f"cannot write {path} ({e.strerror or e}); {path.name} is unchanged: free disk space "
        "or fix the folder's permissions, or write elsewhere"
    )
    err.path, err.reason = path, e.strerror or str(e)
    return err


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs_apart(
    outputs: dict[str, str | os.PathLike | None],
    inputs: dict[str, str | os.PathLike | None],
) -> None:
    """Refuse a command whose output would overwrite one of its inputs or another output.

    Paths are compared after resolving symbolic links and relative parts, so ``./a.png``,
    ``a.png`` and a link to it are the same file. An input that is a folder (an image folder)
    also refuses outputs anywhere inside it: the file written would become an input.

    Args:
        outputs: Option name -> file the command writes (None: not written).
        inputs: Option name -> file or folder the command reads (None: not read).

    Raises:
        NCSNError: Naming both options.
    """
    outs = [(k, Path(v)) for k, v in outputs.items() if v is not None]
    ins = [(k, Path(v)) for k, v in inputs.items() if v is not None]
    for i, (name, out) in enumerate(outs):
        for other, p in ins + outs[:i]:
            if p.is_dir() and other in inputs:
                inside = Path(os.path.realpath(out)).is_relative_to(os.path.realpath(p))
                if not inside:
                    continue
                raise NCSNError(
                    f"{name} {out} is inside the folder {other} reads ({p}); "
                    "write it somewhere else"
                )
            if _same_file(out, p):
                raise NCSNError(
                    f"{name} {out} is the same file as {other} {p}; the command would "
                    "overwrite it: give another file name"
                )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
