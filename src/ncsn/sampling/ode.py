"""Samplers of the probability-flow ODE
``dx/dsigma = -sigma s(x, sigma) = (x - D(x, sigma)) / sigma`` (Song et al., ICLR 2021):
Euler and Heun with optional stochastic churn (Karras et al., NeurIPS 2022, Algorithm 2) and
DPM-Solver++(2M) (Lu et al., 2022) in its variance-exploding (sigma) form.

``sigmas`` is the whole schedule, descending; a final 0 makes the last step return the
denoiser ``D(x, sigma_{N-1})`` (the schedules of the registry end with 0).
"""

from __future__ import annotations

import math

import torch

from ncsn.models.sigma import as_sigma_batch
from ncsn.rng import Generators, randn
from ncsn.sampling.common import Callback, ScoreFn, as_levels, emit
from ncsn.sampling.registry import register_sampler

__all__ = ["euler", "heun", "dpmpp_2m"]

_RHO = (7.0, "(0, inf)", "Karras schedule exponent rho")
_CHURN = {
    "s_churn": (0.0, "[0, inf)", "EDM S_churn: total extra noise (0: the deterministic ODE)"),
    "s_tmin": (0.0, "[0, inf)", "EDM S_tmin: churn only at sigma >= s_tmin"),
    "s_tmax": (None, "[0, inf)", "EDM S_tmax: churn only at sigma <= s_tmax (unset: no bound)"),
    "s_noise": (1.0, "(0, inf)", "EDM S_noise: scale of the churn noise"),
    "rho": _RHO,
}


def _slope(score_fn: ScoreFn, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dx/dsigma, D(x, sigma))``: the ODE's slope ``-sigma s`` and the denoiser."""
    score = score_fn(x, as_sigma_batch(sigma, x))
    return -sigma * score, x + sigma**2 * score


def _churn(x, sigma, n_steps, s_churn, s_tmin, s_tmax, s_noise, generator):
    """EDM Algorithm 2, lines 4-6: raise the noise from sigma to sigma_hat = (1 + gamma) sigma."""
    inside = sigma >= s_tmin and (s_tmax is None or sigma <= s_tmax)
    gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_churn > 0 and inside else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        x = x + s_noise * (sigma_hat**2 - sigma**2) ** 0.5 * randn(x.shape, x, generator)
    return x, sigma_hat


@register_sampler(
    "euler", nfe=lambda levels, **_: levels, options=_CHURN, schedule="karras", to_zero=True
)
@torch.no_grad()
def euler(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float | None = None,
    s_noise: float = 1.0,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler steps of the probability-flow ODE, with EDM's optional churn.

    Per step: churn ``x <- x + S_noise sqrt(sigma_hat^2 - sigma_i^2) z`` with
    ``sigma_hat = (1 + gamma_i) sigma_i``, ``gamma_i = min(S_churn/N, sqrt(2) - 1)`` for
    ``S_tmin <= sigma_i <= S_tmax`` (else 0); then
    ``x <- x + (sigma_{i+1} - sigma_hat) (x - D(x, sigma_hat)) / sigma_hat``.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, about ``sigma_0 N(0, I)`` (plus a data-scale offset).
        sigmas: The schedule sigma_0 > ... > sigma_N (N steps, sigma_N = 0 to finish at D).
        s_churn: S_churn, EDM's total churn (0: deterministic).
        s_tmin: S_tmin.
        s_tmax: S_tmax (``None``: no upper bound).
        s_noise: S_noise.
        generator: Source of the churn noise.
        callback: Called after each step with a dict (step, level, sigma, x, sigma_hat,
            denoised).

    Returns:
        The final state.
    """
    levels = as_levels(sigmas)
    n = len(levels) - 1
    for i in range(n):
        x, sigma_hat = _churn(x, levels[i], n, s_churn, s_tmin, s_tmax, s_noise, generator)
        d, den = _slope(score_fn, x, sigma_hat)
        x = x + (levels[i + 1] - sigma_hat) * d
        emit(callback, i, i, levels[i], x, sigma_hat=sigma_hat, denoised=den)
    return x


@register_sampler(
    "heun", nfe=lambda levels, **_: 2 * levels - 1, options=_CHURN, schedule="karras", to_zero=True
)
@torch.no_grad()
def heun(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float | None = None,
    s_noise: float = 1.0,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Heun's second-order method on the probability-flow ODE: EDM's Algorithm 2.

    The Euler step of :func:`euler` followed, unless sigma_{i+1} = 0, by the trapezoidal
    correction ``x <- x_hat + (sigma_{i+1} - sigma_hat) (d_i + d'_i) / 2`` with
    ``d'_i = (x - D(x, sigma_{i+1})) / sigma_{i+1}``: two evaluations per step, one for the
    last step to 0 (2N - 1 in all).

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, about ``sigma_0 N(0, I)`` (plus a data-scale offset).
        sigmas: The schedule sigma_0 > ... > sigma_N (sigma_N = 0 to finish at D).
        s_churn: S_churn (0: deterministic).
        s_tmin: S_tmin.
        s_tmax: S_tmax (``None``: no upper bound).
        s_noise: S_noise.
        generator: Source of the churn noise.
        callback: Called after each step with a dict (step, level, sigma, x, sigma_hat,
            denoised).

    Returns:
        The final state.
    """
    levels = as_levels(sigmas)
    n = len(levels) - 1
    for i in range(n):
        x_hat, sigma_hat = _churn(x, levels[i], n, s_churn, s_tmin, s_tmax, s_noise, generator)
        d, den = _slope(score_fn, x_hat, sigma_hat)
        h = levels[i + 1] - sigma_hat
        x = x_hat + h * d
        if levels[i + 1] > 0:
            d_next, _ = _slope(score_fn, x, levels[i + 1])
            x = x_hat + h * 0.5 * (d + d_next)
        emit(callback, i, i, levels[i], x, sigma_hat=sigma_hat, denoised=den)
    return x


@register_sampler(
    "dpmpp-2m",
    nfe=lambda levels, **_: levels,
    options={"rho": _RHO},
    schedule="karras",
    to_zero=True,
)
@torch.no_grad()
def dpmpp_2m(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): the second-order multistep solver in data (denoiser) form.

    With ``lambda = -log sigma`` and ``h_i = lambda_{i+1} - lambda_i``, one evaluation per
    step: ``x_{i+1} = (sigma_{i+1}/sigma_i) x_i + (1 - sigma_{i+1}/sigma_i) D~_i`` where
    ``D~_i = (1 + 1/(2 r_i)) D_i - D_{i-1}/(2 r_i)``, ``r_i = h_{i-1}/h_i``, and ``D~ = D`` at
    the first step and at a last step to sigma = 0 (which returns the denoiser).

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, about ``sigma_0 N(0, I)`` (plus a data-scale offset).
        sigmas: The schedule sigma_0 > ... > sigma_N (sigma_N = 0 to finish at D).
        generator: Unused (the solver is deterministic); accepted for the common signature.
        callback: Called after each step with a dict (step, level, sigma, x, denoised).

    Returns:
        The final state.
    """
    levels = as_levels(sigmas)
    old = None
    for i in range(len(levels) - 1):
        sigma, nxt = levels[i], levels[i + 1]
        _, den = _slope(score_fn, x, sigma)
        target = den
        if old is not None and nxt > 0:
            r = math.log(levels[i - 1] / sigma) / math.log(sigma / nxt)
            target = (1 + 1 / (2 * r)) * den - old / (2 * r)
        x = (nxt / sigma) * x + (1 - nxt / sigma) * target
        old = den
        emit(callback, i, i, sigma, x, denoised=den)
    return x
