"""Two-dimensional toy data: a Gaussian mixture with exact density and score, and samplers.

:class:`GaussianMixture` is the workhorse of the toy experiments: an isotropic Gaussian
mixture ``p(x) = sum_k w_k N(x; mu_k, s_k^2 I)`` whose log density and score are known in
closed form, and whose Gaussian perturbation ``p_sigma = p * N(0, sigma^2 I)`` is again a
mixture (component variance ``s_k^2 + sigma^2``). Its :meth:`GaussianMixture.score_fn`
follows the library's score contract ``score_fn(x, sigma)`` with ``sigma`` of shape (batch,),
so it can be handed to every loss and sampler in place of a network.

The other datasets (rings, checkerboard, swiss roll, moons, eight Gaussians) only sample;
:data:`TOY_DATASETS` maps their names to samplers ``sampler(n, generator=None) -> (n, 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ncsn.errors import ConfigError
from ncsn.rng import randn

__all__ = [
    "GaussianMixture",
    "paper_mixture",
    "rings",
    "checkerboard",
    "swiss_roll",
    "moons",
    "eight_gaussians",
    "mixture",
    "TOY_DATASETS",
    "get_toy_dataset",
]

Sampler = Callable[..., torch.Tensor]


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) float32 draws on the CPU (or the generator's device), then on the CPU."""
    if generator is None:
        return torch.rand(shape)
    return torch.rand(shape, generator=generator, device=generator.device).cpu()


