"""Safe file output: atomic writes and output-path checks.

Every file the library writes goes through :func:`atomic_write`, so a crash, a full disk or
a signal leaves either the old file or the complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ncsn.errors import NCSNError


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

    Args:
        path: The final file.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file object. Use ``f.name`` to hand the path to a library that
        writes by file name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
