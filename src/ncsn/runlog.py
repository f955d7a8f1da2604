"""A run's metrics log: ``metrics.jsonl`` (one JSON object per line) and TensorBoard.

On resume the log is cut back to the checkpoint's step, and a line that a crash left
half-written is dropped; the cut is an atomic rewrite, so a crash during it leaves the old
log whole.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ncsn.errors import NCSNError
from ncsn.io import WriteError, atomic_write

__all__ = ["MetricsLog", "record_step"]


def record_step(line: str) -> int | None:
    """The step of one complete log line; None for anything else (a half-written line)."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        return None
    step = rec.get("step") if isinstance(rec, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and TensorBoard when installed)."""

    def __init__(self, workdir: Path, start_step: int, tensorboard: bool):
        self.path = Path(workdir) / "metrics.jsonl"
        if self.path.exists() and not self.path.is_file():  # a folder, a device, a pipe
            raise NCSNError(
                f"{self.path} is not a regular file; move it away or choose another workdir"
            )
        try:
            if self.path.exists():  # drop lines written after the checkpoint we resume from
                self._trim(start_step)
            self.f = open(self.path, "a")  # noqa: SIM115
        except WriteError:
            raise
        except OSError as e:
            raise self._error(e) from None
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(workdir) / "tb"), purge_step=start_step + 1)
            except ImportError:
                self.tb = None

    def _trim(self, start_step: int) -> None:
        with open(self.path, "rb") as old, atomic_write(self.path, "w") as new:
            for raw in old:
                line = raw.decode("utf-8", "replace").strip()
                step = record_step(line)
                if step is not None and step <= start_step:
                    new.write(line + "\n")

    def _error(self, e: OSError) -> WriteError:
        return WriteError(
            f"cannot write {self.path} ({e.strerror or e}); the checkpoints are intact: free "
            "disk space or fix the folder's permissions, then resume with --resume"
        )

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a line) and flush it."""
        try:
            self.f.write(json.dumps(record) + "\n")
            self.f.flush()
        except OSError as e:
            raise self._error(e) from None
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])
                elif isinstance(v, list):
                    for i, x in enumerate(v):
                        if x is not None:
                            self.tb.add_scalar(f"{k}/level_{i}", x, record["step"])

    def close(self) -> None:
        """Close the log; a write that fails now (full disk) loses only unflushed lines."""
        with contextlib.suppress(OSError):
            self.f.close()
        if self.tb is not None:
            self.tb.close()
