"""EDM's training recipe (Karras et al. 2022) in ncsn's terms.

* data statistics: the mean pixel value and the standard deviation around it, which the
  preconditioning (:class:`ncsn.models.precond.EDMPrecond`) and the weighting use;
* the log-normal noise distribution: ``log sigma ~ N(p_mean, p_std^2)``, truncated to the
  schedule's range ``[sigma_L, sigma_1]``; continuous for networks conditioned on sigma
  itself, a discretised version (level probabilities proportional to the density at
  ``log sigma_i``, the levels being equally spaced in ``log sigma``) for the paper's
  level-indexed NCSN;
* the weighting: EDM's ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` on
  ``||D - x||^2`` is ``sigma^2 (1 + sigma^2 / sigma_data^2)`` on ncsn's score loss
  ``1/2 ||s - target||^2`` (since ``D - x = sigma^2 (s - target)``): the paper's
  ``lambda = sigma^2`` times ``1 + sigma^2 / sigma_data^2``. With the preconditioning every
  level's term is then ``1/2 ||F - F_target||^2``, of order one at every sigma.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from ncsn.config import Config
from ncsn.models import has_discrete_sigmas
from ncsn.models.precond import DEFAULT_SIGMA_DATA
from ncsn.models.sigma import nearest_level
from ncsn.rng import rand
from ncsn.transforms import preprocess

__all__ = [
    "data_statistics",
    "resolve_data_statistics",
    "lognormal_level_probs",
    "draw_lognormal_sigmas",
    "edm_weight",
    "loss_weighting",
    "draw_training_sigmas",
    "dsm_loss_options",
]

_MAX_STAT_IMAGES = 2000


def data_statistics(images: torch.Tensor) -> tuple[float, float]:
    """The mean value of ``images`` and their root-mean-square deviation from it.

    Args:
        images: (N, ...) data in model space.

    Returns:
        ``(mean, sigma_data)`` over all pixels of all images.
    """
    x = images.detach().double()
    mean = x.mean()
    return float(mean), float(((x - mean) ** 2).mean().sqrt())


def _sig4(v: float) -> float:
    return float(f"{v:.4g}")


def resolve_data_statistics(cfg: Config, train_ds: Any) -> Config:
    """Fill ``model.data_mean`` and ``model.sigma_data`` from the data when EDM needs them.

    Only when ``model.precond`` or ``training.weighting`` is ``edm`` and a value is unset;
    at most 2,000 evenly spaced training images are read (after the logit transform if the
    config uses it), and the values are rounded to 4 significant digits.

    Args:
        cfg: The config.
        train_ds: The training split (an ncsn data set with ``get_batch``).

    Returns:
        ``cfg``, or a copy with the two values filled in.
    """
    model_cfg = cfg.model
    needed = model_cfg.precond == "edm" or cfg.training.weighting == "edm"
    if not needed or (model_cfg.sigma_data is not None and model_cfg.data_mean is not None):
        return cfg
    n = len(train_ds)
    idx = torch.linspace(0, n - 1, min(n, _MAX_STAT_IMAGES)).round().long().unique()
    images = train_ds.get_batch(idx)[0]
    images = preprocess(images, dequantize=False, logit=cfg.data.logit_transform)
    mean, sd = data_statistics(images)
    model = dataclasses.replace(
        model_cfg,
        data_mean=_sig4(mean) if model_cfg.data_mean is None else model_cfg.data_mean,
        sigma_data=_sig4(sd) if model_cfg.sigma_data is None else model_cfg.sigma_data,
    )
    return dataclasses.replace(cfg, model=model)


def lognormal_level_probs(sigmas: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """Discretised log-normal: level probabilities proportional to N(log sigma_i; p_mean, p_std).

    Args:
        sigmas: The L levels (geometric, so equally spaced in log sigma).
        p_mean: Mean of log sigma.
        p_std: Standard deviation of log sigma (> 0).

    Returns:
        Probabilities, shape (L,), float64 on the CPU, summing to one.
    """
    z = (sigmas.detach().double().cpu().log() - p_mean) / p_std
    return torch.softmax(-0.5 * z * z, dim=0)


def draw_lognormal_sigmas(
    n: int,
    sigma_min: float,
    sigma_max: float,
    p_mean: float,
    p_std: float,
    *,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` draws of sigma with ``log sigma ~ N(p_mean, p_std^2)`` truncated to the range.

    Inverse-CDF sampling of the truncated normal (one uniform draw per example).

    Args:
        n: Number of draws.
        sigma_min: Lower end of the range.
        sigma_max: Upper end of the range.
        p_mean: Mean of log sigma.
        p_std: Standard deviation of log sigma (> 0).
        like: Tensor whose dtype and device the result takes.
        generator: Source of the uniform draws.

    Returns:
        Shape (n,), every value in ``[sigma_min, sigma_max]``.
    """
    lo_log, hi_log = math.log(sigma_min), math.log(sigma_max)
    bounds = torch.tensor([lo_log, hi_log], dtype=torch.float64)
    lo, hi = torch.special.ndtr((bounds - p_mean) / p_std).tolist()
    u = rand((n,), torch.empty(0, dtype=torch.float64), generator)
    log_sigma = p_mean + p_std * torch.special.ndtri(lo + (hi - lo) * u)
    log_sigma = torch.nan_to_num(log_sigma, nan=lo_log).clamp(lo_log, hi_log)
    return log_sigma.exp().to(device=like.device, dtype=like.dtype)


