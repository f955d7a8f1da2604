"""Predictor-corrector sampling for the variance-exploding SDE (Song et al., ICLR 2021,
Algorithm 2 with the reverse-diffusion predictor and the Langevin corrector)."""

from __future__ import annotations

import torch

from ncsn.models.sigma import as_sigma_batch
from ncsn.rng import Generators, randn
from ncsn.sampling.common import Callback, ScoreFn, as_levels, emit
from ncsn.sampling.registry import register_sampler

__all__ = ["predictor_corrector"]


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each example, shaped (B, 1, ..., 1) to broadcast against ``t``."""
    norm = t.reshape(t.shape[0], -1).norm(dim=1)
    return norm.reshape(-1, *([1] * (t.ndim - 1)))


@register_sampler(
    "pc",
    nfe=lambda levels, corrector_steps, **_: levels * (1 + corrector_steps),
    options={
        "snr": (0.16, "(0, inf)", "corrector signal-to-noise ratio r"),
        "corrector_steps": (1, "[0, 1000]", "Langevin corrector steps per level"),
        "denoise": (True, None, "return the last predictor's mean (no extra evaluation)"),
    },
)
@torch.no_grad()
def predictor_corrector(
    score_fn: ScoreFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    snr: float = 0.16,
    corrector_steps: int = 1,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Predictor-corrector sampler of the variance-exploding SDE.

    At each level sigma_i (descending, sigma_{N} = 0 after the last), first
    ``corrector_steps`` Langevin corrector steps at sigma_i with the step set by the
    signal-to-noise ratio r: ``eps = 2 (r ||z|| / ||s(x, sigma_i)||)^2`` per example,
    ``x <- x + eps s(x, sigma_i) + sqrt(2 eps) z``; then the reverse-diffusion predictor
    ``x_mean = x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i)``,
    ``x <- x_mean + sqrt(sigma_i^2 - sigma_{i+1}^2) z``. The last predictor step goes to
    sigma = 0: with ``denoise`` it returns ``x_mean`` (the Tweedie denoiser, score_sde's
    ``noise_removal``). The norms are per example (the paper's Algorithm 5; score_sde's code
    averages them over the batch), so an image does not depend on its batch. The snr rule
    assumes ``||z|| / ||s||`` concentrates, i.e. high dimension (images): in a few
    dimensions eps is unbounded where ``||s||`` is small.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor``.
        x: Initial state, about ``sigma_1 N(0, I)`` (plus a data-scale offset).
        sigmas: Noise levels, descending and positive.
        snr: The corrector's signal-to-noise ratio r (score_sde: 0.16 on CIFAR-10).
        corrector_steps: Corrector steps per level (0: the predictor alone).
        denoise: Return the last predictor's mean instead of adding its noise.
        generator: Source of the noise draws.
        callback: Called after each level with a dict (step, level, sigma, x, x_mean).

    Returns:
        The final sample.
    """
    levels = as_levels(sigmas)
    tiny = torch.finfo(x.dtype).tiny
    for i, sigma in enumerate(levels):
        sig = as_sigma_batch(sigma, x)
        for _ in range(int(corrector_steps)):
            score = score_fn(x, sig)
            z = randn(x.shape, x, generator)
            ratio = _per_example_norm(z) / _per_example_norm(score).clamp_min(tiny)
            eps = 2 * (snr * ratio) ** 2
            x = x + eps * score + (2 * eps) ** 0.5 * z
        nxt = levels[i + 1] if i + 1 < len(levels) else 0.0
        x_mean = x + (sigma**2 - nxt**2) * score_fn(x, sig)
        if i + 1 == len(levels) and denoise:
            x = x_mean
        else:
            x = x_mean + (sigma**2 - nxt**2) ** 0.5 * randn(x.shape, x, generator)
        emit(callback, i, i, sigma, x, x_mean=x_mean)
    return x
