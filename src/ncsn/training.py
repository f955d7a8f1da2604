"""Training: annealed score matching with Adam, EMA, checkpoints and exact resume.

:func:`train` is what ``ncsn train`` calls. A run lives in one folder (the workdir) holding the
resolved config, checkpoints, ``metrics.jsonl``, TensorBoard events and sample grids. Here the
run is set up (data, model, state, execution options, processes); the pieces live in
:mod:`ncsn.train_state` (what a checkpoint holds), :mod:`ncsn.train_step` (one optimisation
step) and :mod:`ncsn.train_loop` (logging, evaluation, sample grids, checkpoints, signals).

Guarantees:
- checkpoints are written atomically and hold every piece of state (weights, EMA, optimizer,
  step, data order, RNG states), so a run stopped at step k and resumed gives, on the CPU,
  bit-identical losses and weights to a run that never stopped;
- SIGINT/SIGTERM finish the current step, write a checkpoint and stop (exit codes 130/143);
- a non-finite loss or gradient stops the run (or is skipped, up to ``max_bad_steps``)
  naming the step and noise levels, keeping the last good checkpoint;
- under ``torchrun`` the config's ``batch_size`` is the global batch, split across the
  processes; a checkpoint written with N processes resumes with any number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn import checkpoint as ckpt
from ncsn.acceleration import apply_activation_checkpointing, check_precision, compile_or_eager
from ncsn.api import build_model, model_sigmas
from ncsn.config import Config, save_config
from ncsn.data import as_tensor, default_random_flip, get_dataset
from ncsn.distributed import Dist, init_distributed
from ncsn.edm import resolve_data_statistics
from ncsn.errors import NCSNError
from ncsn.lock import WorkdirLock, make_workdir, missing_dirs
from ncsn.perf import tune_allocator
from ncsn.train_loop import Interrupted, Loop, NonFiniteError, TrainResult
from ncsn.train_state import EMA, TrainState, global_batch_size, new_state
from ncsn.train_step import StepSetup
from ncsn.workdir import check_disk, prepare_workdir

__all__ = ["train", "TrainResult", "EMA", "resolve_config", "Interrupted", "NonFiniteError"]


def _resolve_data(cfg: Config, dataset):
    d = cfg.data
    kw = dict(
        root=d.root,
        image_size=d.image_size,
        channels=d.channels,
        val_size=d.val_size,
    )
    if dataset is not None:
        from ncsn.data import wrap_dataset

        train_ds, val_ds = wrap_dataset(dataset), None
    else:
        train_ds = get_dataset(d.dataset, split="train", **kw)
        val_ds = get_dataset(d.dataset, split="val", **kw) if d.val_size else None
    return train_ds, val_ds


def resolve_config(cfg: Config, train_ds) -> Config:
    """Fill in what the data decide (channels, image size, flips) so the run folder is complete."""
    first = train_ds[0][0]
    data = dataclasses.replace(
        cfg.data,
        channels=cfg.data.channels or int(first.shape[0]),
        image_size=cfg.data.image_size or int(first.shape[-1]),
        random_flip=bool(
            cfg.data.random_flip
            if cfg.data.random_flip is not None
            else default_random_flip(cfg.data.dataset)
        ),
    )
    return resolve_data_statistics(dataclasses.replace(cfg, data=data), train_ds)


def _on_main(d: Dist, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 and give its result (or its error) to every rank."""
    result, error = None, None
    if d.is_main:
        try:
            result = fn()
        except Exception as e:
            error = e
    if d.enabled:
        message = None if error is None else str(error)
        result, message = d.broadcast((result, message))
        if message is not None and error is None:
            error = NCSNError(message)
            error.quiet = True  # rank 0 reports it
    if error is not None:
        raise error
    return result


def _prepare_workdir(workdir: Path, cfg: Config, model, resume, overwrite, log) -> bool:
    resuming = prepare_workdir(workdir, cfg, resume, overwrite)
    for f in ckpt.remove_stale_temporaries(workdir):
        log(f"removed {f.name}, an incomplete checkpoint left by an interrupted run")
    check_disk(workdir, model)
    return resuming


def _read_latest(workdir: Path) -> tuple[Path, dict[str, Any]]:
    path = ckpt.find_checkpoint(workdir)
    return path, ckpt.read_checkpoint(path)


