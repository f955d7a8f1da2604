"""Exact scores of Gaussians and Gaussian mixtures (closed forms) used by the tests."""

from __future__ import annotations

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
