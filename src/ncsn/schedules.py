"""Noise schedules and the NCSNv2 rules for choosing them.

Everything here is a plain function returning a tensor or a number (the k-diffusion style).

Step-size convention (the one statement of it; :data:`STEP_CONVENTION` is its short form, and
every other place refers here): the paper's Algorithm 1 writes one Langevin
step as ``x <- x + (alpha/2) * s(x, sigma) + sqrt(alpha) * z`` with
``alpha_i = eps * sigma_i**2 / sigma_L**2``. The official NCSN/NCSNv2 code writes the same step
as ``x <- x + a * s + sqrt(2 a) * z`` with ``a = step_lr * sigma_i**2 / sigma_L**2``, so
``a = alpha / 2`` and ``step_lr = eps / 2``. Functions here that derive a step size return it
in the paper's convention (``eps``).
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import brentq
from scipy.special import ndtr

from ncsn.errors import ConfigError

#: One line of the step-size convention above, for reports and option help.
STEP_CONVENTION = (
    "x + (alpha_i/2) s + sqrt(alpha_i) z, alpha_i = eps sigma_i^2/sigma_L^2 "
    "(official step_lr = eps/2)"
)

__all__ = [
    "STEP_CONVENTION",
    "geometric_sigmas",
    "sigma_max_from_data",
    "gamma_for_dimension",
    "num_levels_from_gamma",
    "langevin_eps_for_steps",
]


def geometric_sigmas(
    sigma_max: float = 1.0,
    sigma_min: float = 0.01,
    num_levels: int = 10,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The paper's noise levels: a geometric sequence sigma_1 > ... > sigma_L.

    Args:
        sigma_max: sigma_1, the largest noise level (the paper: 1.0).
        sigma_min: sigma_L, the smallest noise level (the paper: 0.01).
        num_levels: L, the number of levels (the paper: 10).
        device: Device of the returned tensor.
        dtype: Floating dtype of the returned tensor.

    Returns:
        Tensor of shape (L,), descending, with ``sigmas[0] == sigma_max`` and
        ``sigmas[-1] == sigma_min``.

    Raises:
        ConfigError: If ``sigma_max <= sigma_min``, either is not positive, or ``num_levels < 1``.
    """
    if not (sigma_min > 0 and sigma_max > 0):
        raise ConfigError(
            f"noise levels must be positive, got sigma_max={sigma_max}, sigma_min={sigma_min}"
        )
    if num_levels < 1:
        raise ConfigError(f"num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return torch.tensor([sigma_max], device=device, dtype=dtype)
    if sigma_max <= sigma_min:
        raise ConfigError(f"sigma_max ({sigma_max}) must be larger than sigma_min ({sigma_min})")
    logs = torch.linspace(math.log(sigma_max), math.log(sigma_min), num_levels, dtype=torch.float64)
    return logs.exp().to(device=device, dtype=dtype)


def sigma_max_from_data(x: torch.Tensor, *, max_points: int = 10_000) -> float:
    """NCSNv2 technique 1: sigma_1 as large as the maximum pairwise distance of the data.

    Args:
        x: Training data, shape (N, ...). At most ``max_points`` rows are used.
        max_points: Cap on the number of points (the distance matrix is O(N^2)).

    Returns:
        The largest Euclidean distance between two rows of ``x``.
    """
    flat = x.reshape(x.shape[0], -1)[:max_points].double()
    best = 0.0
    for start in range(0, flat.shape[0], 1024):
        d = torch.cdist(flat[start : start + 1024], flat)
        best = max(best, float(d.max()))
    return best


def _overlap(gamma: float, dim: int) -> float:
    """NCSNv2's ``Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma)``."""
    root = math.sqrt(2.0 * dim)
    return float(ndtr(root * (gamma - 1) + 3 * gamma) - ndtr(root * (gamma - 1) - 3 * gamma))


def gamma_for_dimension(dim: int, *, target: float = 0.5) -> float:
    """NCSNv2 technique 2: the ratio gamma = sigma_{i-1}/sigma_i for data of dimension ``dim``.

    Solves ``Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma) = target``
    for gamma > 1 with Brent's method (:func:`scipy.optimize.brentq`; the left side falls from
    ``Phi(3) - Phi(-3)`` at gamma = 1 towards 0 once ``sqrt(2D) > 3``). For ``target = 0.5``
    the root is ``sqrt(2D) / (sqrt(2D) - 3)`` to about 1e-9 (the lower term is then 1/2).

    Args:
        dim: D, the data dimension (e.g. 3*32*32); at least 5.
        target: The overlap probability to reach (the paper: about 0.5).

    Returns:
        gamma > 1.
    """
    if dim < 5:  # sqrt(2D) <= 3: the overlap never falls below its value at gamma = 1
        raise ConfigError(f"the NCSNv2 ratio rule needs data of dimension >= 5, got {dim}")
    if not 0 < target < _overlap(1.0, dim):  # Phi(3) - Phi(-3) = 0.9973 at gamma = 1
        raise ConfigError(f"target must be in (0, {_overlap(1.0, dim):.4f}), got {target}")
    hi = 2.0
    while _overlap(hi, dim) > target:  # bracket the root: the overlap falls towards 0
        hi *= 2.0
    return float(brentq(lambda g: _overlap(g, dim) - target, 1.0, hi, xtol=1e-15))


def num_levels_from_gamma(
    sigma_max: float, sigma_min: float, dim: int, *, target: float = 0.5
) -> int:
    """NCSNv2 technique 2: the number of geometric levels L for ratio ``gamma_for_dimension``.

    Args:
        sigma_max: sigma_1.
        sigma_min: sigma_L.
        dim: Data dimension D.
        target: Overlap probability passed to :func:`gamma_for_dimension`.

    Returns:
        L such that the geometric sequence from sigma_max to sigma_min has ratio <= gamma.
    """
    if sigma_max <= sigma_min:
        raise ConfigError(f"sigma_max ({sigma_max}) must be larger than sigma_min ({sigma_min})")
    gamma = gamma_for_dimension(dim, target=target)
    return int(math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma))) + 1


