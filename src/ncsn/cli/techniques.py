"""``ncsn techniques``: the NCSNv2 rules (Song & Ermon 2020) for sigma_1, L and eps on a data
set (:mod:`ncsn.schedules`), printed with the ``--set`` options that apply them."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from ncsn.cli.args import POS_INT, add_common, add_data_root, add_overrides
from ncsn.cli.common import with_data_root
from ncsn.config import Config, load_config
from ncsn.data import get_dataset
from ncsn.edm import data_statistics
from ncsn.schedules import (
    gamma_for_dimension,
    geometric_sigmas,
    langevin_eps_for_steps,
    num_levels_from_gamma,
    sigma_max_from_data,
)
from ncsn.transforms import preprocess

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ncsn techniques``."""
    p.add_argument("--config", default="digits", help="bundled name or YAML path")
    p.add_argument("--data", help="data set name or image folder (default: the config's)")
    add_overrides(p, "KEY=VALUE", "override a config value (repeatable)")
    p.add_argument("--steps", type=POS_INT, default=5, help="Langevin steps per level T")
    p.add_argument("--max-points", type=POS_INT, default=10_000, help="images used for sigma_1")
    add_data_root(p, "(same as --set data.root=DIR)")
    add_common(p)


def _training_images(cfg: Config, max_points: int) -> torch.Tensor:
    """Up to ``max_points`` training images, evenly spread over the split."""
    d = cfg.data
    ds = get_dataset(
        d.dataset,
        root=d.root,
        split="train",
        image_size=d.image_size,
        channels=d.channels,
        val_size=d.val_size,
    )
    idx = torch.linspace(0, len(ds) - 1, min(len(ds), max_points)).round().long().unique()
    return ds.get_batch(idx)[0]


def run(args: argparse.Namespace) -> int:
    """Apply techniques 1 (sigma_1), 2 (L) and 4 (eps) and print them as JSON."""
    data = [f"data.dataset={args.data}"] if args.data else []
    cfg = with_data_root(load_config(args.config, data + args.overrides), args.data_root)
    images = _training_images(cfg, args.max_points)
    dim = int(images[0].numel())
    sigma_min = cfg.model.sigma_min
    s1 = round(sigma_max_from_data(images, max_points=args.max_points), 4)
    L = num_levels_from_gamma(s1, sigma_min, dim)
    eps = langevin_eps_for_steps(geometric_sigmas(s1, sigma_min, L), args.steps)
    logit = cfg.data.logit_transform
    mean, sd = data_statistics(preprocess(images, dequantize=False, logit=logit))
    out: dict[str, Any] = {
        "data": cfg.data.dataset,
        "images": int(images.shape[0]),
        "shape": list(images.shape[1:]),
        "dim": dim,
        "sigma_max": s1,
        "sigma_min": sigma_min,
        "gamma": round(gamma_for_dimension(dim), 5),
        "num_levels": L,
        "n_steps_each": args.steps,
        "eps": eps,
        "official_step_lr": eps / 2,
        "data_mean": round(mean, 4),
        "sigma_data": round(sd, 4),
        "set": [
            *data,
            f"model.sigma_max={s1}",
            f"model.num_levels={L}",
            f"sampling.n_steps_each={args.steps}",
            f"sampling.eps={eps:.4g}",
        ],
    }
    print(json.dumps(out, indent=1))
    return 0
