"""SIGINT/SIGTERM during training: finish the step, write a checkpoint, stop.

The first signal sets a flag that the training loop checks between steps. A second signal
stops at once (:class:`SignalAbort`, a ``KeyboardInterrupt``) -- unless a checkpoint is being
written: inside :meth:`StopSignals.protect` further signals are only recorded, so a
checkpoint is never abandoned half-way and the run stops right after it is complete.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["SignalAbort", "StopSignals"]


class SignalAbort(KeyboardInterrupt):
    """A second SIGINT/SIGTERM during a step; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag (``signum``) while active (a context manager)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self._protected = 0

    def __enter__(self) -> StopSignals:
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        elif not self._protected:  # a second signal outside a checkpoint write: stop now
            raise SignalAbort(signum)

    @contextlib.contextmanager
    def protect(self) -> Iterator[None]:
        """Within this block signals only set the flag; the loop stops after the block."""
        self._protected += 1
        try:
            yield
        finally:
            self._protected -= 1

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
