"""Bits per dimension of 8-bit images under a score model (the ``bpd`` metric).

Each image x in {0, 1/255, ..., 1} is uniformly dequantised, ``y = (255 x + u) / 256`` with
u ~ U[0, 1)^D, the model's log-density of y comes from the probability-flow ODE
(:func:`ncsn.likelihood.log_likelihood`), and

    bpd = -log p(y) / (D ln 2) + 8,

where the 8 = log2(256) converts the density on the [0, 1] scale of y to the 0..256 scale of
the 8-bit values (``log p_256 = log p_[0,1] - D log 256``); by Jensen's inequality this bounds
the discrete model's bits per dimension from above. The prior is ncsn's sampling start,
N(0.5, sigma_1^2 I) in [0, 1] space (N(0, sigma_1^2 I) in logit space); models trained with
the logit transform add its log-Jacobian. See docs/paper.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ncsn.likelihood import probability_flow_log_likelihood
from ncsn.models.sigma import ScoreFn
from ncsn.rng import image_generator

__all__ = ["dequantize", "bits_per_dim"]


def dequantize(images: torch.Tensor, seed: int = 0, start: int = 0) -> torch.Tensor:
    """Uniform dequantisation ``(255 x + u) / 256`` of images ``start``, ``start + 1``, ...:
    each image's noise comes from its own generator, so the result ignores the batching."""
    gens = [image_generator(seed, start + k, 0) for k in range(images.shape[0])]
    u = torch.stack([torch.rand(images.shape[1:], generator=g) for g in gens])
    return images * (255.0 / 256.0) + u.to(images) / 256.0


def _to_model_space(y: torch.Tensor, logit: bool, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's input and log |d input / d y| per row (0 without the logit transform)."""
    if not logit:
        return y, torch.zeros(y.shape[0], dtype=torch.float64)
    p = lam + (1 - 2 * lam) * y.double()
    logdet = (math.log(1 - 2 * lam) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    return (torch.log(p) - torch.log1p(-p)).to(y.dtype), logdet


def bits_per_dim(
    score_fn: ScoreFn,
    images: torch.Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    logit: bool = False,
    lam: float = 1e-6,
    seed: int = 0,
    batch_size: int = 100,
    exact_divergence: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict:
    """Bits per dimension of ``images`` (8-bit values in [0, 1]) under the score model.

    Args:
        score_fn: The network, ``score_fn(x, sigma)``.
        images: (N, C, H, W) in [0, 1], multiples of 1/255.
        sigma_min: The model's smallest noise level (start of the ODE).
        sigma_max: Its largest (the prior's standard deviation).
        logit: The model works in logit space (``data.logit_transform``).
        lam: The logit margin.
        seed: Seed of the dequantisation noise and the Hutchinson probes.
        batch_size: Images per ODE solve.
        exact_divergence: Exact Jacobian trace (D backward passes) instead of Hutchinson.
        device: Where the network runs.
        progress: Show a progress bar.

    Returns:
        ``mean``, ``std``, ``sem`` (standard error of the mean) over the images, ``n``,
        ``per_image`` (list), ``nfe`` (mean score evaluations per ODE solve), ``prior_bpd``
        (mean contribution of the prior term) and the settings.
    """
    from tqdm.auto import tqdm

    n, dim = images.shape[0], int(images[0].numel())
    offset = 0.0 if logit else 0.5

    def shifted(v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return score_fn(v + offset, sigma)

    values, priors, nfes = [], [], []
    for start in tqdm(range(0, n, batch_size), desc="bpd", disable=not progress):
        y = dequantize(images[start : start + batch_size].float(), seed, start)
        z, logdet = _to_model_space(y, logit, lam)
        gens = [image_generator(seed, start + k, 1) for k in range(len(z))]
        res = probability_flow_log_likelihood(
            shifted,
            (z - offset).to(device),
            sigma_min,
            sigma_max,
            exact_divergence=exact_divergence,
            generator=gens,
        )
        log_y = res.log_density.cpu() + logdet
        values.append(-log_y / (dim * math.log(2)) + 8.0)
        priors.append(-res.prior_log_density.cpu() / (dim * math.log(2)))
        nfes.append(res.nfe)
    bpd = torch.cat(values).numpy()
    return {
        "mean": float(bpd.mean()),
        "std": float(bpd.std(ddof=1)) if n > 1 else 0.0,
        "sem": float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "n": int(n),
        "per_image": [round(float(b), 5) for b in bpd],
        "nfe": float(np.mean(nfes)),
        "prior_bpd": float(torch.cat(priors).mean()),
        "sigma_min": float(sigma_min),
        "sigma_max": float(sigma_max),
        "logit": bool(logit),
        "divergence": "exact" if exact_divergence else "hutchinson (rademacher)",
        "solver": "scipy solve_ivp RK45, rtol = atol = 1e-5, in log sigma",
        "seed": int(seed),
    }
