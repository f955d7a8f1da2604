"""Exact scores of Gaussians and Gaussian mixtures (closed forms) used by the tests."""

from __future__ import annotations

import math

import torch


def gaussian_score(mean: float, std: float):
    """Score of N(mean, std^2 I) perturbed by N(0, sigma^2 I): -(x - mean)/(std^2 + sigma^2)."""

    def score_fn(x, sigma):
        var = std**2 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
        return -(x - mean) / var

    return score_fn


def mixture_score(means: torch.Tensor, weights: torch.Tensor, std: float = 1.0):
    """Exact score of sum_k w_k N(mu_k, (std^2 + sigma^2) I) in R^D, per-example sigma."""

    def score_fn(x, sigma):
        var = (std**2 + sigma**2).reshape(-1, 1, 1)  # (B,1,1)
        diff = x[:, None, :] - means[None].to(x)  # (B,K,D)
        logp = torch.log(weights.to(x))[None] - 0.5 * (diff**2).sum(-1) / var[:, :, 0]
        resp = torch.softmax(logp, dim=1)  # (B,K)
        return -(resp[..., None] * diff).sum(1) / var[:, :, 0]

    return score_fn


def gaussian_log_density(x, mean, var):
    """log N(x; mean, var I) of each row of x (B, D), in nats."""
    d = x.shape[1]
    return -0.5 * ((x - mean) ** 2).sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)


def mixture_log_density(x, means, weights, var):
    """log sum_k w_k N(x; mu_k, var I) of each row of x (B, D), in nats."""
    comps = torch.stack([gaussian_log_density(x, m, var) for m in means], dim=1)
    return torch.logsumexp(comps + torch.log(weights.to(x))[None], dim=1)
