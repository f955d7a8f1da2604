"""Samplers: Langevin dynamics, annealed Langevin dynamics (Algorithm 1), inpainting
(Algorithm 2), and faster samplers for noise-conditional score networks.

All samplers are pure functions with one signature shape:
``sampler(score_fn, x, sigmas, ..., *, generator=None, callback=None, return_trajectory=False)``
where ``score_fn(x, sigma) -> Tensor`` takes ``sigma`` of shape (batch,). Every random draw
uses ``generator`` when given, so the same generator state and inputs give the same output;
``generator`` may also be a list with one generator per batch row (per-image reproducibility).

Step-size convention: the paper's. One Langevin step at level i is
``x <- x + (alpha_i/2) s(x, sigma_i) + sqrt(alpha_i) z`` with ``alpha_i = eps sigma_i^2/sigma_L^2``.
The official NCSN code writes ``x + a s + sqrt(2a) z`` with ``a = step_lr sigma_i^2/sigma_L^2``:
the same step with ``step_lr = eps/2``. Its published samples used ``step_lr = 2e-5``, i.e.
``eps = 4e-5`` here; the paper's text quotes ``eps = 2e-5``, the official ``step_lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ncsn.errors import ShapeError
from ncsn.rng import Generators, randn

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict[str, Any]], None]

__all__ = [
    "langevin_dynamics",
    "annealed_langevin_dynamics",
    "annealed_langevin_inpainting",
    "consistent_annealed_sampling",
    "ancestral_sampling",
    "SAMPLERS",
    "get_sampler",
]


class _Recorder:
    """Collects the trajectory (every ``every``-th state, on the CPU) and calls the callback."""

    def __init__(self, callback: Callback | None, record: bool, every: int):
        self.callback, self.record, self.every = callback, record, max(int(every), 1)
        self.states: list[torch.Tensor] = []
        self.step = 0

    def __call__(self, x: torch.Tensor, **info: Any) -> None:
        if self.record and self.step % self.every == 0:
            self.states.append(x.detach().cpu().clone())
        if self.callback is not None:
            self.callback({"step": self.step, "x": x, **info})
        self.step += 1

    def result(self, x: torch.Tensor):
        if not self.record:
            return x
        self.states.append(x.detach().cpu().clone())
        return x, self.states


def _sigma_batch(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)


def _as_list(sigmas: torch.Tensor | list[float]) -> list[float]:
    values = [float(s) for s in sigmas]
    if not values:
        raise ValueError("sigmas is empty: pass at least one noise level")
    return values


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
    return_trajectory: bool = False,
    trajectory_every: int = 1,
):
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
        callback: Called after each step with a dict (step, x, sigma, step_size, score).
        return_trajectory: Also return the list of states (every ``trajectory_every`` steps).
        trajectory_every: Keep every k-th state.

    Returns:
        The final state, or ``(final, trajectory)``.
    """
    rec = _Recorder(callback, return_trajectory, trajectory_every)
    sig = _sigma_batch(sigma, x)
    for _ in range(int(n_steps)):
        score = score_fn(x, sig)
        x = x + 0.5 * step_size * score + step_size**0.5 * randn(x.shape, x, generator)
        rec(x, level=0, sigma=sigma, step_size=step_size, score=score)
    return rec.result(x)


@torch.no_grad()
def annealed_langevin_dynamics(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    n_steps_each: int = 100,
    eps: float = 4e-5,
    *,
    denoise: bool = False,
    generator: Generators = None,
    callback: Callback | None = None,
    return_trajectory: bool = False,
    trajectory_every: int = 1,
):
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
        callback: Called after each step with a dict (step, x, level, sigma, step_size, score).
        return_trajectory: Also return the states (every ``trajectory_every`` steps).
        trajectory_every: Keep every k-th state.

    Returns:
        The final sample, or ``(final, trajectory)``.
    """
    levels = _as_list(sigmas)
    sigma_l = levels[-1]
    rec = _Recorder(callback, return_trajectory, trajectory_every)
    for i, sigma in enumerate(levels):  # line 2: for i <- 1 to L
        alpha = eps * sigma**2 / sigma_l**2  # line 3: alpha_i <- eps sigma_i^2 / sigma_L^2
        sig = _sigma_batch(sigma, x)
        for _ in range(int(n_steps_each)):  # line 4: for t <- 1 to T
            z = randn(x.shape, x, generator)  # line 5: z_t ~ N(0, I)
            score = score_fn(x, sig)
            x = x + 0.5 * alpha * score + alpha**0.5 * z  # line 6: the Langevin step
            rec(x, level=i, sigma=sigma, step_size=alpha, score=score)
        # line 8: x_0 <- x_T, the next level starts where this one ended
    if denoise:
        x = x + sigma_l**2 * score_fn(x, _sigma_batch(sigma_l, x))
    return rec.result(x)


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
    n_steps_each: int = 100,
    eps: float = 4e-5,
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    return_trajectory: bool = False,
    trajectory_every: int = 1,
):
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
        callback: Called after each step.
        return_trajectory: Also return the states.
        trajectory_every: Keep every k-th state.

    Returns:
        The completion (observed entries exactly equal to ``observed``), or
        ``(final, trajectory)``.

    Raises:
        ShapeError: If ``observed`` or ``mask`` does not fit ``x``, or ``mask`` is not binary.
    """
    _check_inpainting_inputs(x, observed, mask)
    mask = mask.to(x)
    levels = _as_list(sigmas)
    sigma_l = levels[-1]
    rec = _Recorder(callback, return_trajectory, trajectory_every)
    for i, sigma in enumerate(levels):
        alpha = eps * sigma**2 / sigma_l**2  # alpha_i <- eps sigma_i^2 / sigma_L^2
        y_tilde = observed + sigma * randn(x.shape, x, generator)  # y~ <- y + sigma_i z~
        sig = _sigma_batch(sigma, x)
        for _ in range(int(n_steps_each)):
            z = randn(x.shape, x, generator)  # z_t ~ N(0, I)
            score = score_fn(x, sig)
            x = x + 0.5 * alpha * score + alpha**0.5 * z  # the Langevin step
            x = x * (1 - mask) + y_tilde * mask  # x_t <- x_t (1 - m) + y~ m
            rec(x, level=i, sigma=sigma, step_size=alpha, score=score)
    x = x * (1 - mask) + observed * mask  # the observed entries are returned exactly
    return rec.result(x)


