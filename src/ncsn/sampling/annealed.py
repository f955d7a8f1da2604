"""One-step-per-level samplers on the network's noise levels: consistent annealed sampling
(CAS) and ancestral sampling, each one network evaluation per level."""

from __future__ import annotations

import torch

from ncsn.models.sigma import as_sigma_batch
from ncsn.rng import Generators, randn
from ncsn.sampling.common import Callback, ScoreFn, as_levels, emit
from ncsn.sampling.registry import register_sampler

__all__ = ["consistent_annealed_sampling", "ancestral_sampling"]

_DENOISE = (True, None, "finish with x + sigma_L^2 s(x, sigma_L)")


@register_sampler(
    "cas",
    nfe=lambda levels, denoise, **_: levels + int(denoise),
    options={"eta": (1.0, "(0, 1]", "step as a fraction of sigma_i^2"), "denoise": _DENOISE},
)
@torch.no_grad()
def consistent_annealed_sampling(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 1.0,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
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
        callback: Called after each step with a dict (step, level, sigma, x, step_size, score).

    Returns:
        The final sample.
    """
    if not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1], got {eta}")
    levels = as_levels(sigmas)
    worst = max((a / b for a, b in zip(levels, levels[1:], strict=False)), default=1.0)
    if (1.0 - eta) * worst > 1.0:
        raise ValueError(
            f"eta={eta} is too small for level ratio {worst:.3f}: need eta >= {1 - 1 / worst:.4f}"
        )
    for i, sigma in enumerate(levels):
        score = score_fn(x, as_sigma_batch(sigma, x))
        x = x + eta * sigma**2 * score  # move towards the denoised estimate
        if i + 1 < len(levels):
            nxt = levels[i + 1]
            beta = (1.0 - ((1.0 - eta) * sigma / nxt) ** 2) ** 0.5
            x = x + beta * nxt * randn(x.shape, x, generator)  # restore noise level sigma_{i+1}
        emit(callback, i, i, sigma, x, step_size=eta * sigma**2, score=score)
    if denoise:
        x = x + levels[-1] ** 2 * score_fn(x, as_sigma_batch(levels[-1], x))
    return x


@register_sampler(
    "ancestral",
    nfe=lambda levels, denoise, **_: levels - 1 + int(denoise),
    options={
        "eta": (1.0, "[0, 1]", "fresh noise as a fraction of the posterior's (0: deterministic)"),
        "denoise": _DENOISE,
    },
)
@torch.no_grad()
def ancestral_sampling(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 1.0,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral sampling for the variance-exploding chain sigma_1 > ... > sigma_L.

    With ``eta = 1`` it samples ``q(x_{i+1} | x_i, x_0)`` of the Gaussian chain that adds
    noise from sigma_{i+1} to sigma_i, with x_0 replaced by its posterior mean from Tweedie's
    formula: ``x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + sigma_up z`` with
    ``sigma_up^2 = sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2``. The step's mean is the
    exact posterior mean ``E[x_{i+1} | x_i]``; its variance ignores the uncertainty of x_0
    (exact for point-mass data). In general (k-diffusion's ``get_ancestral_step``) the fresh
    noise is ``sigma_up = eta * sqrt(...)`` and the deterministic part moves to
    ``sigma_down = sqrt(sigma_{i+1}^2 - sigma_up^2)``:
    ``x <- x + sigma_i (sigma_i - sigma_down) s(x, sigma_i) + sigma_up z``; ``eta = 0`` is an
    Euler step of the probability-flow ODE (DDIM). One network evaluation per level.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, a draw from the data perturbed at sigma_1 (approximately
            ``sigma_1 * N(0, I)`` when sigma_1 dominates the data's spread).
        sigmas: Noise levels, descending.
        eta: Fresh noise as a fraction of the posterior standard deviation, in [0, 1].
        denoise: Finish with ``x + sigma_L^2 s(x, sigma_L)``.
        generator: Source of the noise draws.
        callback: Called after each step with a dict (step, level, sigma, x, step_size, score).

    Returns:
        The final sample.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    levels = as_levels(sigmas)
    for i in range(len(levels) - 1):
        s2, n2 = levels[i] ** 2, levels[i + 1] ** 2
        score = score_fn(x, as_sigma_batch(levels[i], x))
        if eta == 1.0:  # the posterior step, written as in the chain's formula
            step, up = s2 - n2, (n2 * (s2 - n2) / s2) ** 0.5
        else:
            up = eta * (n2 * (s2 - n2) / s2) ** 0.5
            step = levels[i] * (levels[i] - (n2 - up**2) ** 0.5)
        x = x + step * score  # posterior mean of x at the next level (eta = 1)
        if up > 0:
            x = x + up * randn(x.shape, x, generator)  # posterior noise
        emit(callback, i, i, levels[i], x, step_size=step, score=score)
    if denoise:
        x = x + levels[-1] ** 2 * score_fn(x, as_sigma_batch(levels[-1], x))
    return x
