"""``ncsn train``: train a score network (:func:`ncsn.training.train`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ncsn.cli.args import POS_INT, add_common, add_data_root, add_overrides
from ncsn.cli.common import with_data_root
from ncsn.config import apply_overrides, config_to_yaml, load_config
from ncsn.distributed import env_rank
from ncsn.training import train
from ncsn.workdir import run_config

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn train``."""
    p.add_argument("--config", default=None, help="bundled name or YAML path (default: digits)")
    p.add_argument("--workdir", type=Path, default=None, help="run folder (default: runs/NAME)")
    add_overrides(
        p, "KEY=VALUE", "override a config value, e.g. --set training.lr=2e-4 (repeatable)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --workdir")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument(
        "--max-steps",
        type=POS_INT,
        help="stop after this many steps of this call: with --resume, counted from the "
        "checkpoint's step (default: none, run to training.n_iters)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_root(p, "(same as --set data.root=DIR)")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    """Train (or resume, or print the resolved config with ``--dry-run``)."""
    # --resume without --config: the run's config.yaml, or the config in its latest checkpoint
    resuming = args.config is None and args.resume and args.workdir
    saved = run_config(args.workdir) if resuming else None
    if saved is not None:
        cfg = apply_overrides(saved, args.overrides)
    else:
        cfg = load_config(args.config or "digits", args.overrides)
    cfg = with_data_root(cfg, args.data_root)
    workdir = args.workdir or Path("runs") / cfg.name
    if args.dry_run:
        print(config_to_yaml(cfg), end="")
        print(f"# workdir: {workdir}", file=sys.stderr)
        return 0
    res = train(
        cfg,
        workdir,
        resume=True if args.resume else None,
        overwrite=args.overwrite,
        device=args.device,
        progress=not args.no_progress,
        max_steps=args.max_steps,
        log=lambda m: print(m, file=sys.stderr),
    )
    if env_rank() == 0:
        print(f"trained {res.step} steps ({res.stopped}); checkpoint: {res.checkpoint}")
    return 0
