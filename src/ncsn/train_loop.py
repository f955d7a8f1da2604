"""The training loop: steps, and around them logging, evaluation, sample grids, checkpoints
and signals.

Only rank 0 writes (metrics, sample grids, checkpoints); the other ranks wait at a barrier
while it does. Decisions that could differ between processes (a signal arrived, the time
limit passed) are agreed on by all of them after every step, so every rank stops at the
same step and rank 0's checkpoint holds it.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn import checkpoint as ckpt
from ncsn.api import sample
from ncsn.config import Config
from ncsn.errors import NCSNError
from ncsn.imaging import save_image_grid
from ncsn.signals import SignalAbort, StopSignals
from ncsn.train_state import TrainState
from ncsn.train_step import StepResult, StepSetup, lr_at, train_step
from ncsn.transforms import preprocess
from ncsn.workdir import MetricsLog

__all__ = ["Interrupted", "NonFiniteError", "TrainResult", "Loop"]


class Interrupted(NCSNError):
    """Training stopped by a signal after writing a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteError(NCSNError):
    """A non-finite loss or gradient."""


@dataclass
class TrainResult:
    """What :func:`ncsn.training.train` returns."""

    workdir: Path
    step: int
    last_loss: float
    checkpoint: Path | None
    stopped: str  # "done", "time_limit", "max_steps"


def _follower(err: NCSNError, is_main: bool) -> NCSNError:
    """Mark errors that ranks other than 0 share with rank 0 (the CLI prints rank 0's)."""
    err.quiet = not is_main
    return err


