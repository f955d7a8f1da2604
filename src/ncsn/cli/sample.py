"""``ncsn sample``: draw samples from a trained model (:func:`ncsn.api.sample`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn import api
from ncsn.cli import trained
from ncsn.cli.args import POS_INT
from ncsn.imaging import save_gif, save_image_grid, save_npz
from ncsn.io import check_output_path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn sample``."""
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--n", type=POS_INT, default=64, help="number of samples")
    p.add_argument("--out", type=Path, required=True, help="PNG grid to write")
    p.add_argument("--gif", type=Path, help="also write an animated GIF of the chain")
    p.add_argument("--save-npz", type=Path, help="also write samples (N,C,H,W) in [0,1]")
    p.add_argument(
        "--batch-size",
        type=POS_INT,
        help="images per network batch (default: the config's sampling.batch_size)",
    )
    p.add_argument("--nrow", type=POS_INT, help="images per grid row (default: sqrt of --n)")
    trained.add_trained_options(p)


def run(args: argparse.Namespace) -> int:
    """Sample, then write the grid (and the GIF of the chain, the ``.npz``) asked for."""
    outputs = {"--out": args.out, "--gif": args.gif, "--save-npz": args.save_npz}
    for what, path in outputs.items():
        if path is not None:
            check_output_path(path, what=what)
    trained.check_outputs(args, outputs)
    model, cfg = trained.load_model(args)
    record = 0
    if args.gif:  # about 50 frames (each sampler update is at most one frame)
        record = max(1, api.sampler_settings(cfg)["nfe"] // 50)
    res = api.sample(model, cfg, args.n, seed=args.seed, progress=True, record_every=record)
    x, traj = res if record else (res, None)
    save_image_grid(x, args.out, nrow=args.nrow)
    if args.gif:
        save_gif([f.clamp(0, 1) for f in traj], args.gif, nrow=args.nrow)
    if args.save_npz:
        save_npz(args.save_npz, x)
    written = [args.out, args.gif, args.save_npz]
    print(f"wrote {', '.join(str(p) for p in written if p)}")
    return 0
