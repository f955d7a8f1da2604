"""Batch transforms between the data range [0, 1] and a model's input space."""

from __future__ import annotations

import torch

from ncsn.rng import Generators, rand

__all__ = ["random_hflip", "preprocess", "postprocess"]


def random_hflip(
    x: torch.Tensor,
    *,
    generator: Generators = None,
    p: float = 0.5,
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flip each image of a batch left-right with probability ``p``.

    Args:
        x: Batch (B, C, H, W).
        generator: Optional generator.
        p: Flip probability.
        uniform: Optional U[0, 1) draws of shape (B,) to use instead of drawing (image k is
            flipped when ``uniform[k] < p``).

    Returns:
        The (new) batch.
    """
    u = rand((x.shape[0],), x, generator) if uniform is None else uniform.to(x.device)
    flip = (u < p).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(flip, x.flip(-1), x)


def preprocess(
    x: torch.Tensor,
    *,
    dequantize: bool,
    logit: bool,
    generator: Generators = None,
    lam: float = 1e-6,
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Map a batch in [0, 1] to model space.

    Args:
        x: Images in [0, 1].
        dequantize: Uniform dequantisation ``x * 255/256 + U(0, 1)/256``.
        logit: Logit transform ``logit(lam + (1 - 2 lam) x)``.
        generator: Optional generator for the dequantisation noise.
        lam: Logit margin.
        uniform: Optional U[0, 1) dequantisation draws (shape of ``x``) to use instead of
            drawing.

    Returns:
        The transformed batch (``x`` unchanged when both flags are off).
    """
    if dequantize:
        u = rand(x.shape, x, generator) if uniform is None else uniform.to(x)
        x = x * (255.0 / 256.0) + u / 256.0
    if logit:
        p = lam + (1.0 - 2.0 * lam) * x
        x = torch.log(p) - torch.log1p(-p)
    return x


def postprocess(x: torch.Tensor, *, logit: bool, lam: float = 1e-6) -> torch.Tensor:
    """Inverse of :func:`preprocess` (dequantisation is not undone), clamped to [0, 1].

    Args:
        x: Batch in model space.
        logit: Whether :func:`preprocess` applied the logit transform.
        lam: The logit margin used.

    Returns:
        Images in [0, 1].
    """
    if logit:
        x = (torch.sigmoid(x) - lam) / (1.0 - 2.0 * lam)
    return x.clamp(0.0, 1.0)
