"""One optimisation step, and nothing else.

:func:`train_step` reads this rank's slice of the next global batch, draws the random
numbers of the *whole* global batch from the run's one noise generator (flips,
dequantisation, noise levels, perturbations, projections) and uses its slice of them, runs
``training.accumulate`` micro-batches (under bf16 autocast if asked, with DDP's gradient
all-reduce only on the last one), clips the gradient, checks that loss and gradient are
finite, and steps Adam and the EMA.

Because every rank draws the same numbers and uses its own rows, a step with N processes
and k micro-batches sees exactly the inputs of a one-process step on the whole batch:
results differ only by the order of floating-point sums (with 2 processes and 1 micro-batch
against 1 process and 2 micro-batches, not at all: see ``tests/test_distributed.py``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ncsn.acceleration import autocast
from ncsn.config import Config
from ncsn.distributed import Dist
from ncsn.edm import draw_training_sigmas, loss_weighting
from ncsn.losses import TRAINING_LOSSES, AnnealedLoss
from ncsn.rng import rand, randint, randn
from ncsn.train_state import TrainState
from ncsn.transforms import preprocess, random_hflip

__all__ = ["StepSetup", "StepResult", "Draws", "draw", "train_step", "lr_at"]


class Draws(NamedTuple):
    """The random numbers of one global batch (rows = examples), on the CPU."""

    flip: torch.Tensor | None  # (B,) uniform, when random_flip
    dequantize: torch.Tensor | None  # (B, C, H, W) uniform, when dequantize
    levels: torch.Tensor  # (B,) noise level indices
    noise: torch.Tensor  # (B, C, H, W) standard normal
    projections: torch.Tensor | None  # (n, B, C, H, W) standard normal, sliced score matching
    sigma: torch.Tensor | None  # (B,) continuous noise levels (sigma_dist: lognormal)

    def rows(self, sl: slice) -> Draws:
        """The draws of examples ``sl``."""
        return Draws(
            *(
                None if t is None else t[:, sl] if name == "projections" else t[sl]
                for name, t in zip(self._fields, self, strict=True)
            )
        )


def draw(
    cfg: Config, batch: int, shape: torch.Size, sigmas: torch.Tensor, g: torch.Generator
) -> Draws:
    """Draw a global batch's random numbers, in the order ncsn has always drawn them.

    Args:
        cfg: The config (which draws: flips, dequantisation, level distribution, loss).
        batch: The global batch size.
        shape: One image's shape (C, H, W).
        sigmas: The L noise levels (on the CPU).
        g: The run's noise generator.

    Returns:
        :class:`Draws`, on the CPU.
    """
    like = torch.empty(0)  # float32 on the CPU: the dtype of the images and their noise
    flip = rand((batch,), like, g) if cfg.data.random_flip else None
    deq = rand((batch, *shape), like, g) if cfg.data.dequantize else None
    drawn = draw_training_sigmas(cfg, batch, sigmas, like, g)
    levels = drawn.get("levels")
    if levels is None:
        levels = randint(cfg.model.num_levels, (batch,), torch.device("cpu"), g)
    noise = randn((batch, *shape), like, g)
    proj = None
    if cfg.training.loss != "dsm":
        proj = randn((cfg.training.n_projections, batch, *shape), like, g)
    return Draws(flip, deq, levels, noise, proj, drawn.get("sigma"))


@dataclass
class StepSetup:
    """How steps run: the network to call and the execution options.

    Attributes:
        cfg: The run's config.
        net: What computes the forward pass: the state's model, possibly wrapped
            (activation checkpointing, ``torch.compile``, DDP).
        ddp: The DDP wrapper inside ``net`` (for ``no_sync``), or None.
        sigmas: The noise levels, on ``dist.device``.
        dist: This process among the training processes.
    """

    cfg: Config
    net: nn.Module
    ddp: nn.parallel.DistributedDataParallel | None
    sigmas: torch.Tensor
    dist: Dist

    def score_fn(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The network as a float32 score function (autocast and memory format applied)."""
        training = self.cfg.training
        if training.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.dist.device, training.precision):
            out = self.net(x, sigma)
        return out.float()


@dataclass
class StepResult:
    """What a step did, summed over processes.

    Attributes:
        ok: Loss and gradient were finite and the optimizer stepped.
        loss: Mean loss over the global batch.
        grad_norm: Gradient norm before clipping.
        level_sum: Per-level sums of the weighted loss (float64, CPU).
        level_cnt: Per-level example counts.
        message: What was not finite (when not ``ok``).
    """

    ok: bool
    loss: float
    grad_norm: float
    level_sum: torch.Tensor
    level_cnt: torch.Tensor
    message: str = ""


