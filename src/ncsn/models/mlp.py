"""Score MLP for low-dimensional data (2-D toy densities, tabular data)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.layers import SinusoidalEmbedding
from ncsn.models.sigma import SigmaLike, as_sigma_batch, validate_sigmas

__all__ = ["ScoreMLP"]

_ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "elu": nn.ELU}


class ScoreMLP(nn.Module):
    """A noise-conditional score MLP on ``R^dim``.

    The input ``x`` is concatenated with sinusoidal features of ``log sigma`` and passed
    through ``depth`` hidden layers. With ``scale_by_sigma`` the output is divided by sigma
    (the network learns ``sigma * score``); without it the raw output is the score, which
    also serves unconditional use (pass ``sigma=None`` or ``0``: the noise features are
    then zero).

    Inputs of shape ``(B, dim)`` are the norm; any ``(B, *shape)`` with ``prod(shape) ==
    dim`` is flattened and the output reshaped back, so the model also runs on tiny images.

    Args:
        dim: Data dimension ``D``.
        hidden: Hidden width.
        depth: Number of hidden layers (>= 1).
        sigmas: Noise levels, strictly decreasing, shape ``(L,)``; ``None`` (or empty) for
            unconditional use.
        scale_by_sigma: Divide the output by sigma.
        embed_dim: Number of sinusoidal noise features (even); 0 disables conditioning.
        activation: ``"silu"``, ``"softplus"`` or ``"elu"``.
        image_size: Bookkeeping for flattened images: ``channels = dim // image_size**2``.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        sigmas: Tensor | Sequence[float] | None = None,
        scale_by_sigma: bool = True,
        embed_dim: int = 16,
        activation: str = "silu",
        image_size: int = 1,
    ):
        super().__init__()
        for name, value, low in (
            ("dim", dim, 1),
            ("hidden", hidden, 1),
            ("depth", depth, 1),
            ("embed_dim", embed_dim, 0),
            ("image_size", image_size, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if dim % (image_size * image_size):
            raise ConfigError(f"dim={dim} is not a multiple of image_size**2={image_size**2}")
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}"
            )
        sig = validate_sigmas([] if sigmas is None else sigmas, allow_empty=True)
        self.register_buffer("sigmas", sig)
        self.dim = dim
        self.channels = dim // (image_size * image_size)
        self.image_size = image_size
        self.num_levels = int(sig.numel())
        self.scale_by_sigma = scale_by_sigma
        self.embed = SinusoidalEmbedding(embed_dim) if embed_dim > 0 else None
        act = _ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        width = dim + embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), act()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sigma: SigmaLike | None = None) -> Tensor:
        """Estimate the score at ``x``.

        Args:
            x: Points, shape ``(B, dim)`` (or ``(B, *shape)`` with ``dim`` elements each).
            sigma: Noise standard deviations, ``(B,)``, 0-d or float. ``None`` or 0 means
                unconditional (only allowed with ``scale_by_sigma=False``).

        Returns:
            The score estimate, same shape as ``x``.

        Raises:
            ValueError: If ``x`` has the wrong size, or ``scale_by_sigma`` is set and sigma
                is missing or not > 0.
        """
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"ScoreMLP(dim={self.dim}) got input of shape {tuple(shape)}")
        if sigma is None:
            if self.scale_by_sigma:
                raise ValueError(
                    "ScoreMLP(scale_by_sigma=True) needs sigma > 0; pass sigma or build the "
                    "model with scale_by_sigma=False for unconditional use"
                )
            s = torch.zeros(shape[0], device=x.device, dtype=x.dtype)
        else:
            s = as_sigma_batch(sigma, flat)
        if self.scale_by_sigma and bool((s <= 0).any()):
            raise ValueError(
                "ScoreMLP(scale_by_sigma=True) divides by sigma, so sigma must be > 0 "
                f"(got min {float(s.min())}); use scale_by_sigma=False for unconditional use"
            )
        h = flat
        if self.embed is not None:
            # sigma <= 0 (unconditional use) gets all-zero noise features
            positive = s > 0
            log_s = torch.log(torch.where(positive, s, torch.ones_like(s)))
            feats = self.embed(log_s) * positive[:, None].to(flat.dtype)
            h = torch.cat([flat, feats], dim=1)
        out = self.net(h)
        if self.scale_by_sigma:
            out = out / s[:, None]
        return out.reshape(shape)
