"""The noise levels a sampler walks: geometric or Karras schedules, and, for networks
trained on a fixed set of levels, the nearest of those levels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ncsn.sampling.registry import get_sampler
from ncsn.schedules import geometric_sigmas

__all__ = ["karras_sigmas", "nearest_trained_levels", "sampler_sigmas"]


def karras_sigmas(sigma_max: float, sigma_min: float, n: int, *, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022), eq. (5): n levels from sigma_max to sigma_min (float64).

    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``;
    rho = 7 spends more steps at small noise, rho = 1 is uniform in sigma and rho -> inf
    geometric. ``n = 1`` gives ``[sigma_max]``.
    """
    if n == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    ramp = torch.linspace(0, 1, int(n), dtype=torch.float64)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def nearest_trained_levels(targets: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    """Distinct trained levels close (in log sigma) to each target, in descending order.

    For networks that know only their L training levels (the paper's NCSN maps any sigma to
    the nearest one): target k takes the trained level nearest to it, moved to the next unused
    lower level if it repeats the previous choice, and capped so that the remaining targets
    still find levels. ``n <= L`` targets give n distinct levels; n = L gives all of them.

    Args:
        targets: Descending positive noise levels, shape (n,), n <= L.
        trained: The network's levels, descending, shape (L,).

    Returns:
        n of the trained levels, descending.
    """
    n, big_l = int(targets.numel()), int(trained.numel())
    if n > big_l:
        raise ValueError(f"{n} target levels but only {big_l} trained ones")
    log_trained = trained.double().log()
    picked, prev = [], -1
    for k, s in enumerate(targets.double().tolist()):
        i = int((log_trained - math.log(s)).abs().argmin())
        i = min(max(i, prev + 1), big_l - (n - k))
        picked.append(i)
        prev = i
    return trained[picked]


def sampler_sigmas(
    name: str,
    *,
    sigma_max: float,
    sigma_min: float,
    levels: int,
    options: Mapping[str, Any] | None = None,
    trained: torch.Tensor | None = None,
) -> torch.Tensor:
    """The schedule sampler ``name`` walks, as passed to its function.

    Args:
        name: Registered sampler.
        sigma_max: Largest level.
        sigma_min: Smallest positive level.
        levels: Number of positive levels (capped at L when ``trained`` is given).
        options: The sampler's options (``rho`` for Karras schedules).
        trained: The network's levels if it knows only those (then the schedule uses only
            them); ``None`` for networks conditioned on any sigma.

    Returns:
        Descending levels (float32 for the geometric schedule, as the network's own levels;
        float64 for Karras), followed by 0 for samplers whose last step is the denoiser.
    """
    spec = get_sampler(name)
    _, sched = spec.split(options or {})
    n = int(levels) if trained is None else min(int(levels), int(trained.numel()))
    if spec.schedule == "karras":
        sig = karras_sigmas(sigma_max, sigma_min, n, **sched)
    else:
        sig = geometric_sigmas(sigma_max, sigma_min, n)
    if trained is not None:
        sig = nearest_trained_levels(sig, trained.detach().cpu()).to(sig.dtype)
    if spec.to_zero:
        sig = torch.cat([sig, sig.new_zeros(1)])
    return sig
