"""Helpers shared by several test files (import them from here, never from a test file)."""

from __future__ import annotations

from ncsn.config import Config, apply_overrides, load_config

# the digits U-Net at its smallest: a training step takes a few milliseconds
TINY = [
    "model.options={ch: 8, ch_mult: [1, 2], num_res_blocks: 1}",
    "training.batch_size=32",
    "training.log_every=1",
    "training.eval_every=0",
    "training.sample_every=0",
    "training.checkpoint_every=5",
    "training.tensorboard=false",
    "training.warmup=0",
]

# a model of a few hundred weights: a run of a few steps takes well under a second
MLP = [
    "model.name=mlp",
    "model.options={hidden: 16, depth: 1}",
    "training.batch_size=16",
    "training.log_every=1",
    "training.eval_every=0",
    "training.sample_every=0",
    "training.checkpoint_every=2",
    "training.tensorboard=false",
    "training.warmup=0",
    "data.val_size=0",
]


def tiny_config(*more: str) -> Config:
    """The digits config with the tiny U-Net, plus ``more`` overrides."""
    return apply_overrides(load_config("digits"), [*TINY, *more])


def mlp_config(*more: str) -> Config:
    """The digits config with a tiny MLP score model, plus ``more`` overrides."""
    return apply_overrides(load_config("digits"), [*MLP, *more])


# a digits MLP small enough for multi-process tests (tests/test_distributed.py)
DDP_MLP = [
    "model.name=mlp",
    "model.options={hidden: 32, depth: 2}",
    "training.batch_size=32",
    "training.lr=0.002",
    "training.warmup=5",
    "training.grad_clip=1.0",
    "training.ema_rate=0.9",
    "training.log_every=1",
    "training.eval_every=0",
    "training.sample_every=0",
    "training.checkpoint_every=100000",
    "training.tensorboard=false",
]


def ddp_mlp_config(*more: str) -> Config:
    """The digits default with the MLP of :data:`DDP_MLP` and ``more`` overrides."""
    return apply_overrides(load_config("digits"), [*DDP_MLP, *more])
