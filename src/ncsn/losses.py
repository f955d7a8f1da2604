"""Score-matching objectives.

Every loss takes a score function with the one contract ``score_fn(x, sigma) -> Tensor``, where
``sigma`` has shape (batch,) and holds noise standard deviations, and returns a scalar (or a
:class:`AnnealedLoss` with the per-level breakdown). Losses follow the paper's convention of
a factor 1/2 on squared norms, summed over data dimensions and averaged over the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

from ncsn.models.sigma import ScoreFn, as_sigma_batch, nearest_level
from ncsn.rng import randint, randn

__all__ = [
    "AnnealedLoss",
    "dsm_loss",
    "anneal_dsm_loss",
    "sliced_score_matching_loss",
    "anneal_sliced_score_matching_loss",
    "exact_score_matching_loss",
    "TRAINING_LOSSES",
    "loss_names",
]


class AnnealedLoss(NamedTuple):
    """Result of an annealed loss.

    Attributes:
        loss: Scalar, the mean weighted loss over the batch (what is minimised).
        per_level: Shape (L,), mean weighted loss of the examples drawn at each level
            (NaN for levels not drawn in this batch).
        counts: Shape (L,), how many examples were drawn at each level.
        levels: Shape (batch,), the level index drawn for each example.
    """

    loss: torch.Tensor
    per_level: torch.Tensor
    counts: torch.Tensor
    levels: torch.Tensor


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _bcast(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def _per_level(weighted: torch.Tensor, levels: torch.Tensor, num_levels: int) -> AnnealedLoss:
    counts = torch.bincount(levels, minlength=num_levels)
    sums = torch.zeros(num_levels, dtype=weighted.dtype, device=weighted.device)
    sums = sums.index_add(0, levels, weighted.detach())
    per_level = sums / counts.to(weighted.dtype)  # NaN where a level was not drawn
    return AnnealedLoss(weighted.mean(), per_level, counts, levels)


def _draw_levels(x, sigmas, levels, generator):
    if levels is None:
        levels = randint(len(sigmas), (x.shape[0],), x.device, generator)
    return levels, sigmas.to(x)[levels]


def dsm_loss(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Denoising score matching at one noise level (Vincent 2011; the paper's Eq. 2).

    ``1/2 E ||s(x + sigma z, sigma) + z / sigma||^2``: the target is the score of the
    perturbation kernel, ``-(x_tilde - x) / sigma^2``.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Clean data, shape (B, ...).
        sigma: Noise standard deviation, a float or a tensor of shape (B,).
        generator: Source of the noise draws.

    Returns:
        Scalar loss (mean over the batch).
    """
    sigma_b = as_sigma_batch(sigma, x)
    return _dsm_terms(score_fn, x, sigma_b, randn(x.shape, x, generator)).mean()


