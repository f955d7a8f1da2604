"""Benchmark scripts end as the ``ncsn`` command does: a user error is one line, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ncsn.errors import NCSNError


def run(main: Callable[[], int | None]) -> None:
    """Call ``main()`` and exit with its code; an NCSNError prints ``SCRIPT: error: ...``."""
    try:
        code = main()
    except NCSNError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(code or 0)
