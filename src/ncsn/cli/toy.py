"""``ncsn toy``: the paper's 2-D toy experiments, Figures 1-3 (:mod:`ncsn.toy.experiments`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ncsn.cli.args import SEED, add_common
from ncsn.errors import NCSNError
from ncsn.toy import experiments

__all__ = ["FIGURES", "add_arguments", "run"]

#: figure name -> the experiment that draws it
FIGURES = {
    "fig1": experiments.run_fig1,
    "fig2": experiments.run_fig2,
    "fig3": experiments.run_fig3,
    "all": experiments.run_all,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn toy``."""
    p.add_argument("figure", choices=list(FIGURES))
    p.add_argument("--out", type=Path, default=Path("runs/toy"), help="folder for figures, JSON")
    p.add_argument("--seed", type=SEED, default=0, help="seed of every draw, 0 to 2**63-1")
    p.add_argument("--quick", action="store_true", help="tiny version (seconds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    """Run the figure's experiment and write its figures and JSON to ``--out``."""
    check_out_folder(args.out)
    res = FIGURES[args.figure](
        args.out,
        seed=args.seed,
        quick=args.quick,
        progress=not args.no_progress,
        device=args.device,
    )
    print(json.dumps(res, indent=1, default=str)[:2000])
    print(f"wrote figures and JSON to {args.out}")
    return 0


def check_out_folder(folder: Path) -> None:
    """Create ``--out`` (a folder) or check that it is a writable folder, in one line."""
    if folder.exists() and not folder.is_dir():
        raise NCSNError(f"--out {folder} is a file, not a folder; give a folder name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NCSNError(f"--out {folder}: cannot create the folder ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NCSNError(f"--out {folder} is not writable; choose another folder")
