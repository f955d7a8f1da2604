"""Process-level speed settings applied by default.

PyTorch on the CPU allocates and frees large activation tensors at every step. glibc serves
blocks above its mmap threshold with fresh ``mmap`` calls and returns them with ``munmap``, so
every step page-faults its activations in again, and the kernel time can rival the compute.
:func:`tune_allocator` makes glibc keep freed memory in the heap for reuse instead. Set
``NCSN_NO_MALLOC_TUNING=1`` to leave glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

_done = False


def tune_allocator() -> bool:
    """Keep freed memory in the heap (glibc only); returns whether the settings were applied.

    Serves all allocations from the heap (``M_MMAP_MAX = 0``) and never trims it
    (``M_TRIM_THRESHOLD`` at its maximum), so memory freed by one step is reused by the next
    without page faults. Peak memory is unchanged; memory is returned to the system at exit.
    """
    global _done
    if _done:
        return True
    if os.environ.get("NCSN_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= mallopt(M_TOP_PAD, 64 << 20) == 1
    _done = bool(ok)
    return _done