def lr_at(cfg: Config, step: int) -> float:
    """Learning rate of step ``step + 1``: linear warm-up, then constant or a cosine decay
    reaching 0 at ``n_iters``."""
    training = cfg.training
    lr = training.lr * min(1.0, (step + 1) / training.warmup) if training.warmup else training.lr
    if training.lr_schedule == "cosine" and step >= training.warmup:
        done = (step - training.warmup) / max(1, training.n_iters - training.warmup)
        lr = training.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    return lr


def _loss_fn(cfg: Config, score_fn, x: torch.Tensor, sigmas: torch.Tensor, d: Draws):
    """``training.loss`` (from :data:`ncsn.losses.TRAINING_LOSSES`) on this batch's draws."""
    training = cfg.training
    dev = x.device
    if training.loss == "dsm":  # weighting and sigma_dist apply to DSM only (config checks)
        extra = {"sigma": None if d.sigma is None else d.sigma.to(dev), **loss_weighting(cfg)}
    else:  # sliced score matching
        extra = {
            "power": training.loss_power,
            "n_projections": training.n_projections,
            "projections": d.projections.to(dev),
        }
    loss = TRAINING_LOSSES[training.loss]
    return loss(score_fn, x, sigmas, levels=d.levels.to(dev), noise=d.noise.to(dev), **extra)


def _micro_loss(setup: StepSetup, x: torch.Tensor, d: Draws) -> AnnealedLoss:
    data = setup.cfg.data
    if data.random_flip:
        x = random_hflip(x, uniform=d.flip)
    x = preprocess(x, dequantize=data.dequantize, logit=data.logit_transform, uniform=d.dequantize)
    return _loss_fn(setup.cfg, setup.score_fn, x, setup.sigmas, d)


def _stats(out: AnnealedLoss, n: int) -> torch.Tensor:
    """[loss sum, per-level loss sums (L), counts (L), non-finite level flags (L)], float64."""
    cnt = out.counts.detach().double().cpu()
    per = out.per_level.detach().double().cpu()
    bad = ((cnt > 0) & ~torch.isfinite(per)).double()
    loss_sum = out.loss.detach().double().cpu().reshape(1) * n
    return torch.cat([loss_sum, torch.nan_to_num(per) * cnt, cnt, bad])


def train_step(state: TrainState, setup: StepSetup) -> StepResult:
    """One optimisation step on the next global batch.

    Args:
        state: The training state (model, optimizer, EMA, data order, noise; updated).
        setup: The network and execution options.

    Returns:
        :class:`StepResult`; when not ``ok`` nothing was updated but the data order and the
        noise generator (the batch is consumed, as an uninterrupted run would).
    """
    cfg, d = setup.cfg, setup.dist
    k = cfg.training.accumulate
    x = state.batches.next().to(d.device)
    sigmas = setup.sigmas.cpu()
    draws = draw(cfg, state.batches.batch_size, x.shape[1:], sigmas, state.noise)
    n_local, m = len(x), len(x) // k
    mine = draws.rows(slice(d.rank * n_local, (d.rank + 1) * n_local))
    state.model.train()
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(cfg, state.step)
    state.optimizer.zero_grad(set_to_none=True)
    stats = torch.zeros(1 + 3 * cfg.model.num_levels, dtype=torch.float64)
    for j in range(k):
        last = j == k - 1
        quiet = setup.ddp.no_sync() if setup.ddp is not None and not last else None
        with quiet or contextlib.nullcontext():
            rows = slice(j * m, (j + 1) * m)
            out = _micro_loss(setup, x[rows], mine.rows(rows))
            (out.loss * (m / n_local)).backward()
        stats += _stats(out, m)
    return _finish(state, setup, d.sum_(stats))


def _finish(state: TrainState, setup: StepSetup, stats: torch.Tensor) -> StepResult:
    cfg = setup.cfg
    num_levels = cfg.model.num_levels
    level_sum, level_cnt, bad = stats[1:].split(num_levels)
    clip = cfg.training.grad_clip
    grad_norm = nn.utils.clip_grad_norm_(state.model.parameters(), clip if clip else float("inf"))
    loss = float(stats[0]) / state.batches.batch_size
    res = StepResult(True, loss, float(grad_norm), level_sum, level_cnt)
    if not (torch.isfinite(stats[0]) and torch.isfinite(grad_norm)):
        state.optimizer.zero_grad(set_to_none=True)
        res.ok = False
        res.message = _non_finite_message(
            "loss" if not torch.isfinite(stats[0]) else "gradient",
            bad if bool(bad.any()) else level_cnt,
            setup.sigmas,
            state.step + 1,
        )
        return res
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update(state.model)
    state.step += 1
    return res


def _non_finite_message(what: str, levels: torch.Tensor, sigmas: torch.Tensor, step: int) -> str:
    names = ", ".join(f"{float(sigmas[i]):.3g}" for i in levels.nonzero().flatten()[:5])
    return f"non-finite {what} at step {step} (noise levels {names})"
