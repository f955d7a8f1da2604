"""Helpers shared by the toy experiments: seeding, threads, output files, a tiny trainer."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ncsn.errors import NCSNError
from ncsn.io import atomic_write
from ncsn.models.mlp import ScoreMLP
from ncsn.schedules import geometric_sigmas
from ncsn.toy.distributions import GaussianMixture

BOX = 8.0  # grids, plots and the Langevin initialisation cover [-BOX, BOX]^2
# the noise levels of the annealed samplers and the DSM model: sigma_1 > ... > sigma_L
SIGMA_MAX, SIGMA_MIN, NUM_LEVELS = 20.0, 1.0, 10


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _out_dir(out_dir: str | Path) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise NCSNError(f"output folder {path} is a file; give a folder name")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _finite(obj: Any) -> Any:
    """Recursively replace non-finite floats by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _finish(out: Path, name: str, fig: Figure, data: dict[str, Any], start: float) -> dict:
    """Stamp the run time, then write ``name.png`` and ``name.json`` atomically."""
    data["seconds"] = round(time.perf_counter() - start, 2)
    with atomic_write(out / f"{name}.png") as f:
        fig.savefig(f, format="png", dpi=110)
    return _save_json(out / f"{name}.json", data)


def _save_json(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` (non-finite floats as null) atomically; return what was written."""
    data = _finite(data)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
    return data


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _new_model(seed: int, device: str, **kwargs: Any) -> ScoreMLP:
    """A ScoreMLP initialised from ``seed`` without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = ScoreMLP(**kwargs)
    return model.to(device)


def _uniform_box(n: int, generator: torch.Generator, device: str) -> torch.Tensor:
    return ((torch.rand(n, 2, generator=generator) * 2 - 1) * BOX).to(device)


def _fractions(mix: GaussianMixture, x: torch.Tensor) -> list[float]:
    return [round(float(f), 4) for f in mix.mode_fractions(x.cpu())]


def _sigmas(device: str) -> torch.Tensor:
    return geometric_sigmas(SIGMA_MAX, SIGMA_MIN, NUM_LEVELS, device=device)


def _train(
    loss_fn: Callable[[], torch.Tensor],
    model: torch.nn.Module,
    steps: int,
    *,
    lr: float,
    desc: str,
    progress: bool,
) -> tuple[list[float], int | None]:
    """Adam on ``loss_fn()``; returns the losses and the step of a non-finite loss (or None)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    with tqdm(range(steps), desc=desc, disable=not progress, leave=False) as bar:
        for step in bar:
            loss = loss_fn()
            value = float(loss.detach())
            if not math.isfinite(value):
                return losses, step
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(value)
            if step % 100 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
    return losses, None
