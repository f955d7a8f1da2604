"""Held-out annealed denoising score matching loss with fixed noise.

The training loss is noisy because each step draws fresh levels and noise. To compare two
checkpoints fairly, :func:`heldout_dsm_loss` evaluates the same objective on a fixed image set
with levels assigned deterministically and noise drawn per image from a generator seeded by
``(seed, image index)``: the result is identical for any batch size and any call order, and
two score networks see exactly the same perturbed inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ncsn.errors import ShapeError
from ncsn.losses import anneal_dsm_loss

__all__ = ["heldout_dsm_loss", "image_noise"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _image_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for image ``index`` under the global ``seed``."""
    return _splitmix64(_splitmix64(int(seed) & _MASK64) ^ int(index)) >> 1


def image_noise(
    seed: int, indices: range | list[int], shape: tuple[int, ...], draws: int = 1
) -> torch.Tensor:
    """Standard normal noise for given image indices, independent of batching.

    Args:
        seed: Global seed.
        indices: Image indices.
        shape: Shape of one image (C, H, W).
        draws: Noise tensors per image (drawn in order from the image's generator).

    Returns:
        float32 CPU tensor (len(indices), draws, *shape).
    """
    gen = torch.Generator()
    out = torch.empty((len(indices), draws, *shape))
    for row, i in enumerate(indices):
        gen.manual_seed(_image_seed(seed, i))
        out[row] = torch.randn((draws, *shape), generator=gen)
    return out


@torch.no_grad()
def heldout_dsm_loss(
    score_fn: ScoreFn,
    images: torch.Tensor,
    sigmas: torch.Tensor | np.ndarray | list[float],
    *,
    seed: int = 0,
    batch_size: int = 256,
    power: float = 2.0,
    all_levels: bool = False,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict:
    """The annealed DSM loss (:func:`ncsn.losses.anneal_dsm_loss`) with fixed levels and noise.

    Image ``i`` is evaluated at level ``i % L`` (or at every level with ``all_levels``), with
    noise from a generator seeded by ``(seed, i)``. Batches are processed under
    ``torch.no_grad()`` and only per-level sums are kept, so memory does not grow with N.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor`` (put a network in eval mode first).
        images: (N, ...) images in model space, on any device.
        sigmas: The L noise levels.
        seed: Noise seed; keep it fixed to compare checkpoints.
        batch_size: Images per batch (does not change the result).
        power: Weighting exponent, ``lambda(sigma) = sigma**power``.
        all_levels: Evaluate every image at every level (L times the cost).
        device: Where to evaluate (default: the images' device).
        progress: Show a tqdm progress bar.

    Returns:
        ``{"loss": float, "per_level": [L floats], "counts": [L ints], "n": N, "seed": seed}``;
        ``loss`` is the mean weighted loss over all evaluated (image, level) pairs and
        ``per_level`` the mean at each level (NaN for a level with no image).
    """
    if images.ndim < 2 or images.shape[0] == 0:
        raise ShapeError(f"held-out images must be a non-empty batch (N, ...), got {images.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else images.device
    sig = torch.as_tensor(np.asarray(sigmas, dtype=np.float64)).to(device, images.dtype).reshape(-1)
    n_levels, n = int(sig.numel()), int(images.shape[0])
    shape = tuple(images.shape[1:])
    draws = n_levels if all_levels else 1
    sums = torch.zeros(n_levels, dtype=torch.float64)
    counts = torch.zeros(n_levels, dtype=torch.int64)
    steps = math.ceil(n / batch_size)
    for b in tqdm(range(steps), desc="held-out DSM", disable=not progress, leave=False):
        idx = range(b * batch_size, min(n, (b + 1) * batch_size))
        x = images[idx.start : idx.stop].to(device)
        noise = image_noise(seed, idx, shape, draws).to(device, images.dtype)
        if all_levels:
            x = x.repeat_interleave(n_levels, dim=0)
            noise = noise.reshape(-1, *shape)
            levels = torch.arange(n_levels, device=device).repeat(len(idx))
        else:
            noise = noise[:, 0]
            levels = torch.tensor([i % n_levels for i in idx], device=device)
        res = anneal_dsm_loss(score_fn, x, sig, power=power, levels=levels, noise=noise)
        c = res.counts.cpu()
        sums += torch.nan_to_num(res.per_level.double().cpu()) * c.double()
        counts += c
    per_level = sums / counts.double()
    loss = float(sums.sum() / counts.sum())
    return {
        "loss": loss,
        "per_level": [float(v) for v in per_level],
        "counts": [int(c) for c in counts],
        "n": n,
        "seed": int(seed),
    }
