"""``ncsn configs``: the names of the bundled configs (:func:`ncsn.config.bundled_configs`)."""

from __future__ import annotations

import argparse

from ncsn.cli.args import add_common
from ncsn.config import bundled_configs

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn configs``."""
    add_common(p)


def run(args: argparse.Namespace) -> int:
    """Print one bundled config name a line."""
    print("\n".join(bundled_configs()))
    return 0