def langevin_eps_for_steps(sigmas: torch.Tensor, n_steps_each: int) -> float:
    """NCSNv2 technique 4: the Langevin step eps for T steps per level, in the paper's convention.

    NCSNv2 picks its step ``e`` (official convention ``x + a s + sqrt(2a) z``,
    ``a = e sigma_i^2/sigma_L^2``) so that, for Gaussian data, the variance after T steps
    at one level matches the next level's noise:
    ``f(e) = (1 - e/sigma_L^2)^(2T) (gamma^2 - 2e/(sigma_L^2 - sigma_L^2 (1 - e/sigma_L^2)^2))
    + 2e/(sigma_L^2 - sigma_L^2 (1 - e/sigma_L^2)^2)`` is as close to 1 as it gets. With
    ``x = e/sigma_L^2`` in (0, 1) that is ``f = (1-x)^(2T) (gamma^2 - c) + c``, ``c = 2/(2-x)``;
    f > 1 for every x, so the step is the minimiser of f: the root of
    ``f'(x) = c^2 (1 - (1-x)^(2T)) / 2 - 2T (1-x)^(2T-1) (gamma^2 - c)``, negative at x = 0 and
    2 at x = 1, found with Brent's method (:func:`scipy.optimize.brentq`). For T = 1 it is
    ``x = 1 - 1/gamma^2``. The result is converted to the paper's convention (``eps = 2 e``).

    Args:
        sigmas: The noise levels, descending, shape (L,).
        n_steps_each: T, Langevin steps per level.

    Returns:
        eps (paper convention, for :func:`ncsn.sampling.annealed_langevin_dynamics`).
    """
    s = [float(v) for v in sigmas]
    if len(s) < 2:
        raise ConfigError("need at least two noise levels to derive a Langevin step")
    gamma2 = (s[0] / s[1]) ** 2
    if not gamma2 > 1:
        raise ConfigError(f"noise levels must be descending, got sigma_1={s[0]}, sigma_2={s[1]}")
    t = int(n_steps_each)
    if t < 1:
        raise ConfigError(f"n_steps_each must be >= 1, got {n_steps_each}")

    def slope(x: float) -> float:  # f'(x)
        c = 2.0 / (2.0 - x)
        return c * c * (1.0 - (1.0 - x) ** (2 * t)) / 2.0 - 2 * t * (1.0 - x) ** (2 * t - 1) * (
            gamma2 - c
        )

    x = brentq(slope, 0.0, 1.0, xtol=1e-15)
    return 2.0 * x * s[-1] ** 2
