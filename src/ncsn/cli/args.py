"""Shared pieces of the ``ncsn`` argument parsers: typed values, the help formatter, the
one-line error, and the option groups several subcommands take.

Only :mod:`argparse` is imported here, so that ``ncsn --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "NONNEG_INT",
    "POS_FLOAT",
    "POS_INT",
    "SEED",
    "HelpFormatter",
    "Parser",
    "add_common",
    "add_data_root",
    "add_overrides",
]


def _ranged(kind: type, lo: float | None = None, hi: float | None = None, name: str = "value"):
    """An argparse ``type``: ``kind(text)``, finite, within ``[lo, hi]``, else one line."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = [f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
            raise argparse.ArgumentTypeError(
                f"must be {' and '.join(s for s in bounds if s)}, got {text}"
            )
        return v

    parse.__name__ = name
    return parse


POS_INT: Callable[[str], int] = _ranged(int, 1, name="positive integer")
NONNEG_INT: Callable[[str], int] = _ranged(int, 0, name="non-negative integer")
SEED: Callable[[str], int] = _ranged(int, 0, 2**63 - 1, name="seed")
POS_FLOAT: Callable[[str], float] = _ranged(float, 1e-300, name="positive number")


class HelpFormatter(argparse.HelpFormatter):
    """Adds each option's default to its help text unless the text states it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)".strip()
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)".strip()
        if action.default is None or action.default == []:
            return f"{text} (default: none)".strip()
        return f"{text} (default: %(default)s)".strip()


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming its ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_common(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--debug``, which every subcommand takes."""
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N, mps (where available) or auto: cuda when available, else cpu "
        "(default: auto)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def add_data_root(p: argparse.ArgumentParser, what: str) -> None:
    """``--data-root``: the folder of the torchvision data sets ``what`` names."""
    p.add_argument(
        "--data-root",
        help=f"folder holding the torchvision data sets {what} (default: the config's "
        "data.root, else $NCSN_DATA_ROOT, else ./data)",
    )


def add_overrides(p: argparse.ArgumentParser, metavar: str, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar=metavar, help=help
    )
