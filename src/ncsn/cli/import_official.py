"""``ncsn import-official``: an official NCSN/NCSNv2 checkpoint as an ncsn run folder
(:func:`ncsn.official.import_official`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.cli.args import NONNEG_INT, add_common
from ncsn.official import import_official

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Import a checkpoint written by the authors' code (ermongroup/ncsn run.zip "
    "run/logs/<doc>, ermongroup/ncsnv2 exp/logs/<doc>) without running code from it."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn import-official``."""
    p.description = DESCRIPTION
    p.add_argument("path", type=Path, help="checkpoint*.pth, or the folder with it and config.yml")
    p.add_argument("--out", type=Path, required=True, help="run folder to create (new or empty)")
    p.add_argument("--config", type=Path, help="the official config.yml (default: beside it)")
    p.add_argument("--step", type=NONNEG_INT, help="take checkpoint_<step>.pth from the folder")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    """Import, then say what was written and how to sample from it."""
    r = import_official(args.path, args.out, config=args.config, step=args.step)
    cfg = r["config"]
    net = r["kind"] + (f" ({r['variant']})" if r["variant"] else "")
    shape = f"{cfg.data.channels}x{cfg.data.image_size}x{cfg.data.image_size}"
    print(
        f"imported {net}, {shape}, ngf {cfg.model.options['ngf']}, L={cfg.model.num_levels}, "
        f"step {r['step']} from {r['source']}"
    )
    print(
        f"wrote {r['workdir'] / 'config.yaml'} and {r['checkpoint']} "
        f"({'raw and EMA' if r['ema'] else 'raw'} weights; no optimizer state)"
    )
    print(f"next: ncsn sample --checkpoint {r['workdir']} --n 64 --out samples.png")
    return 0