class Loop:
    """Runs steps until the run is done, stopped or interrupted.

    Args:
        state: The training state.
        setup: How steps run.
        workdir: The run folder (written by rank 0 only).
        val_images: Held-out images for ``training.eval_every`` (rank 0), or None.
        max_steps: Stop after this many steps of this call.
        log: One-line messages (rank 0).
        progress: Show a progress bar (rank 0).
        last_checkpoint: The checkpoint the run resumed from, if any.
    """

    def __init__(
        self,
        state: TrainState,
        setup: StepSetup,
        workdir: Path,
        val_images: torch.Tensor | None,
        *,
        max_steps: int | None,
        log: Any,
        progress: bool,
        last_checkpoint: Path | None,
    ):
        self.state, self.setup, self.cfg = state, setup, setup.cfg
        self.dist = setup.dist
        self.workdir, self.val_images, self.max_steps = workdir, val_images, max_steps
        self.log, self.progress, self.last_path = log, progress, last_checkpoint
        self.last_loss, self.grad_norm, self.bad, self.steps_here = math.nan, 0.0, 0, 0
        levels = self.cfg.model.num_levels
        self.level_sum = torch.zeros(levels, dtype=torch.float64)
        self.level_cnt = torch.zeros(levels, dtype=torch.float64)

    def run(self) -> TrainResult:
        """Train to ``training.n_iters`` (or the first stop) and return what happened."""
        training, st = self.cfg.training, self.state
        self.logger = (
            MetricsLog(self.workdir, st.step, training.tensorboard) if self.dist.is_main else None
        )
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=training.n_iters,
            initial=st.step,
            desc="training",
            unit="step",
            disable=not (self.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        self.start, self.signals = time.time(), StopSignals()
        try:
            with self.signals:
                stopped = self._steps()
        except SignalAbort as e:  # a second signal during a step: that step is not saved
            raise _follower(self._aborted(e), self.dist.is_main) from None
        finally:
            self.bar.close()
            if self.logger is not None:
                self.logger.close()
        last = self.last_path
        if st.step >= training.n_iters and (last is None or last.name != self._path().name):
            self._checkpoint()
        return TrainResult(self.workdir, st.step, self.last_loss, self.last_path, stopped)

    def _steps(self) -> str:
        """Step until done ("done"), a limit ("time_limit", "max_steps") or a signal (raises)."""
        st = self.state
        while st.step < self.cfg.training.n_iters:
            res = train_step(st, self.setup)
            if not res.ok:
                self._bad_step(res)
                continue
            self._record(res)
            signum, why = self._agree_on_stop()
            if self._after_step(stopping=bool(signum or why)) and not signum:
                signum = self._agree_on_signal()  # one that came while rank 0 was writing
                if signum and self.last_path != self._path():
                    self._checkpoint()
            if signum:
                name = signal.Signals(signum).name
                message = (
                    f"stopped by {name} at step {st.step}; checkpoint {self.last_path.name} "
                    "written; resume with --resume"
                )
                raise _follower(Interrupted(message, signum), self.dist.is_main)
            if why:
                return why
        return "done"

    def _aborted(self, e: SignalAbort) -> Interrupted:
        last = self.last_path
        kept = f"the last checkpoint ({last.name}) is intact" if last else "no checkpoint yet"
        return Interrupted(
            f"stopped by a second {e} during step {self.state.step + 1}; {kept}: run the same "
            "command again to continue",
            e.signum,
        )

    def _bad_step(self, res: StepResult) -> None:
        self.bad += 1
        training = self.cfg.training
        if self.bad > training.max_bad_steps:
            kept = (
                f"last good checkpoint kept ({self.last_path.name})"
                if self.last_path
                else "no checkpoint written yet"
            )
            raise _follower(
                NonFiniteError(
                    f"{res.message}; stopped, {kept}: lower training.lr or set "
                    "training.grad_clip, or check the sigma range against the data"
                ),
                self.dist.is_main,
            )
        self.log(f"{res.message}; skipped ({self.bad}/{training.max_bad_steps})")

    def _record(self, res: StepResult) -> None:
        self.steps_here += 1
        self.last_loss, self.grad_norm = res.loss, res.grad_norm
        self.level_sum += res.level_sum
        self.level_cnt += res.level_cnt
        self.bar.update(1)

    def _agree_on_stop(self) -> tuple[int, str]:
        """(signal number or 0, "time_limit"/"max_steps"/""), the same on every rank."""
        training = self.cfg.training
        late = bool(training.time_limit and (time.time() - self.start) / 60 >= training.time_limit)
        flags = torch.tensor([float(self.signals.signum or 0), float(late)], dtype=torch.float64)
        signum, late = (int(v) for v in self.dist.max_(flags).tolist())
        if late:
            return signum, "time_limit"
        enough = self.max_steps is not None and self.steps_here >= self.max_steps
        return signum, "max_steps" if enough else ""

    def _agree_on_signal(self) -> int:
        flag = torch.tensor([float(self.signals.signum or 0)], dtype=torch.float64)
        return int(self.dist.max_(flag).item())

    def _after_step(self, stopping: bool) -> bool:
        """Log, evaluate, draw a grid, checkpoint as scheduled; whether rank 0 wrote files."""
        training, step = self.cfg.training, self.state.step
        if step % training.log_every == 0 or step == training.n_iters:
            self._log_line()
        evaluate = bool(
            training.eval_every and self.val_images is not None and step % training.eval_every == 0
        )
        grid = bool(training.sample_every and step % training.sample_every == 0)
        save = step % training.checkpoint_every == 0 or step == training.n_iters or stopping
        if self.dist.is_main and evaluate:
            self._evaluate()
        if self.dist.is_main and grid:
            self._sample_grid()
        if save:
            self._checkpoint()
        elif evaluate or grid:
            self.dist.barrier()
        return save or evaluate or grid

    def _log_line(self) -> None:
        per = (self.level_sum / self.level_cnt.clamp(min=1)).tolist()
        per = [p if c else None for p, c in zip(per, self.level_cnt.tolist(), strict=True)]
        step = self.state.step
        rec = {
            "step": step,
            "loss": self.last_loss,
            "lr": lr_at(self.cfg, step - 1),
            "grad_norm": self.grad_norm,
            "loss_per_level": per,
            "elapsed_s": round(time.time() - self.start, 2),
        }
        if self.logger is not None:
            self.logger.write(rec)
        self.level_sum.zero_()
        self.level_cnt.zero_()
        self.bar.set_postfix(loss=f"{self.last_loss:.4g}")

    def _eval_model(self) -> nn.Module:
        ema = self.state.ema
        return ema.module if ema is not None else self.state.model.eval()

    def _evaluate(self) -> None:
        from ncsn.metrics.heldout import heldout_dsm_loss, unlearned_summary

        cfg, device, step = self.cfg, self.dist.device, self.state.step
        x = preprocess(self.val_images.to(device), dequantize=False, logit=cfg.data.logit_transform)
        res = heldout_dsm_loss(
            self._eval_model(), x, self.setup.sigmas, seed=0, power=cfg.training.loss_power
        )
        rec = {
            "step": step,
            "val_dsm": res["loss"],
            "val_dsm_per_level": res["per_level"],
            "val_denoiser_mse": res["denoiser_mse"],
            "val_mean_image_mse": res["mean_image_mse"],
        }
        self.logger.write(rec)
        self.log(f"step {step}: validation DSM {res['loss']:.4g}; {unlearned_summary(res)}")

    def _sample_grid(self) -> None:
        folder = self.workdir / "samples"
        folder.mkdir(exist_ok=True)
        x = sample(self._eval_model(), self.cfg, 36, seed=0)
        save_image_grid(x, folder / f"step_{self.state.step:08d}.png", nrow=6)

    def _path(self) -> Path:
        return ckpt.checkpoint_path(self.workdir, self.state.step)

    def _checkpoint(self) -> None:
        """Rank 0 writes a checkpoint of the current step; the others wait for it."""
        path = self._path()
        if self.dist.is_main:
            with self.signals.protect():  # a second signal does not abort the write
                save_checkpoint(self.workdir, self.cfg, self.state)
        self.dist.barrier()
        self.last_path = path


def save_checkpoint(workdir: Path, cfg: Config, state: TrainState) -> Path:
    """Write ``state`` as the checkpoint of its step, point ``latest`` at it, prune old ones."""
    training = cfg.training
    full = {"config": cfg.to_dict(), **state.state_dict()}
    return ckpt.write_run_checkpoint(
        workdir, state.step, full, training.keep_checkpoints, training.milestone_every
    )
