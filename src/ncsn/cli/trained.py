"""The trained model of ``sample``, ``inpaint`` and ``eval``: the options that choose it and
its sampler, loading it with them, and keeping outputs away from it."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from torch import nn

from ncsn import api
from ncsn.checkpoint import find_checkpoint
from ncsn.cli.args import POS_FLOAT, POS_INT, SEED, add_common, add_data_root, add_overrides
from ncsn.config import Config, apply_overrides
from ncsn.errors import NCSNError
from ncsn.io import check_outputs_apart
from ncsn.sampling import sampler_names

__all__ = ["add_sampling", "add_trained_options", "check_outputs", "load_model"]


def add_sampling(p: argparse.ArgumentParser) -> None:
    """The sampler settings (default: the config's) and the weights to use."""
    *first, last = sampler_names()
    p.add_argument("--sampler", help=f"{', '.join(first)} or {last} (default: the config's)")
    p.add_argument(
        "--nfe",
        type=POS_INT,
        help="network evaluations per sample: sets the sampler's steps (default: the config's)",
    )
    p.add_argument(
        "--steps",
        type=POS_INT,
        help="ALD: Langevin steps per noise level T (default: the config's)",
    )
    p.add_argument(
        "--eps",
        type=POS_FLOAT,
        help="ALD: step at the smallest level, paper convention (default: the config's)",
    )
    p.add_argument(
        "--denoise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="final Tweedie denoising step (default: the config's)",
    )
    add_overrides(
        p, "sampling.KEY=VALUE", "set a sampling option, e.g. --set sampling.snr=0.2 (repeatable)"
    )
    p.add_argument("--seed", type=SEED, default=0, help="seed of the samples, 0 to 2**63-1")
    p.add_argument("--no-ema", action="store_true", help="use raw weights instead of EMA")


def add_trained_options(p: argparse.ArgumentParser, data_root_for: str | None = None) -> None:
    """What every command that runs a trained model takes: ``--data-root`` (when it reads the
    data sets ``data_root_for`` names), the sampler settings, ``--device`` and ``--debug``."""
    if data_root_for is not None:
        add_data_root(p, data_root_for)
    add_sampling(p)
    add_common(p)


def load_model(args: argparse.Namespace) -> tuple[nn.Module, Config]:
    """The checkpoint's model and config, with the command line's sampling settings."""
    model, cfg = api.load_checkpoint(args.checkpoint, device=args.device, ema=not args.no_ema)
    sets = list(args.overrides)
    for item in sets:
        if not item.strip().startswith("sampling."):
            raise NCSNError(
                f"--set {item}: only sampling.KEY=VALUE can change for a trained model "
                "(its data, model and training settings are fixed)"
            )
    flags = {
        "sampler": args.sampler,
        "n_steps_each": args.steps,
        "eps": args.eps,
        "denoise": args.denoise,
        "batch_size": getattr(args, "batch_size", None),
    }
    sets += [f"sampling.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    # the config's levels belong to its own sampler: another one starts from the network's L
    cfg = api.with_sampler(cfg, apply_overrides(cfg, sets).sampling.sampler)
    cfg = apply_overrides(cfg, sets)
    if args.nfe:
        cfg = api.with_nfe(cfg, args.nfe)
        got = api.sampler_settings(cfg)
        if got["nfe"] != args.nfe:
            print(
                f"ncsn: note: {got['sampler']} with {got['levels']} levels spends {got['nfe']} "
                f"network evaluations per sample (--nfe {args.nfe}: the nearest it can do)",
                file=sys.stderr,
            )
    return model, cfg


def check_outputs(args: argparse.Namespace, outputs: dict, more_inputs: dict | None = None) -> None:
    """Refuse an output that is an input (the checkpoint, its ``latest``) or another output."""
    with warnings.catch_warnings():  # a bad `latest` is reported once, when loading
        warnings.simplefilter("ignore")
        inputs = {"--checkpoint": find_checkpoint(args.checkpoint), **(more_inputs or {})}
    if Path(args.checkpoint).is_dir():
        for folder in (Path(args.checkpoint) / "checkpoints", Path(args.checkpoint)):
            inputs[f"--checkpoint {folder / 'latest'}"] = folder / "latest"
    check_outputs_apart(outputs, inputs)