@torch.no_grad()
def consistent_annealed_sampling(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    eta: float = 1.0,
    *,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
    return_trajectory: bool = False,
    trajectory_every: int = 1,
):
    """Consistent annealed sampling (Jolicoeur-Martineau et al., ICLR 2021): one step per level.

    ``x <- x + eta sigma_i^2 s(x, sigma_i) + beta_i sigma_{i+1} z`` with
    ``beta_i = sqrt(1 - ((1 - eta) gamma_i)^2)``, ``gamma_i = sigma_i / sigma_{i+1}``: the step
    leaves ``(1 - eta) sigma_i`` of the old noise, and the fresh noise tops it up so that the
    noise level of ``x`` is sigma_{i+1} after every step (needs ``(1 - eta) gamma_i <= 1``).
    L network evaluations replace the L*T of Algorithm 1.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, e.g. ``sigma_1 * N(0, I)`` (plus a data-scale offset).
        sigmas: Noise levels, descending.
        eta: Step as a fraction of sigma_i^2, in (0, 1].
        denoise: Finish with ``x + sigma_L^2 s(x, sigma_L)``.
        generator: Source of the noise draws.
        callback: Called after each step.
        return_trajectory: Also return the states.
        trajectory_every: Keep every k-th state.

    Returns:
        The final sample, or ``(final, trajectory)``.
    """
    if not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1], got {eta}")
    levels = _as_list(sigmas)
    worst = max((a / b for a, b in zip(levels, levels[1:], strict=False)), default=1.0)
    if (1.0 - eta) * worst > 1.0:
        raise ValueError(
            f"eta={eta} is too small for level ratio {worst:.3f}: need eta >= {1 - 1 / worst:.4f}"
        )
    rec = _Recorder(callback, return_trajectory, trajectory_every)
    for i, sigma in enumerate(levels):
        score = score_fn(x, _sigma_batch(sigma, x))
        x = x + eta * sigma**2 * score  # move towards the denoised estimate
        if i + 1 < len(levels):
            nxt = levels[i + 1]
            beta = (1.0 - ((1.0 - eta) * sigma / nxt) ** 2) ** 0.5
            x = x + beta * nxt * randn(x.shape, x, generator)  # restore noise level sigma_{i+1}
        rec(x, level=i, sigma=sigma, step_size=eta * sigma**2, score=score)
    if denoise:
        x = x + levels[-1] ** 2 * score_fn(x, _sigma_batch(levels[-1], x))
    return rec.result(x)


@torch.no_grad()
def ancestral_sampling(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
    return_trajectory: bool = False,
    trajectory_every: int = 1,
):
    """Ancestral sampling for the variance-exploding chain sigma_1 > ... > sigma_L.

    Samples ``q(x_{i+1} | x_i, x_0)`` of the Gaussian chain that adds noise from sigma_{i+1}
    to sigma_i, with x_0 replaced by its posterior mean from Tweedie's formula:
    ``x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i)
    + sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2) z``.
    The step's mean is the exact posterior mean ``E[x_{i+1} | x_i]``; its variance ignores the
    uncertainty of x_0 (exact for point-mass data). One network evaluation per level.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, a draw from the data perturbed at sigma_1 (approximately
            ``sigma_1 * N(0, I)`` when sigma_1 dominates the data's spread).
        sigmas: Noise levels, descending.
        denoise: Finish with ``x + sigma_L^2 s(x, sigma_L)``.
        generator: Source of the noise draws.
        callback: Called after each step.
        return_trajectory: Also return the states.
        trajectory_every: Keep every k-th state.

    Returns:
        The final sample, or ``(final, trajectory)``.
    """
    levels = _as_list(sigmas)
    rec = _Recorder(callback, return_trajectory, trajectory_every)
    for i in range(len(levels) - 1):
        s2, n2 = levels[i] ** 2, levels[i + 1] ** 2
        score = score_fn(x, _sigma_batch(levels[i], x))
        x = x + (s2 - n2) * score  # posterior mean of x at the next level
        x = x + (n2 * (s2 - n2) / s2) ** 0.5 * randn(x.shape, x, generator)  # posterior noise
        rec(x, level=i, sigma=levels[i], step_size=s2 - n2, score=score)
    if denoise:
        x = x + levels[-1] ** 2 * score_fn(x, _sigma_batch(levels[-1], x))
    return rec.result(x)


SAMPLERS: dict[str, Callable[..., Any]] = {
    "ald": annealed_langevin_dynamics,
    "cas": consistent_annealed_sampling,
    "ancestral": ancestral_sampling,
}


def get_sampler(name: str) -> Callable[..., Any]:
    """Look up a sampler by its short name (``ald``, ``cas``, ``ancestral``)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        from ncsn.errors import ConfigError

        raise ConfigError(
            f"unknown sampler {name!r}; choose one of {', '.join(sorted(SAMPLERS))}"
        ) from None
