"""Exact log-likelihoods of a score model through the probability-flow ODE (Song et al.,
ICLR 2021, Appendix D.2).

For data perturbed by N(0, sigma^2 I) the probability-flow ODE ``dx/dsigma = -sigma s(x, sigma)``
moves samples of p_sigma_min to samples of p_sigma_max, and along a solution
``d log p_sigma(x(sigma)) / dsigma = sigma div s(x(sigma), sigma)`` (the instantaneous
change of variables). Hence

    log p_sigma_min(x) = log N(x(sigma_max); 0, sigma_max^2 I)
                         - int_{sigma_min}^{sigma_max} sigma div s(x(sigma), sigma) dsigma,

with the prior N(0, sigma_max^2 I) standing in for p_sigma_max. The ODE is integrated in
``t = log sigma`` (``dx/dt = -sigma^2 s``) by SciPy's adaptive RK45 (``solve_ivp``, default
rtol = atol = 1e-5 as in score_sde), all rows of ``x`` as one system. The divergence is
Hutchinson's estimate ``eps^T (ds/dx) eps`` with one Rademacher probe per row held fixed along
the path (unbiased; exact where the Jacobian is diagonal), or the exact trace (one backward
pass per dimension: for low dimensions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp

from ncsn.models.sigma import as_sigma_batch
from ncsn.rng import Generators, rand
from ncsn.sampling.common import ScoreFn

__all__ = ["log_likelihood", "probability_flow_log_likelihood", "FlowLikelihood"]


@dataclass
class FlowLikelihood:
    """The result of one probability-flow integration."""

    log_density: torch.Tensor  # (B,) log p_sigma_min(x) in nats
    prior_log_density: torch.Tensor  # (B,) log N(x(sigma_max); 0, sigma_max^2 I)
    x_max: torch.Tensor  # (B, ...) the end of the path, x(sigma_max)
    nfe: int  # score evaluations (each with one or D backward passes)


def _divergence(score: torch.Tensor, x: torch.Tensor, probe: torch.Tensor | None):
    """Per-row divergence of ``score`` w.r.t. ``x``: Hutchinson with ``probe``, else exact."""
    if probe is not None:
        (vjp,) = torch.autograd.grad((score * probe).sum(), x)
        return (vjp * probe).flatten(1).sum(1)
    flat = score.flatten(1)
    div = torch.zeros(flat.shape[0], dtype=flat.dtype, device=flat.device)
    for j in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=j + 1 < flat.shape[1])
        div = div + g.flatten(1)[:, j]
    return div


def probability_flow_log_likelihood(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    *,
    exact_divergence: bool = False,
    generator: Generators = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> FlowLikelihood:
    """:func:`log_likelihood` with the prior term and the number of evaluations."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    shape, batch = x.shape, x.shape[0]
    size = x[0].numel()
    probe = None
    if not exact_divergence:
        probe = torch.where(rand(shape, x, generator) < 0.5, -1.0, 1.0).to(x.dtype)
    count = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        sigma = math.exp(t)
        state = torch.from_numpy(y[: batch * size]).to(x).reshape(shape)
        with torch.enable_grad():
            state.requires_grad_(True)
            score = score_fn(state, as_sigma_batch(sigma, state))
            div = _divergence(score, state, probe)
        count[0] += 1
        drift = (-(sigma**2) * score).detach().flatten().double().cpu().numpy()
        return np.concatenate([drift, (sigma**2 * div).detach().double().cpu().numpy()])

    y0 = np.concatenate([x.detach().flatten().double().cpu().numpy(), np.zeros(batch)])
    span = (math.log(sigma_min), math.log(sigma_max))
    sol = solve_ivp(rhs, span, y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"probability-flow ODE failed: {sol.message}")
    end = torch.from_numpy(sol.y[:, -1])
    x_max = end[: batch * size].reshape(batch, size)
    integral = end[batch * size :]
    prior = -0.5 * (x_max**2).sum(1) / sigma_max**2 - 0.5 * size * math.log(
        2 * math.pi * sigma_max**2
    )
    return FlowLikelihood(
        (prior - integral).to(x.device),
        prior.to(x.device),
        x_max.reshape(shape).to(x.device),
        count[0],
    )


def log_likelihood(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    *,
    exact_divergence: bool = False,
    generator: Generators = None,
) -> torch.Tensor:
    """Log-density of each row of ``x`` under the score model, in nats.

    The density is the model's p_sigma_min (the data perturbed by N(0, sigma_min^2 I)), mapped
    by the probability-flow ODE to the prior N(0, sigma_max^2 I) at sigma_max (see the module
    docstring); shift ``x`` and ``score_fn`` together to centre the prior elsewhere.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor`` with ``sigma`` of shape (B,); must be
            differentiable in ``x``.
        x: Points, shape (B, ...).
        sigma_min: Start of the ODE (the model's smallest noise level).
        sigma_max: End of the ODE, the prior's standard deviation.
        exact_divergence: Exact trace of the score's Jacobian (one backward pass per
            dimension) instead of Hutchinson's estimate.
        generator: Source of the Rademacher probes (a list: one generator per row).

    Returns:
        float64 tensor (B,) of log-densities in nats, on the device of ``x``.
    """
    return probability_flow_log_likelihood(
        score_fn, x, sigma_min, sigma_max, exact_divergence=exact_divergence, generator=generator
    ).log_density
