"""``ncsn inpaint``: fill in occluded images, the paper's Algorithm 2 (:func:`ncsn.api.inpaint`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ncsn import api
from ncsn.cli import trained
from ncsn.cli.args import POS_INT
from ncsn.cli.common import with_data_root
from ncsn.config import Config
from ncsn.data import as_tensor, get_dataset
from ncsn.imaging import save_image_grid
from ncsn.io import check_output_path
from ncsn.masks import MASK_SPECS, make_mask

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn inpaint``."""
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument(
        "--images",
        help="data set name[:split] or image folder (default: the run's data set, test split)",
    )
    p.add_argument("--mask", default="left-half", help=f"{', '.join(MASK_SPECS)} or a PNG")
    p.add_argument("--n-images", type=POS_INT, default=8, help="images to complete")
    p.add_argument("--completions", type=POS_INT, default=4, help="completions per image")
    p.add_argument("--out", type=Path, required=True, help="PNG grid to write")
    trained.add_trained_options(p, data_root_for="named by --images")


def reference_images(
    spec: str | None, cfg: Config, n: int, split_default: str = "test"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images (and labels) of ``--images``: ``NAME[:SPLIT]`` or a folder."""
    if spec is None:
        name, split = cfg.data.dataset, split_default
    elif Path(spec).is_dir():
        name, split = spec, "all"
    else:
        name, _, split = spec.partition(":")
        split = split or split_default
    ds = get_dataset(
        name,
        root=cfg.data.root,
        split=split,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        val_size=cfg.data.val_size,
    )
    images, labels = as_tensor(ds)
    return images[:n], labels[:n]


def run(args: argparse.Namespace) -> int:
    """Complete ``--n-images`` occluded images; a grid row per image as in the paper's Fig. 6."""
    check_output_path(args.out, what="--out")
    mask_file = args.mask if Path(args.mask).suffix or Path(args.mask).exists() else None
    folder = args.images.removeprefix("folder:") if args.images else None
    folder = folder if folder and Path(folder).exists() else None
    inputs = {"--mask": mask_file, "--images": folder}
    trained.check_outputs(args, {"--out": args.out}, inputs)
    model, cfg = trained.load_model(args)
    images, _ = reference_images(args.images, with_data_root(cfg, args.data_root), args.n_images)
    shape = tuple(images.shape[1:])
    mask = make_mask(args.mask, shape=shape, generator=torch.Generator().manual_seed(args.seed))
    out = api.inpaint(model, cfg, images, mask, n_completions=args.completions, seed=args.seed)
    occluded = images * mask + 0.5 * (1 - mask)
    rows = torch.cat([occluded[:, None], out, images[:, None]], dim=1)  # the paper's Fig. 6
    nrow = args.completions + 2
    save_image_grid(rows.reshape(-1, *shape), args.out, nrow=nrow)
    print(f"wrote {args.out}: rows of occluded input, {args.completions} completions, original")
    return 0