def _dsm_terms(
    score_fn: ScoreFn, x: torch.Tensor, sigma_b: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """Per-example ``1/2 ||s(x + sigma z, sigma) + z / sigma||^2`` (the DSM body, once)."""
    s = _bcast(sigma_b, x)
    target = -z / s  # the perturbation kernel's score -(x_tilde - x) / sigma^2
    return 0.5 * _flat_sum((score_fn(x + s * z, sigma_b) - target) ** 2)


def anneal_dsm_loss(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    power: float = 2.0,
    levels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    sigma: torch.Tensor | None = None,
    weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> AnnealedLoss:
    """The paper's annealed denoising score matching objective (Eqs. 5 and 6).

    For each example draw a level i uniformly, perturb ``x_tilde = x + sigma_i z`` and score
    ``lambda(sigma_i) * 1/2 ||s(x_tilde, sigma_i) + (x_tilde - x)/sigma_i^2||^2`` with
    ``lambda(sigma) = sigma**power`` (the paper: power 2, which makes every level's term of
    the same magnitude).

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Clean data, shape (B, ...).
        sigmas: The L noise levels, shape (L,).
        power: Exponent of the weighting lambda(sigma) = sigma**power.
        levels: Optional fixed level index per example, shape (B,) (e.g. for evaluation).
        generator: Source of the level and noise draws.
        noise: Optional fixed standard-normal noise, shape of ``x`` (for reproducible evaluation).
        sigma: Optional noise level per example, shape (B,), used instead of ``sigmas[levels]``
            (training at continuous sigma); ``levels`` then only files each example under a
            level for the per-level report (default: the nearest level in log space).
        weight: Optional ``lambda(sigma)`` as a function of the (B,) noise levels, replacing
            ``sigma**power`` (e.g. :func:`ncsn.edm.edm_weight`).

    Returns:
        :class:`AnnealedLoss` with the scalar loss and its per-level means.
    """
    if sigma is None:
        levels, sigma_b = _draw_levels(x, sigmas, levels, generator)
    else:
        sigma_b = sigma.to(x)
        if levels is None:
            levels = nearest_level(sigma_b, sigmas)
    # Steps 1-2: perturb with the drawn level's noise, regress onto the kernel's score.
    z = randn(x.shape, x, generator) if noise is None else noise
    per_example = _dsm_terms(score_fn, x, sigma_b, z)
    # Step 3: weight by lambda(sigma) = sigma^power, average, and report per level.
    lam = sigma_b**power if weight is None else weight(sigma_b)
    return _per_level(per_example * lam, levels.to(x.device), len(sigmas))


def _projections(shape, n, dist, generator, like):
    v = randn((n, *shape), like, generator)
    if dist == "rademacher":
        v = v.sign()
    elif dist != "gaussian":
        raise ValueError(
            f"projection distribution must be 'gaussian' or 'rademacher', got {dist!r}"
        )
    return v


def _sliced_terms(
    score_fn, x, sigma_b, n_projections, dist, variance_reduction, generator, projections=None
):
    """Per-example sliced score matching objective at fixed inputs (gradient wrt x needed)."""
    x = x.detach().requires_grad_(True)
    s = score_fn(x, sigma_b)
    if projections is None:
        vs = _projections(x.shape, n_projections, dist, generator, x)
    else:
        vs = projections.to(x)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for v in vs:
        sv = _flat_sum(s * v)
        # v^T (grad_x s) v, via the gradient of v^T s with respect to x.
        (grad,) = torch.autograd.grad(sv.sum(), x, create_graph=True)
        jvp = _flat_sum(grad * v)
        if variance_reduction:
            total = total + jvp  # 1/2 ||s||^2 is added once below (its expectation in closed form)
        else:
            total = total + jvp + 0.5 * sv**2
    total = total / n_projections
    if variance_reduction:
        total = total + 0.5 * _flat_sum(s**2)
    return total


def sliced_score_matching_loss(
    score_fn: ScoreFn,
    x: torch.Tensor,
    *,
    sigma: float | torch.Tensor = 0.0,
    n_projections: int = 1,
    distribution: str = "gaussian",
    variance_reduction: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced score matching (Song et al. 2019), optionally variance-reduced (SSM-VR).

    ``E_v E_x [ v^T (d s / d x) v + 1/2 (v^T s)^2 ]``; with variance reduction the second
    term is replaced by its expectation over v, ``1/2 ||s||^2`` (exact for projections with
    identity covariance, Gaussian or Rademacher).

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``; ``sigma`` is passed through (0 by default:
            the score of the data itself).
        x: Data, shape (B, ...).
        sigma: The sigma handed to ``score_fn`` (float or (B,)).
        n_projections: Random projections per example.
        distribution: ``"gaussian"`` or ``"rademacher"``.
        variance_reduction: Use the SSM-VR form.
        generator: Source of the projection draws.

    Returns:
        Scalar loss; its expectation equals the exact score matching objective.
    """
    sigma_b = as_sigma_batch(sigma, x)
    terms = _sliced_terms(
        score_fn, x, sigma_b, n_projections, distribution, variance_reduction, generator
    )
    return terms.mean()


def anneal_sliced_score_matching_loss(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    power: float = 2.0,
    n_projections: int = 1,
    distribution: str = "gaussian",
    variance_reduction: bool = False,
    levels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    projections: torch.Tensor | None = None,
) -> AnnealedLoss:
    """Annealed sliced score matching: SSM on ``x + sigma_i z`` with ``s(., sigma_i)``.

    The objective estimates the score of the perturbed distribution q_sigma at each level,
    weighted by ``sigma**power`` as in :func:`anneal_dsm_loss`.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Clean data, shape (B, ...).
        sigmas: The L noise levels, shape (L,).
        power: Exponent of the weighting lambda(sigma) = sigma**power.
        n_projections: Random projections per example.
        distribution: ``"gaussian"`` or ``"rademacher"``.
        variance_reduction: Use the SSM-VR form.
        levels: Optional fixed level index per example.
        generator: Source of level, noise and projection draws.
        noise: Optional fixed standard-normal perturbation, shape of ``x``.
        projections: Optional fixed projections, shape ``(n_projections, *x.shape)`` (already
            in the chosen distribution).

    Returns:
        :class:`AnnealedLoss`.
    """
    levels, sigma_b = _draw_levels(x, sigmas, levels, generator)
    z = randn(x.shape, x, generator) if noise is None else noise
    x_tilde = x + _bcast(sigma_b, x) * z
    terms = _sliced_terms(
        score_fn,
        x_tilde,
        sigma_b,
        n_projections,
        distribution,
        variance_reduction,
        generator,
        projections,
    )
    return _per_level(terms * sigma_b**power, levels, len(sigmas))


def exact_score_matching_loss(
    score_fn: ScoreFn, x: torch.Tensor, *, sigma: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Hyvarinen's score matching, ``E[1/2 ||s(x)||^2 + tr(d s / d x)]``, trace by autograd.

    The Jacobian trace costs one backward pass per data dimension: use it for low dimension.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Data, shape (B, D) or (B, ...) with a small number of elements per example.
        sigma: The sigma handed to ``score_fn``.

    Returns:
        Scalar loss, differentiable with respect to the score function's parameters.
    """
    sigma_b = as_sigma_batch(sigma, x)
    x = x.detach().requires_grad_(True)
    s = score_fn(x, sigma_b)
    flat_s = s.reshape(s.shape[0], -1)
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for d in range(flat_s.shape[1]):
        (grad,) = torch.autograd.grad(flat_s[:, d].sum(), x, create_graph=True)
        trace = trace + grad.reshape(x.shape[0], -1)[:, d]
    return (0.5 * (flat_s**2).sum(dim=1) + trace).mean()


# The training objectives ``training.loss`` names: name -> annealed loss function. Each takes
# ``(score_fn, x, sigmas, *, levels, noise, ...)`` and returns an :class:`AnnealedLoss`.
TRAINING_LOSSES: dict[str, Callable[..., AnnealedLoss]] = {
    "dsm": anneal_dsm_loss,
    "ssm": functools.partial(anneal_sliced_score_matching_loss, variance_reduction=False),
    "ssm_vr": functools.partial(anneal_sliced_score_matching_loss, variance_reduction=True),
}


def loss_names() -> tuple[str, ...]:
    """The names ``training.loss`` accepts, in registration order."""
    return tuple(TRAINING_LOSSES)
