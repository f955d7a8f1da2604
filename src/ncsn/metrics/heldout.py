"""Held-out annealed denoising score matching loss and per-level denoiser error, fixed noise.

The training loss is noisy because each step draws fresh levels and noise. To compare two
checkpoints fairly, :func:`heldout_dsm_loss` evaluates the same objective on a fixed image set
with levels assigned deterministically and noise drawn per image from a generator seeded by
``(seed, image index)``: the result is identical for any batch size and any call order, and
two score networks see exactly the same perturbed inputs.

Levels are stratified: with N images and L levels every image is evaluated at
``K = ceil(L / N)`` levels (one when N >= L), pair ``(i, j)`` at level ``(i + j N) mod L``, so
every level gets ``floor(NK/L)`` or ``ceil(NK/L)`` evaluations and none is empty.

Beside the loss, each level reports the mean squared error of the denoiser
``D = x~ + sigma^2 s(x~, sigma)`` (Tweedie) against the clean image, and that of the mean
image, the trivial denoiser: image i is compared with the mean of the other N - 1 images
(leave-one-out, so the baseline is not flattered by containing the image it predicts). A
level whose denoiser is worse than the mean image has not been learned yet
(:func:`unlearned_summary` says which). At very large sigma even the ideal denoiser gains
little on the mean (for Gaussian data, a fraction ~ lambda_k / sigma^2 of each principal
variance lambda_k), so the comparison allows a small margin.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ncsn.errors import ShapeError
from ncsn.models.sigma import ScoreFn
from ncsn.rng import image_generator

__all__ = ["heldout_dsm_loss", "image_noise", "unlearned_summary", "denoiser_table"]


UNLEARNED_MARGIN = 0.05


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
    out = torch.empty((len(indices), draws, *shape))
    for row, i in enumerate(indices):
        out[row] = torch.randn((draws, *shape), generator=image_generator(seed, i, stream=2))
    return out


def _pairs(indices: range, n: int, n_levels: int, draws: int, all_levels: bool) -> torch.Tensor:
    """Level of each (image, draw) pair, image-major, shape (len(indices) * draws,)."""
    i = torch.tensor(list(indices), dtype=torch.int64)[:, None]
    j = torch.arange(draws, dtype=torch.int64)[None, :]
    return (j.expand(len(indices), -1) if all_levels else (i + j * n) % n_levels).reshape(-1)


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

    Image ``i`` is evaluated at the stratified levels ``(i + j N) mod L``, ``j < ceil(L/N)``
    (at every level with ``all_levels``), with noise from a generator seeded by ``(seed, i)``.
    Batches are processed under ``torch.no_grad()`` and only per-level sums are kept, so
    memory does not grow with N.

    Args:
        score_fn: ``score_fn(x, sigma) -> Tensor`` (put a network in eval mode first).
        images: (N, ...) images in model space, on any device.
        sigmas: The L noise levels.
        seed: Noise seed; keep it fixed to compare checkpoints.
        batch_size: Network inputs per batch (does not change the result).
        power: Weighting exponent, ``lambda(sigma) = sigma**power``.
        all_levels: Evaluate every image at every level (L times the cost).
        device: Where to evaluate (default: the images' device).
        progress: Show a tqdm progress bar.

    Returns:
        ``loss`` (mean weighted loss over all evaluated pairs), per level (lists of L):
        ``per_level`` (weighted loss), ``denoiser_mse`` and ``mean_image_mse`` (mean squared
        error per value of the denoiser and of the leave-one-out mean image), ``counts``; and
        ``sigmas``, ``draws_per_image``, ``n``, ``seed``.
    """
    if images.ndim < 2 or images.shape[0] == 0:
        raise ShapeError(f"held-out images must be a non-empty batch (N, ...), got {images.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else images.device
    # sigmas: a list, an array or a tensor on any device (a model's buffer on a GPU)
    sig = torch.as_tensor(sigmas, dtype=torch.float64).to(device, images.dtype).reshape(-1)
    n_levels, n = int(sig.numel()), int(images.shape[0])
    shape = tuple(images.shape[1:])
    draws = n_levels if all_levels else max(1, math.ceil(n_levels / n))
    mean_image = images.double().mean(dim=0).to(device, images.dtype)
    sums = {k: torch.zeros(n_levels, dtype=torch.float64) for k in ("dsm", "mse", "base")}
    counts = torch.zeros(n_levels, dtype=torch.int64)
    per_batch = max(1, int(batch_size) // draws)
    steps = math.ceil(n / per_batch)
    for b in tqdm(range(steps), desc="held-out DSM", disable=not progress, leave=False):
        idx = range(b * per_batch, min(n, (b + 1) * per_batch))
        x = images[idx.start : idx.stop].to(device).repeat_interleave(draws, dim=0)
        z = image_noise(seed, idx, shape, draws).to(device, images.dtype).reshape(-1, *shape)
        levels = _pairs(idx, n, n_levels, draws, all_levels)
        sigma_b = sig[levels.to(device)]
        s4 = sigma_b.reshape(-1, *([1] * len(shape)))
        x_tilde = x + s4 * z
        residual = score_fn(x_tilde, sigma_b) + z / s4  # s - target, target = -z / sigma
        flat = residual.reshape(len(levels), -1).double()
        terms = {
            "dsm": 0.5 * (flat**2).sum(1) * sigma_b.double() ** power,
            "mse": (flat**2).mean(1) * sigma_b.double() ** 4,  # D - x = sigma^2 (s - target)
            "base": ((x - mean_image) ** 2).reshape(len(levels), -1).double().mean(1),
        }
        for key, value in terms.items():
            sums[key].index_add_(0, levels, value.cpu())
        counts += torch.bincount(levels, minlength=n_levels)
    c = counts.double()
    loo = (n / (n - 1)) ** 2 if n > 1 else 1.0  # ||x_i - mean of the others||^2 = loo ||x_i - m||^2
    return {
        "loss": float(sums["dsm"].sum() / c.sum()),
        "per_level": [float(v) for v in sums["dsm"] / c],
        "denoiser_mse": [float(v) for v in sums["mse"] / c],
        "mean_image_mse": [float(v) for v in sums["base"] * loo / c],
        "counts": [int(v) for v in counts],
        "sigmas": [float(v) for v in sig.cpu()],
        "draws_per_image": draws,
        "n": n,
        "seed": int(seed),
    }


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def unlearned_summary(res: dict, margin: float = UNLEARNED_MARGIN) -> str:
    """One line on which levels' denoisers are still worse than the mean image.

    Args:
        res: A :func:`heldout_dsm_loss` result.
        margin: A level counts as not learned when its denoiser's MSE exceeds the mean
            image's by more than this fraction.

    Returns:
        E.g. ``"sigma >= 4.2 not learned yet (denoiser worse than the mean image at 37 of
        219 levels)"``, or that every level beats the mean image.
    """
    sig, mse, base = res["sigmas"], res["denoiser_mse"], res["mean_image_mse"]
    bad = [k for k in range(len(sig)) if not mse[k] <= base[k] * (1 + margin)]
    total = len(sig)
    if not bad:
        return (
            f"every level's denoiser is at least as good as the mean image (all {total} levels, "
            f"sigma {_fmt(min(sig))} to {_fmt(max(sig))}, within {margin:.0%})"
        )
    what = f"denoiser worse than the mean image at {len(bad)} of {total} levels"
    lowest = min(sig[k] for k in bad)
    if len(bad) == sum(s >= lowest for s in sig):  # exactly the levels from `lowest` up
        return f"sigma >= {_fmt(lowest)} not learned yet ({what})"
    if len(bad) == 1:
        return f"not learned yet: {what}, sigma {_fmt(lowest)}"
    highest = max(sig[k] for k in bad)
    return f"not learned yet: {what}, between sigma {_fmt(lowest)} and {_fmt(highest)}"


def denoiser_table(res: dict, rows: int = 10) -> str:
    """A Markdown table of the per-level results, consecutive levels grouped into ``rows`` bands.

    Args:
        res: A :func:`heldout_dsm_loss` result.
        rows: Number of bands (at most L).

    Returns:
        Columns: sigma range, evaluations, DSM loss, denoiser MSE, mean-image MSE and their
        ratio (< 1: the denoiser beats the mean image), each band's values averaged over its
        evaluations.
    """
    sig, c = res["sigmas"], res["counts"]
    lines = [
        "| sigma | evaluations | DSM loss | denoiser MSE | mean-image MSE | ratio |",
        "|---|---|---|---|---|---|",
    ]
    edges = np.linspace(0, len(sig), min(rows, len(sig)) + 1).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        k = range(lo, hi)
        n = sum(c[i] for i in k)

        def avg(key: str, k=k, n=n) -> float:
            return sum(res[key][i] * c[i] for i in k) / n

        mse, base = avg("denoiser_mse"), avg("mean_image_mse")
        span = _fmt(sig[lo]) if hi - lo == 1 else f"{_fmt(sig[hi - 1])}–{_fmt(sig[lo])}"
        lines.append(
            f"| {span} | {n} | {avg('per_level'):.4g} | {mse:.4g} | {base:.4g} | {mse / base:.3g} |"
        )
    return "\n".join(lines)
