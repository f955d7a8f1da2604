"""What every sampler shares: the noise-level list, the
denoiser view of a score network and the callback.

The denoiser view: a score network ``s(x, sigma)`` of data perturbed by N(0, sigma^2 I) gives
the posterior mean of the clean data by Tweedie's formula,
``D(x, sigma) = E[x_0 | x] = x + sigma^2 s(x, sigma)``, so samplers written for denoisers
(EDM's Euler and Heun, DPM-Solver++) run on every ncsn network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ncsn.models.sigma import ScoreFn, as_sigma_batch

Callback = Callable[[dict[str, Any]], None]

__all__ = ["ScoreFn", "Callback", "as_levels", "denoiser", "emit"]


def as_levels(sigmas: torch.Tensor | list[float]) -> list[float]:
    """The noise levels as Python floats (double precision), refusing an empty schedule."""
    values = [float(s) for s in sigmas]
    if not values:
        raise ValueError("sigmas is empty: pass at least one noise level")
    return values


def denoiser(score_fn: ScoreFn, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Tweedie's denoiser ``D(x, sigma) = x + sigma^2 s(x, sigma)`` (one network evaluation)."""
    return x + sigma**2 * score_fn(x, as_sigma_batch(sigma, x))


def emit(callback: Callback | None, step: int, level: int, sigma: float, x, **extra) -> None:
    """Call ``callback`` (if any) with ``{"step", "level", "sigma", "x", **extra}``.

    ``step`` counts the callback's calls from 0, ``level`` is the index i of the noise level
    sigma_i the update started from, ``x`` the state after the update.
    """
    if callback is not None:
        callback({"step": step, "level": level, "sigma": sigma, "x": x, **extra})
