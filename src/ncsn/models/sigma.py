"""Noise levels as the score networks see them: the score-function type, schedule validation,
per-example sigma batches, nearest-level lookup, and the attributes every network registers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ncsn.acceleration import compiling
from ncsn.errors import ConfigError

__all__ = [
    "ScoreFn",
    "SigmaLike",
    "as_sigma_batch",
    "check_positive_sigma",
    "init_score_net",
    "nearest_level",
    "validate_sigmas",
]

SigmaLike = Tensor | float

#: The one contract of a score network, loss and sampler argument: ``score_fn(x, sigma)`` with
#: ``x`` of shape (B, ...) and ``sigma`` of shape (B,) returns the score, shaped like ``x``.
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def init_score_net(
    module: nn.Module, channels: int, image_size: int, sigmas: Tensor | Sequence[float]
) -> Tensor:
    """Register ``sigmas`` and set the attributes every score network exposes.

    Args:
        module: The network being built.
        channels: Image channels.
        image_size: Image side.
        sigmas: Noise levels, strictly decreasing.

    Returns:
        The validated ``sigmas`` buffer.
    """
    sig = validate_sigmas(sigmas)
    module.register_buffer("sigmas", sig)
    module.channels = channels
    module.image_size = image_size
    module.num_levels = int(sig.numel())
    return sig


def validate_sigmas(sigmas: Tensor | Sequence[float], *, allow_empty: bool = False) -> Tensor:
    """Check and normalise a noise schedule.

    Args:
        sigmas: The L noise standard deviations, strictly decreasing and positive.
        allow_empty: Accept an empty schedule (for unconditional models).

    Returns:
        A detached float32 tensor of shape ``(L,)`` on the CPU.

    Raises:
        ConfigError: If the schedule is not 1-D, empty, non-finite, non-positive or not
            strictly decreasing.
    """
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float32, device="cpu").detach().clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"sigmas must be a 1-D sequence of floats, got {sigmas!r}") from exc
    if s.dim() != 1:
        raise ConfigError(f"sigmas must be 1-D with shape (L,), got shape {tuple(s.shape)}")
    if s.numel() == 0:
        if allow_empty:
            return s
        raise ConfigError("sigmas must hold at least one noise level, got an empty schedule")
    if not torch.isfinite(s).all() or (s <= 0).any():
        raise ConfigError(f"sigmas must be finite and > 0, got {s.tolist()}")
    if s.numel() > 1 and not (s[1:] < s[:-1]).all():
        raise ConfigError(
            f"sigmas must be strictly decreasing (largest noise level first), got {s.tolist()}"
        )
    return s


def as_sigma_batch(sigma: SigmaLike, x: Tensor) -> Tensor:
    """Broadcast ``sigma`` to one value per example of ``x``.

    Args:
        sigma: A Python float, a 0-d tensor, a one-element tensor, or a tensor with exactly
            ``B`` elements (e.g. shape ``(B,)`` or ``(B, 1, 1, 1)``).
        x: The input batch; its first dimension is ``B``.

    Returns:
        A tensor of shape ``(B,)`` with the dtype and device of ``x``.

    Raises:
        ValueError: If ``sigma`` has neither 1 nor ``B`` elements.
    """
    batch = x.shape[0]
    if not isinstance(sigma, Tensor):
        sigma = torch.tensor(float(sigma), dtype=x.dtype, device=x.device)  # no float32 detour
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    if sigma.numel() == 1:
        return sigma.reshape(1).expand(batch)
    if sigma.numel() != batch:
        raise ValueError(
            f"sigma must be a scalar or hold one value per example ({batch}), "
            f"got shape {tuple(sigma.shape)}"
        )
    return sigma.reshape(batch)


def check_positive_sigma(sigma: Tensor, model: str) -> None:
    """Raise ``ValueError`` if any ``sigma`` is <= 0 (models that divide by sigma call this).

    The check runs only for CPU tensors so that it never forces a host-device sync on an
    accelerator, and not while ``torch.compile`` traces the model (it would break the
    graph); there a zero sigma yields inf/nan outputs instead.

    Args:
        sigma: Noise levels, shape ``(B,)``.
        model: Model name used in the message.
    """
    if compiling() or sigma.device.type != "cpu":
        return
    if bool((sigma <= 0).any()):
        raise ValueError(
            f"{model} divides its output by sigma, so every sigma must be > 0; "
            f"got min sigma {float(sigma.min())}"
        )


def nearest_level(sigma: Tensor, sigmas: Tensor) -> Tensor:
    """Index of the noise level nearest to each ``sigma`` in log space.

    Args:
        sigma: Noise standard deviations, shape ``(B,)``; values <= 0 map to the smallest
            level.
        sigmas: The schedule, shape ``(L,)``.

    Returns:
        ``argmin_i |log sigma - log sigmas[i]|`` as a ``LongTensor`` of shape ``(B,)``.
    """
    tiny = torch.finfo(torch.float32).tiny
    log_s = torch.log(sigma.detach().float().clamp_min(tiny))
    log_levels = torch.log(sigmas.detach().float().to(sigma.device))
    return (log_s[:, None] - log_levels[None, :]).abs().argmin(dim=1)
