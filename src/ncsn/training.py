"""Training: annealed score matching with Adam, EMA, checkpoints and exact resume.

:func:`train` is what ``ncsn train`` calls. A run lives in one folder (the workdir) holding the
resolved config, checkpoints, ``metrics.jsonl``, TensorBoard events and sample grids.

Guarantees:
- checkpoints are written atomically and hold every piece of state (weights, EMA, optimizer,
  step, data order, RNG states), so a run stopped at step k and resumed gives, on the CPU,
  bit-identical losses and weights to a run that never stopped;
- SIGINT/SIGTERM finish the current step, write a checkpoint and stop (exit codes 130/143);
- a non-finite loss or gradient stops the run (or is skipped, up to ``max_bad_steps``)
  naming the step and noise levels, keeping the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn import checkpoint as ckpt
from ncsn.api import build_model, model_sigmas, sample
from ncsn.config import Config, save_config
from ncsn.data import as_tensor, get_dataset
from ncsn.edm import dsm_loss_options, resolve_data_statistics
from ncsn.errors import NCSNError
from ncsn.imaging import save_image_grid
from ncsn.lock import exclusive_workdir
from ncsn.losses import anneal_dsm_loss, anneal_sliced_score_matching_loss
from ncsn.perf import tune_allocator
from ncsn.signals import SignalAbort, StopSignals
from ncsn.transforms import preprocess, random_hflip
from ncsn.workdir import (
    FLIP_BY_DEFAULT,
    MetricsLog,
    check_disk,
    check_resume_state,
    prepare_workdir,
)

__all__ = ["train", "TrainResult", "EMA", "resolve_config", "Interrupted", "NonFiniteError"]


class Interrupted(NCSNError):
    """Training stopped by a signal after writing a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteError(NCSNError):
    """A non-finite loss or gradient."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    workdir: Path
    step: int
    last_loss: float
    checkpoint: Path | None
    stopped: str  # "done", "time_limit", "max_steps"


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, rate: float):
        self.rate = rate
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v, 1.0 - self.rate)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


def _resolve_data(cfg: Config, dataset):
    d = cfg.data
    kw = dict(
        root=d.root,
        image_size=d.image_size,
        channels=d.channels,
        random_flip=False,
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
            else cfg.data.dataset in FLIP_BY_DEFAULT
        ),
    )
    return resolve_data_statistics(dataclasses.replace(cfg, data=data), train_ds)


class _Batches:
    """Shuffled mini-batches with a resumable position.

    In-memory splits (digits, MNIST, CIFAR-10) are indexed as uint8/float tensors and converted
    per batch; file-backed splits (folders, CelebA) are decoded per batch.
    """

    def __init__(self, ds, batch_size: int, generator: torch.Generator):
        self.ds, self.bs, self.g = ds, batch_size, generator
        self.perm = torch.randperm(len(ds), generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.bs > len(self.perm):
            self.perm = torch.randperm(len(self.ds), generator=self.g)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.bs]
        self.pos += self.bs
        return self.ds.get_batch(idx, augment=False)[0]

    def state(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos, "gen": self.g.get_state()}

    def load(self, st: dict[str, Any]) -> None:
        self.perm, self.pos = st["perm"], int(st["pos"])
        self.g.set_state(st["gen"])


def _batch_size_for(n_train: int, bs: int) -> int:
    if n_train < 1:
        raise NCSNError("the training split is empty; use a larger data set or val_size=0")
    return min(bs, n_train)


def _loss_fn(cfg: Config, model, x, sigmas, g):
    t = cfg.training
    if t.loss == "dsm":
        return anneal_dsm_loss(model, x, sigmas, generator=g, **dsm_loss_options(cfg, x, sigmas, g))
    return anneal_sliced_score_matching_loss(
        model,
        x,
        sigmas,
        power=t.loss_power,
        n_projections=t.n_projections,
        variance_reduction=t.loss == "ssm_vr",
        generator=g,
    )


def _lr_at(cfg: Config, step: int) -> float:
    t = cfg.training
    return t.lr * min(1.0, (step + 1) / t.warmup) if t.warmup else t.lr


def _heldout(model, val_images, sigmas, cfg, device) -> dict[str, Any]:
    from ncsn.metrics.heldout import heldout_dsm_loss

    x = preprocess(val_images.to(device), dequantize=False, logit=cfg.data.logit_transform)
    return heldout_dsm_loss(model, x, sigmas, seed=0, power=cfg.training.loss_power)


@exclusive_workdir  # one writer per workdir: a second train on it stops with one line
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
    """Train a score network.

    Args:
        cfg: The config (see :mod:`ncsn.config`).
        workdir: The run folder (created if missing).
        resume: True: continue the run in ``workdir`` (error if none). None (default): continue
            it when its config matches, start fresh when the folder is empty, refuse otherwise.
            False: refuse a folder that holds a run unless ``overwrite``.
        overwrite: Replace the run in ``workdir``.
        device: Torch device.
        progress: Show a progress bar.
        dataset: Train on this dataset instead of ``cfg.data`` (items ``(image, label)``).
        max_steps: Stop after this many steps in this call (the run can be resumed later).
        log: Function for one-line messages.

    Returns:
        :class:`TrainResult`.
    """
    tune_allocator()
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NCSNError(
            f"cannot create workdir {workdir} ({e.strerror}); choose another --workdir"
        ) from None
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    device = torch.device(device)
    train_ds, val_ds = _resolve_data(cfg, dataset)
    cfg = resolve_config(cfg, train_ds)
    resuming = prepare_workdir(workdir, cfg, resume, overwrite)
    for f in ckpt.remove_stale_temporaries(workdir):
        log(f"removed {f.name}, an incomplete checkpoint left by an interrupted run")

    torch.manual_seed(cfg.training.seed)
    model = build_model(cfg).to(device)
    check_disk(workdir, model)
    t = cfg.training
    opt = torch.optim.Adam(
        model.parameters(),
        lr=t.lr,
        betas=(t.beta1, t.beta2),
        eps=t.adam_eps,
        weight_decay=t.weight_decay,
    )
    ema = EMA(model, t.ema_rate) if t.ema_rate is not None else None
    sigmas = model_sigmas(cfg).to(device)
    batches = _Batches(
        train_ds,
        _batch_size_for(len(train_ds), t.batch_size),
        torch.Generator().manual_seed(t.seed),
    )
    g_noise = torch.Generator().manual_seed(t.seed + 1)
    step = 0
    if resuming:
        path = ckpt.find_checkpoint(workdir)
        step = _restore(ckpt.read_checkpoint(path), path, model, opt, ema, batches, g_noise, log)
        log(f"resuming {workdir} from step {step} ({path.name})")
    save_config(cfg, workdir / "config.yaml")
    val_images = as_tensor(val_ds)[0] if val_ds is not None and len(val_ds) else None

    def save(step_now: int) -> Path:
        state = {
            "config": cfg.to_dict(),
            "step": step_now,
            "model": model.state_dict(),
            "ema": ema.shadow if ema else None,
            "optimizer": opt.state_dict(),
            "data": batches.state(),
            "noise_rng": g_noise.get_state(),
        }
        with signals.protect():  # a second signal does not abort the write
            return ckpt.write_run_checkpoint(
                workdir, step_now, state, t.keep_checkpoints, t.milestone_every
            )

    logger = MetricsLog(workdir, step, t.tensorboard)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=t.n_iters,
        initial=step,
        desc="training",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    start_time, steps_here, bad, last_loss, stopped = time.time(), 0, 0, math.nan, "done"
    last_path: Path | None = ckpt.find_checkpoint(workdir) if resuming else None
    level_sum = torch.zeros(len(sigmas), dtype=torch.float64)
    level_cnt = torch.zeros(len(sigmas), dtype=torch.float64)
    signals = StopSignals()
    try:
        with signals:
            while step < t.n_iters:
                model.train()
                x = batches.next().to(device)
                if cfg.data.random_flip:
                    x = random_hflip(x, generator=g_noise)
                x = preprocess(
                    x,
                    dequantize=cfg.data.dequantize,
                    logit=cfg.data.logit_transform,
                    generator=g_noise,
                )
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, step)
                out = _loss_fn(cfg, model, x, sigmas, g_noise)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(
                    model.parameters(), t.grad_clip if t.grad_clip else float("inf")
                )
                if not (torch.isfinite(out.loss) and torch.isfinite(grad_norm)):
                    bad += 1
                    msg = _non_finite_message(out, sigmas, step + 1)
                    if bad > t.max_bad_steps:
                        raise NonFiniteError(
                            f"{msg}; stopped, last good checkpoint kept"
                            f"{f' ({last_path.name})' if last_path else ''}: lower training.lr "
                            "or set training.grad_clip, or check the sigma range against the data"
                        )
                    log(f"{msg}; skipped ({bad}/{t.max_bad_steps})")
                    opt.zero_grad(set_to_none=True)
                    continue
                opt.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                steps_here += 1
                last_loss = float(out.loss.detach())
                lv_loss = torch.nan_to_num(out.per_level.double()) * out.counts
                level_sum += lv_loss.cpu()
                level_cnt += out.counts.double().cpu()
                bar.update(1)
                if step % t.log_every == 0 or step == t.n_iters:
                    per = (level_sum / level_cnt.clamp(min=1)).tolist()
                    per = [p if c else None for p, c in zip(per, level_cnt.tolist(), strict=True)]
                    rec = {
                        "step": step,
                        "loss": last_loss,
                        "lr": _lr_at(cfg, step - 1),
                        "grad_norm": float(grad_norm),
                        "loss_per_level": per,
                        "elapsed_s": round(time.time() - start_time, 2),
                    }
                    logger.write(rec)
                    level_sum.zero_()
                    level_cnt.zero_()
                    bar.set_postfix(loss=f"{last_loss:.4g}")
                if t.eval_every and val_images is not None and step % t.eval_every == 0:
                    eval_model = _ema_model(model, ema)
                    res = _heldout(eval_model, val_images, sigmas, cfg, device)
                    logger.write(
                        {
                            "step": step,
                            "val_dsm": res["loss"],
                            "val_dsm_per_level": res["per_level"],
                            "val_denoiser_mse": res["denoiser_mse"],
                            "val_mean_image_mse": res["mean_image_mse"],
                        }
                    )
                    from ncsn.metrics.heldout import unlearned_summary

                    log(f"step {step}: validation DSM {res['loss']:.4g}; {unlearned_summary(res)}")
                if t.sample_every and step % t.sample_every == 0:
                    _sample_grid(_ema_model(model, ema), cfg, workdir, step)
                reached_time = t.time_limit and (time.time() - start_time) / 60 >= t.time_limit
                reached_max = max_steps is not None and steps_here >= max_steps
                if (
                    step % t.checkpoint_every == 0
                    or step == t.n_iters
                    or reached_time
                    or reached_max
                    or signals.signum is not None
                ):
                    last_path = save(step)
                if signals.signum is not None:
                    name = signal.Signals(signals.signum).name
                    raise Interrupted(
                        f"stopped by {name} at step {step}; checkpoint "
                        f"{last_path.name} written; resume with --resume",
                        signals.signum,
                    )
                if reached_time or reached_max:
                    stopped = "time_limit" if reached_time else "max_steps"
                    break
    except SignalAbort as e:  # a second signal during a step: that step is not saved
        kept = (
            f"the last checkpoint ({last_path.name}) is intact"
            if last_path
            else "no checkpoint was written yet"
        )
        raise Interrupted(
            f"stopped by a second {e} during step {step + 1}; {kept}: run the same command "
            "again to continue",
            e.signum,
        ) from None
    finally:
        bar.close()
        logger.close()
    if step >= t.n_iters and (
        last_path is None or not last_path.name.endswith(f"{step:08d}.safetensors")
    ):
        last_path = save(step)
    return TrainResult(workdir, step, last_loss, last_path, stopped)


def _restore(st, path: Path, model, opt, ema, batches, g_noise, log) -> int:
    """Load a checkpoint's training state; returns its step.

    A checkpoint without optimizer, data-order or noise state (``ncsn import-official``
    writes weights only) starts those fresh from ``training.seed``: fine-tuning, not an
    exact continuation.
    """
    check_resume_state(st, model, len(batches.ds), path)
    model.load_state_dict(st["model"])
    if ema is not None and st.get("ema") is not None:
        ema.shadow = {k: v.to(next(model.parameters()).device) for k, v in st["ema"].items()}
    if st.get("optimizer") is None:
        log(
            f"{path.name} holds weights only (no optimizer, data-order or noise state): "
            "fine-tuning with a fresh Adam optimizer and fresh random streams"
        )
    else:
        opt.load_state_dict(st["optimizer"])
        batches.load(st["data"])
        g_noise.set_state(st["noise_rng"])
    return int(st["step"])


def _non_finite_message(out, sigmas: torch.Tensor, step: int) -> str:
    bad_levels = out.levels[~torch.isfinite(out.per_level[out.levels])]
    levels = sorted({int(i) for i in (bad_levels if len(bad_levels) else out.levels)})
    what = "loss" if not torch.isfinite(out.loss) else "gradient"
    names = ", ".join(f"{float(sigmas[i]):.3g}" for i in levels[:5])
    return f"non-finite {what} at step {step} (noise levels {names})"


def _ema_model(model: nn.Module, ema: EMA | None) -> nn.Module:
    if ema is None:
        return model.eval()
    import copy

    m = copy.deepcopy(model)
    ema.copy_to(m)
    return m.eval()


def _sample_grid(model: nn.Module, cfg: Config, workdir: Path, step: int) -> None:
    folder = workdir / "samples"
    folder.mkdir(exist_ok=True)
    x = sample(model, cfg, 36, seed=0)
    scale = max(1, 64 // cfg.data.image_size)
    save_image_grid(x, folder / f"step_{step:08d}.png", nrow=6, scale=scale)
