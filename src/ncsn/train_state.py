"""The training state: everything a checkpoint holds and a resumed run needs.

:class:`TrainState` bundles the model, its EMA, the optimizer, the step, the data order
(:class:`Batches`) and the noise generator, with ``state_dict()`` / ``load_state_dict()``
in the checkpoint layout ncsn has always written (``step``, ``model``, ``ema``,
``optimizer``, ``data``, ``noise_rng``).

With several processes every rank holds the same state: the same seeded permutation of the
data (each rank reads its own slice of every global batch) and the same noise generator
(each rank uses its slice of the draws of the whole batch). A checkpoint written by rank 0
therefore resumes with any number of processes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn.config import Config
from ncsn.errors import NCSNError

__all__ = ["EMA", "Batches", "TrainState", "new_state"]


class EMA:
    """Exponential moving average of a model, kept as a persistent frozen copy of it.

    ``ema.module`` is an ``nn.Module`` in eval mode that evaluation and sample grids use
    directly (no copy per evaluation). Floating-point parameters and buffers follow
    ``shadow <- rate * shadow + (1 - rate) * value``; other buffers are copied.

    Args:
        model: The model to follow (copied now: call before wrapping it for speed).
        rate: The decay rate.
    """

    def __init__(self, model: nn.Module, rate: float):
        self.rate = rate
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights."""
        own, new = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in own.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([own[k] for k in floats], [new[k] for k in floats], 1.0 - self.rate)
        for k, v in own.items():
            if not v.dtype.is_floating_point:
                v.copy_(new[k])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (the checkpoint's ``ema`` entry)."""
        return self.module.state_dict()

    def load_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights."""
        self.module.load_state_dict(weights)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.module.state_dict())


class Batches:
    """Shuffled global batches with a resumable position, read as this rank's slice.

    The permutation is drawn from a seeded generator that every rank holds in the same
    state; global batch ``b`` is ``perm[pos : pos + batch_size]`` and rank ``r`` of ``n``
    reads its ``r``-th contiguous ``batch_size / n`` of it. In-memory splits (digits,
    MNIST, CIFAR-10) are indexed as tensors; file-backed splits decode only this rank's
    images.

    Args:
        ds: The training split (an :class:`ncsn.data.ImageDataset`).
        batch_size: The global batch size.
        generator: The data-order generator.
        rank: This process's rank.
        world_size: Number of processes (must divide ``batch_size``).
    """

    def __init__(
        self,
        ds,
        batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.ds, self.batch_size, self.g = ds, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.perm = torch.randperm(len(ds), generator=generator)
        self.pos = 0

    @property
    def local_size(self) -> int:
        """Examples per batch on this rank."""
        return self.batch_size // self.world_size

    def next(self) -> torch.Tensor:
        """This rank's images of the next global batch, float32 in [0, 1]."""
        if self.pos + self.batch_size > len(self.perm):
            self.perm = torch.randperm(len(self.ds), generator=self.g)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        n = self.local_size
        return self.ds.get_batch(idx[self.rank * n : (self.rank + 1) * n])[0]

    def state_dict(self) -> dict[str, Any]:
        """Permutation, position and generator state (the checkpoint's ``data`` entry)."""
        return {"perm": self.perm, "pos": self.pos, "gen": self.g.get_state()}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.perm, self.pos = st["perm"], int(st["pos"])
        self.g.set_state(st["gen"])


class TrainState:
    """Model, EMA, optimizer, step, data order and noise generator of a run.

    Attributes:
        model: The score network (never wrapped: its ``state_dict`` keys are the model's).
        ema: The weight average, or None.
        optimizer: Adam over ``model``'s parameters.
        batches: The data order.
        noise: Generator of every random draw of a step (flips, dequantisation, noise
            levels, perturbations, projections).
        step: Optimisation steps done.
    """

    def __init__(
        self,
        model: nn.Module,
        ema: EMA | None,
        optimizer: torch.optim.Optimizer,
        batches: Batches,
        noise: torch.Generator,
        step: int = 0,
    ):
        self.model, self.ema, self.optimizer = model, ema, optimizer
        self.batches, self.noise, self.step = batches, noise, step

    def state_dict(self) -> dict[str, Any]:
        """The state in the checkpoint layout (without the config)."""
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "data": self.batches.state_dict(),
            "noise_rng": self.noise.get_state(),
        }

    def load_state_dict(self, st: dict[str, Any], where: Path) -> bool:
        """Restore a state read from a checkpoint (this or an earlier ncsn version's).

        A checkpoint holding weights only (``ncsn import-official`` writes those) restores the
        weights and the step; optimizer, data order and noise stay fresh from
        ``training.seed`` (fine-tuning, not an exact continuation), and a missing EMA starts
        from the weights.

        Args:
            st: The checkpoint's state (tensors on any device).
            where: The checkpoint file (named in errors; its name must match the step).

        Returns:
            Whether the whole training state was restored (False: weights only).

        Raises:
            CheckpointError: A state that does not fit the run, before anything is loaded.
        """
        from ncsn.workdir import check_resume_state

        check_resume_state(st, self.model, len(self.batches.ds), where)
        self.model.load_state_dict(st["model"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"] if st.get("ema") is not None else st["model"])
        self.step = int(st["step"])
        if st.get("optimizer") is None:
            return False
        self.optimizer.load_state_dict(st["optimizer"])
        self.batches.load_state_dict(st["data"])
        self.noise.set_state(st["noise_rng"])
        return True


def global_batch_size(cfg: Config, n_train: int, world_size: int) -> int:
    """The global batch (``training.batch_size``, at most the split), checked for splitting.

    Raises:
        NCSNError: An empty split, or a batch that processes x accumulation does not divide.
    """
    if n_train < 1:
        raise NCSNError("the training split is empty; use a larger data set or val_size=0")
    training = cfg.training
    batch = min(training.batch_size, n_train)
    parts = world_size * training.accumulate
    if batch % parts:
        what = f"training.batch_size={training.batch_size}"
        if batch != training.batch_size:
            what += f" (cut to the {n_train} training images)"
        raise NCSNError(
            f"{what} does not split into {world_size} process(es) x training.accumulate="
            f"{training.accumulate} equal micro-batches; use a batch size that is a multiple "
            f"of {parts}"
        )
    return batch


def new_state(
    cfg: Config, model: nn.Module, train_ds, batch_size: int, rank: int, world_size: int
) -> TrainState:
    """A fresh state for ``model`` (already on its device and in its memory format)."""
    training = cfg.training
    ema = EMA(model, training.ema_rate) if training.ema_rate is not None else None
    opt = torch.optim.Adam(
        model.parameters(),
        lr=training.lr,
        betas=(training.beta1, training.beta2),
        eps=training.adam_eps,
        weight_decay=training.weight_decay,
    )
    batches = Batches(
        train_ds, batch_size, torch.Generator().manual_seed(training.seed), rank, world_size
    )
    return TrainState(model, ema, opt, batches, torch.Generator().manual_seed(training.seed + 1))