def edm_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM's loss weighting in ncsn's score units: ``sigma^2 (1 + sigma^2 / sigma_data^2)``."""
    return sigma * sigma * (1.0 + sigma * sigma / sigma_data**2)


def loss_weighting(cfg: Config) -> dict[str, Any]:
    """The weighting keywords of :func:`ncsn.losses.anneal_dsm_loss`: ``power`` and, for
    ``training.weighting: edm``, ``weight``."""
    training, model_cfg = cfg.training, cfg.model
    opts: dict[str, Any] = {"power": training.loss_power}
    if training.weighting == "edm":
        sd = model_cfg.sigma_data if model_cfg.sigma_data is not None else DEFAULT_SIGMA_DATA
        weight: Callable[[torch.Tensor], torch.Tensor] = lambda s: edm_weight(s, sd)  # noqa: E731
        opts["weight"] = weight
    return opts


def draw_training_sigmas(
    cfg: Config,
    n: int,
    sigmas: torch.Tensor,
    like: torch.Tensor,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """The log-normal noise draws of ``n`` examples (``training.sigma_dist: lognormal``).

    Args:
        cfg: The config (``training.p_mean``, ``p_std``; ``model.name``).
        n: Number of examples.
        sigmas: The L levels.
        like: Tensor whose dtype and device continuous sigmas take.
        generator: Source of the draws.

    Returns:
        ``{}`` for ``uniform`` (the loss draws the levels itself); else ``levels`` (on
        ``like``'s device) and, for networks conditioned on sigma itself, ``sigma``.
    """
    training, model_cfg = cfg.training, cfg.model
    if training.sigma_dist != "lognormal":
        return {}
    if has_discrete_sigmas(model_cfg.name):  # sees only the nearest level: train on the levels
        p = lognormal_level_probs(sigmas, training.p_mean, training.p_std)
        levels = torch.multinomial(p, n, replacement=True, generator=generator)
        return {"levels": levels.to(like.device)}
    lo, hi = float(sigmas.min()), float(sigmas.max())
    sigma = draw_lognormal_sigmas(
        n, lo, hi, training.p_mean, training.p_std, like=like, generator=generator
    )
    return {"sigma": sigma, "levels": nearest_level(sigma, sigmas)}


def dsm_loss_options(
    cfg: Config, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None
) -> dict[str, Any]:
    """Keyword arguments of :func:`ncsn.losses.anneal_dsm_loss` for ``cfg.training``.

    ``weighting: power`` with ``sigma_dist: uniform`` gives just ``power`` (the paper's
    objective, the same random draws as always).

    Args:
        cfg: The config (``training.weighting``, ``sigma_dist``, ``p_mean``, ``p_std``,
            ``loss_power``; ``model.name`` and ``model.sigma_data``).
        x: The batch (its size, dtype and device).
        sigmas: The L levels.
        generator: Source of the level draws.

    Returns:
        A dict with ``power`` and, as configured, ``weight``, ``levels`` and ``sigma``.
    """
    return {**loss_weighting(cfg), **draw_training_sigmas(cfg, x.shape[0], sigmas, x, generator)}