def step_setup(cfg: Config, state: TrainState, d: Dist, micro: tuple, log) -> StepSetup:
    """Wrap the state's model for the execution options (checkpointing, compile, DDP).

    Args:
        cfg: The resolved config.
        state: The training state (its model is wrapped in place for checkpointing).
        d: This process among the training processes.
        micro: Shape of one micro-batch ``(m, C, H, W)`` (for the compile trial).
        log: Receives the warning line of a failed compilation.

    Returns:
        The :class:`ncsn.train_step.StepSetup` that :func:`ncsn.train_step.train_step` takes.
    """
    training = cfg.training
    check_precision(training.precision, d.device)
    model: nn.Module = state.model
    if training.activation_checkpointing:
        apply_activation_checkpointing(model)
    sigmas = model_sigmas(cfg).to(d.device)
    setup = StepSetup(cfg, model, None, sigmas, d)
    if training.compile:
        compiled, ok = compile_or_eager(model, lambda net: _trial(setup, net, micro), log)
        ok = bool(d.max_(torch.tensor([0.0 if ok else 1.0])).item() == 0)
        setup.net = compiled if ok else model
    if d.enabled:
        ids = [d.device] if d.device.type == "cuda" else None
        setup.ddp = nn.parallel.DistributedDataParallel(setup.net, device_ids=ids)
        setup.net = setup.ddp
    return setup


def _trial(setup: StepSetup, net: nn.Module, shape: tuple) -> None:
    """One forward and backward pass of ``net`` on a zero micro-batch (compiles it)."""
    devices = [setup.dist.device] if setup.dist.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        x = torch.zeros(shape, device=setup.dist.device)
        trial = dataclasses.replace(setup, net=net)
        trial.score_fn(x, setup.sigmas[:1].expand(shape[0])).float().sum().backward()
    for p in net.parameters():
        p.grad = None


def train(
    cfg: Config,
    workdir: str | Path,
    *,
    resume: bool | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    dataset: torch.utils.data.Dataset | None = None,
    max_steps: int | None = None,
    log: Any = print,
) -> TrainResult:
    """Train a score network (in one process, or in each process that ``torchrun`` starts).

    Args:
        cfg: The config (see :mod:`ncsn.config`).
        workdir: The run folder (created if missing).
        resume: True: continue the run in ``workdir`` (error if none). None (default): continue
            it when its config matches, start fresh when the folder is empty, refuse otherwise.
            False: refuse a folder that holds a run unless ``overwrite``.
        overwrite: Replace the run in ``workdir``.
        device: Torch device (with several processes, ``cuda`` means ``cuda:LOCAL_RANK``).
        progress: Show a progress bar.
        dataset: Train on this dataset instead of ``cfg.data`` (items ``(image, label)``).
        max_steps: Stop after this many steps in this call (the run can be resumed later).
        log: Function for one-line messages (called on rank 0 only).

    Returns:
        :class:`TrainResult`.
    """
    tune_allocator()
    d = init_distributed(torch.device(device))
    locks: list[WorkdirLock] = []
    created = missing_dirs(workdir)  # removed again if the run fails before writing anything

    def lock() -> None:  # one writer per workdir: rank 0 holds its lock
        locks.append(WorkdirLock(make_workdir(workdir)).acquire())

    try:
        _on_main(d, lock)
        return _train(cfg, Path(workdir), d, resume, overwrite, progress, dataset, max_steps, log)
    finally:
        for held in locks:
            held.discard_if_unused(created)
            held.release()
        d.close()


def _train(cfg, workdir, d: Dist, resume, overwrite, progress, dataset, max_steps, log):
    log = log if d.is_main else (lambda message: None)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    train_ds, val_ds = _resolve_data(cfg, dataset)
    cfg = resolve_config(cfg, train_ds)
    batch = global_batch_size(cfg, len(train_ds), d.world_size)
    torch.manual_seed(cfg.training.seed)
    per_step = max(1, batch // (d.world_size * cfg.training.accumulate))  # one forward's batch
    model = build_model(cfg, batch_size=per_step, device=d.device).to(d.device)  # memory checked
    if cfg.training.channels_last:
        model = model.to(memory_format=torch.channels_last)
    resuming = _on_main(d, lambda: _prepare_workdir(workdir, cfg, model, resume, overwrite, log))
    state = new_state(cfg, model, train_ds, batch, d.rank, d.world_size)
    last = None
    if resuming:
        last, st = _on_main(d, lambda: _read_latest(workdir))
        if not state.load_state_dict(st, last):
            log(
                f"{last.name} holds weights only (no optimizer, data-order or noise state): "
                "fine-tuning with a fresh Adam optimizer and fresh random streams"
            )
        log(f"resuming {workdir} from step {state.step} ({last.name})")
    if d.is_main:
        save_config(cfg, workdir / "config.yaml")
    micro = (batch // (d.world_size * cfg.training.accumulate), *train_ds[0][0].shape)
    setup = step_setup(cfg, state, d, micro, log)
    val = as_tensor(val_ds)[0] if d.is_main and val_ds is not None and len(val_ds) else None
    loop = Loop(
        state,
        setup,
        workdir,
        val,
        max_steps=max_steps,
        log=log,
        progress=progress,
        last_checkpoint=last,
    )
    return loop.run()
