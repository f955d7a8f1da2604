"""Langevin samplers of the paper: Langevin dynamics, annealed Langevin dynamics (Algorithm 1)
and inpainting with it (Algorithm 2).

Step sizes follow the paper's convention (:mod:`ncsn.schedules` states it once; the official
``step_lr`` is ``eps/2``). The official code's published samples used ``step_lr = 2e-5``, i.e.
``eps = 4e-5`` here; the paper's text quotes ``eps = 2e-5``, the official ``step_lr``.

Every random draw uses ``generator`` when given (a list: one generator per batch row), so the
same generator state and inputs give the same output. Trajectories come through ``callback``.
"""

from __future__ import annotations

import torch

from ncsn.errors import ShapeError
from ncsn.models.sigma import as_sigma_batch
from ncsn.rng import Generators, randn
from ncsn.sampling.common import Callback, ScoreFn, as_levels, emit
from ncsn.sampling.registry import register_sampler

__all__ = ["langevin_dynamics", "annealed_langevin_dynamics", "annealed_langevin_inpainting"]


@torch.no_grad()
def langevin_dynamics(
    score_fn: ScoreFn,
    x: torch.Tensor,
    step_size: float,
    n_steps: int,
    *,
    sigma: float = 0.0,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Plain (unadjusted) Langevin dynamics with a fixed step.

    ``x <- x + (step_size/2) s(x, sigma) + sqrt(step_size) z``: as step_size -> 0 and
    n_steps -> infinity its samples follow the density whose score is ``s``.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, shape (B, ...).
        step_size: epsilon, the paper's step.
        n_steps: Number of steps T.
        sigma: The sigma passed to ``score_fn`` at every step (0: the data's own score).
        generator: Source of the noise draws.
        callback: Called after each step with a dict (step, level, sigma, x, step_size,
            score).

    Returns:
        The final state.
    """
    sig = as_sigma_batch(sigma, x)
    for t in range(int(n_steps)):
        score = score_fn(x, sig)
        x = x + 0.5 * step_size * score + step_size**0.5 * randn(x.shape, x, generator)
        emit(callback, t, 0, sigma, x, step_size=step_size, score=score)
    return x


@register_sampler(
    "ald",
    nfe=lambda levels, n_steps_each, denoise, **_: levels * n_steps_each + int(denoise),
    options={
        "n_steps_each": (100, "[1, 1000000]", "T, Langevin steps per noise level"),
        "eps": (4e-5, "(0, inf)", "step at the smallest level (official step_lr = eps/2)"),
        "denoise": (False, None, "finish with x + sigma_L^2 s(x, sigma_L)"),
    },
    knob="n_steps_each",
    uniform_init=True,
)
@torch.no_grad()
def annealed_langevin_dynamics(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    n_steps_each: int = 100,
    eps: float = 4e-5,
    denoise: bool = False,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics: the paper's Algorithm 1.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state x_0, shape (B, ...) (the paper: uniform noise).
        sigmas: Noise levels sigma_1 > ... > sigma_L, shape (L,).
        n_steps_each: T, Langevin steps per level.
        eps: epsilon, the step at the smallest level (paper convention, see module doc).
        denoise: Add the final step ``x + sigma_L^2 s(x, sigma_L)`` (Tweedie's denoiser; not
            in the 2019 paper, introduced with NCSNv2).
        generator: Source of the noise draws.
        callback: Called after each step with a dict (step, level, sigma, x, step_size,
            score).

    Returns:
        The final sample.
    """
    levels = as_levels(sigmas)
    sigma_l = levels[-1]
    steps = int(n_steps_each)
    for i, sigma in enumerate(levels):  # line 2: for i <- 1 to L
        alpha = eps * sigma**2 / sigma_l**2  # line 3: alpha_i <- eps sigma_i^2 / sigma_L^2
        sig = as_sigma_batch(sigma, x)
        for t in range(steps):  # line 4: for t <- 1 to T
            z = randn(x.shape, x, generator)  # line 5: z_t ~ N(0, I)
            score = score_fn(x, sig)
            x = x + 0.5 * alpha * score + alpha**0.5 * z  # line 6: the Langevin step
            emit(callback, i * steps + t, i, sigma, x, step_size=alpha, score=score)
        # line 8: x_0 <- x_T, the next level starts where this one ended
    if denoise:
        x = x + sigma_l**2 * score_fn(x, as_sigma_batch(sigma_l, x))
    return x


def _check_inpainting_inputs(x, observed, mask):
    if observed.shape != x.shape:
        raise ShapeError(
            f"observed has shape {tuple(observed.shape)} but x has shape {tuple(x.shape)}; "
            "pass observed data of the same shape as the samples"
        )
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        raise ShapeError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the data shape "
            f"{tuple(x.shape)}; use the data shape or drop leading dimensions"
        ) from None
    if mask.ndim > x.ndim or torch.broadcast_shapes(mask.shape, x.shape) != x.shape:
        raise ShapeError(f"mask of shape {tuple(mask.shape)} is larger than x {tuple(x.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ShapeError("mask must hold only 0 (to fill in) and 1 (observed)")


@torch.no_grad()
def annealed_langevin_inpainting(
    score_fn: ScoreFn,
    x: torch.Tensor,
    observed: torch.Tensor,
    mask: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    n_steps_each: int = 100,
    eps: float = 4e-5,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Inpainting with annealed Langevin dynamics: the paper's Algorithm 2.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, shape (B, ...) (e.g. uniform noise).
        observed: y, the observed data, same shape as ``x`` (its values under ``mask == 0``
            are ignored).
        mask: m, 1 where observed and 0 where to fill in; any shape that broadcasts to ``x``.
        sigmas: Noise levels sigma_1 > ... > sigma_L.
        n_steps_each: T, steps per level.
        eps: Step at the smallest level (paper convention).
        generator: Source of the noise draws.
        callback: Called after each step (as for :func:`annealed_langevin_dynamics`).

    Returns:
        The completion (observed entries exactly equal to ``observed``).

    Raises:
        ShapeError: If ``observed`` or ``mask`` does not fit ``x``, or ``mask`` is not binary.
    """
    _check_inpainting_inputs(x, observed, mask)
    mask = mask.to(x)
    levels = as_levels(sigmas)
    sigma_l = levels[-1]
    steps = int(n_steps_each)
    for i, sigma in enumerate(levels):
        alpha = eps * sigma**2 / sigma_l**2  # alpha_i <- eps sigma_i^2 / sigma_L^2
        y_tilde = observed + sigma * randn(x.shape, x, generator)  # y~ <- y + sigma_i z~
        sig = as_sigma_batch(sigma, x)
        for t in range(steps):
            z = randn(x.shape, x, generator)  # z_t ~ N(0, I)
            score = score_fn(x, sig)
            x = x + 0.5 * alpha * score + alpha**0.5 * z  # the Langevin step
            x = x * (1 - mask) + y_tilde * mask  # x_t <- x_t (1 - m) + y~ m
            emit(callback, i * steps + t, i, sigma, x, step_size=alpha, score=score)
    x = x * (1 - mask) + observed * mask  # the observed entries are returned exactly
    return x