def _categorical(probs: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` draws of a category index with probabilities ``probs``, on the CPU."""
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.multinomial(probs.to(device), n, replacement=True, generator=generator).cpu()


def _randn(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return randn(shape, torch.empty(0), generator)


class GaussianMixture:
    """Isotropic Gaussian mixture ``sum_k w_k N(mu_k, s_k^2 I)`` with exact log density and score.

    Parameters are stored in float64 on the CPU; every method computes in the dtype and on the
    device of its input ``x``.

    Args:
        means: Component means, shape (K, D).
        stds: Component standard deviations, a scalar or shape (K,), all > 0.
        weights: Mixture weights, shape (K,), all > 0; normalised to sum to 1. Default: equal.

    Raises:
        ConfigError: On bad shapes or non-positive values.
    """

    def __init__(
        self,
        means: torch.Tensor | list,
        stds: torch.Tensor | float | list = 1.0,
        weights: torch.Tensor | list | None = None,
    ) -> None:
        mu = torch.as_tensor(means, dtype=torch.float64).detach().cpu().clone()
        if mu.ndim != 2 or mu.shape[0] < 1:
            raise ConfigError(f"means must have shape (K, D) with K >= 1, got {tuple(mu.shape)}")
        k = mu.shape[0]
        s = torch.as_tensor(stds, dtype=torch.float64).detach().cpu().clone()
        if s.ndim == 0:
            s = s.expand(k).clone()
        if s.shape != (k,):
            raise ConfigError(f"stds must be a scalar or have shape ({k},), got {tuple(s.shape)}")
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu().clone()
        if w.shape != (k,):
            raise ConfigError(f"weights must have shape ({k},), got {tuple(w.shape)}")
        if not (torch.isfinite(s).all() and (s > 0).all()):
            raise ConfigError(f"stds must be finite and > 0, got {s.tolist()}")
        if not (torch.isfinite(w).all() and (w > 0).all()):
            raise ConfigError(f"weights must be finite and > 0, got {w.tolist()}")
        if not torch.isfinite(mu).all():
            raise ConfigError("means must be finite")
        self.means = mu
        self.stds = s
        self.weights = w / w.sum()

    # ------------------------------------------------------------------ basic properties
    @property
    def num_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """D, the data dimension."""
        return self.means.shape[1]

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(means={self.means.tolist()}, stds={self.stds.tolist()}, "
            f"weights={self.weights.tolist()})"
        )

    def _check_x(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        return_components: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` i.i.d. samples.

        Args:
            n: Number of samples.
            generator: Source of randomness (CPU or the generator's device).
            dtype: Floating dtype of the result.
            device: Device of the result.
            return_components: Also return the component index of each sample.

        Returns:
            Samples of shape (n, D), or ``(samples, components)`` with components of shape (n,).
        """
        n = int(n)
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        comp = _categorical(self.weights, n, generator)
        z = randn((n, self.dim), torch.empty(0, dtype=torch.float64), generator).cpu()
        x = self.means[comp] + self.stds[comp, None] * z
        x = x.to(device=device, dtype=dtype)
        if return_components:
            return x, comp.to(device)
        return x

    # ------------------------------------------------------------------ density and score
    def _log_joint(self, x: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x; mu_k, var I)`` for each k; var of shape (K,) or (N, K)."""
        mu = self.means.to(x)
        sq = ((x[:, None, :] - mu[None]) ** 2).sum(-1)  # (N, K)
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.log(self.weights.to(x)) + log_norm - 0.5 * sq / var

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density.

        Args:
            x: Points, shape (N, D).

        Returns:
            ``log p(x)``, shape (N,).
        """
        self._check_x(x)
        return torch.logsumexp(self._log_joint(x, self.stds.to(x) ** 2), dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities ``p(k | x)``, shape (N, K) (softmax, stable)."""
        self._check_x(x)
        return torch.softmax(self._log_joint(x, self.stds.to(x) ** 2), dim=1)

    def _score(self, x: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        # grad log p = sum_k r_k(x) * (-(x - mu_k) / var_k), r = softmax of the log joints.
        resp = torch.softmax(self._log_joint(x, var), dim=1)  # (N, K)
        diff = x[:, None, :] - self.means.to(x)[None]  # (N, K, D)
        return -((resp / var)[..., None] * diff).sum(dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Exact score ``grad_x log p(x)``.

        Args:
            x: Points, shape (N, D).

        Returns:
            Scores, shape (N, D).
        """
        self._check_x(x)
        return self._score(x, self.stds.to(x) ** 2)

    def perturbed(self, sigma: float) -> GaussianMixture:
        """The mixture convolved with ``N(0, sigma^2 I)``: component variances ``s_k^2 + sigma^2``.

        Args:
            sigma: Noise standard deviation, >= 0.

        Returns:
            A new :class:`GaussianMixture`.
        """
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ConfigError(f"sigma must be finite and >= 0, got {sigma}")
        return GaussianMixture(self.means, (self.stds**2 + sigma**2).sqrt(), self.weights)

    def score_fn(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact score of the perturbed mixture, per example: the library's score contract.

        Example ``b`` gets the score of ``p * N(0, sigma_b^2 I)``, i.e. component variances
        ``s_k^2 + sigma_b^2``. Pass the bound method ``mixture.score_fn`` wherever a
        ``score_fn(x, sigma)`` is expected.

        Args:
            x: Points, shape (B, D).
            sigma: Noise standard deviations, shape (B,), or a scalar for all examples.

        Returns:
            Scores, shape (B, D).
        """
        self._check_x(x)
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sig.ndim == 0:
            sig = sig.expand(x.shape[0])
        if sig.shape != (x.shape[0],):
            raise ConfigError(
                f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(sig.shape)}"
            )
        var = self.stds.to(x)[None] ** 2 + sig[:, None] ** 2  # (B, K)
        return self._score(x, var)

    def nearest_component(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest mean (Euclidean) for each point, shape (N,)."""
        self._check_x(x)
        return torch.cdist(x.to(torch.float64).cpu(), self.means).argmin(dim=1)

    def mode_fractions(self, x: torch.Tensor) -> torch.Tensor:
        """Fraction of the points nearest to each mean, shape (K,) (float64, sums to 1)."""
        counts = torch.bincount(self.nearest_component(x), minlength=self.num_components)
        return counts.to(torch.float64) / max(x.shape[0], 1)


def paper_mixture() -> GaussianMixture:
    """The paper's Sec. 3.2 / Fig. 2-3 mixture: ``1/5 N((-5,-5), I) + 4/5 N((5,5), I)``."""
    return GaussianMixture(torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), 1.0, torch.tensor([0.2, 0.8]))


# ---------------------------------------------------------------------- sampling-only data


def mixture(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of :func:`paper_mixture`, shape (n, 2)."""
    return paper_mixture().sample(n, generator)


def rings(n: int, generator: torch.Generator | None = None, *, noise: float = 0.08) -> torch.Tensor:
    """Three concentric rings (radii 1, 2, 3; points spread in proportion to circumference).

    Args:
        n: Number of samples.
        generator: Source of randomness.
        noise: Standard deviation of the Gaussian jitter.

    Returns:
        Samples, shape (n, 2).
    """
    radii = torch.tensor([1.0, 2.0, 3.0])
    ring = _categorical(radii / radii.sum(), n, generator)
    angle = 2 * math.pi * _rand((n,), generator)
    r = radii[ring]
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    return x + noise * _randn((n, 2), generator)


def checkerboard(
    n: int, generator: torch.Generator | None = None, *, squares: int = 4, size: float = 2.0
) -> torch.Tensor:
    """Uniform on the dark squares of a ``squares x squares`` checkerboard centred at 0.

    Args:
        n: Number of samples.
        generator: Source of randomness.
        squares: Squares per side (even, so that half of them are filled).
        size: Side of one square.

    Returns:
        Samples, shape (n, 2).
    """
    if squares < 2 or squares % 2:
        raise ConfigError(f"squares must be an even number >= 2, got {squares}")
    u = _rand((n, 2), generator) * squares  # position in square units
    col = u[:, 0].floor()
    row = u[:, 1].floor()
    # Move points on light squares one square to the right (wrapping): all land on dark ones.
    light = (row + col) % 2 == 1
    u[:, 0] = torch.where(light, (u[:, 0] + 1) % squares, u[:, 0])
    return (u - squares / 2) * size


def swiss_roll(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.25
) -> torch.Tensor:
    """Two-dimensional swiss roll (spiral), scaled to roughly [-3, 3]^2.

    Args:
        n: Number of samples.
        generator: Source of randomness.
        noise: Standard deviation of the Gaussian jitter (before scaling by 1/4).

    Returns:
        Samples, shape (n, 2).
    """
    t = 1.5 * math.pi * (1 + 2 * _rand((n,), generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    return (x + noise * _randn((n, 2), generator)) / 4.0


def moons(n: int, generator: torch.Generator | None = None, *, noise: float = 0.08) -> torch.Tensor:
    """Two interleaving half circles, centred and scaled to roughly [-3, 3] x [-1.5, 1.5].

    Args:
        n: Number of samples.
        generator: Source of randomness.
        noise: Standard deviation of the Gaussian jitter (in the unit-radius frame).

    Returns:
        Samples, shape (n, 2).
    """
    upper = _rand((n,), generator) < 0.5
    angle = math.pi * _rand((n,), generator)
    x0 = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    x1 = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    x = torch.stack([x0 - 0.5, x1 - 0.25], dim=1) + noise * _randn((n, 2), generator)
    return 2.0 * x


def eight_gaussians(
    n: int, generator: torch.Generator | None = None, *, radius: float = 4.0, std: float = 0.3
) -> torch.Tensor:
    """Eight equal Gaussians on a circle.

    Args:
        n: Number of samples.
        generator: Source of randomness.
        radius: Radius of the circle of means.
        std: Standard deviation of each component.

    Returns:
        Samples, shape (n, 2).
    """
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, std).sample(n, generator)


TOY_DATASETS: dict[str, Sampler] = {
    "mixture": mixture,
    "rings": rings,
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "moons": moons,
    "8gaussians": eight_gaussians,
}


def get_toy_dataset(name: str) -> Sampler:
    """Look up a toy sampler by name.

    Args:
        name: One of the keys of :data:`TOY_DATASETS`.

    Returns:
        ``sampler(n, generator=None) -> Tensor`` of shape (n, 2).

    Raises:
        ConfigError: For an unknown name (the message lists the choices).
    """
    try:
        return TOY_DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown toy dataset {name!r}; choose one of {', '.join(sorted(TOY_DATASETS))}"
        ) from None
