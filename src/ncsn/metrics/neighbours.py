"""Nearest training images of generated samples (a memorisation check).

Distances are L2 in pixel space or in the space of a feature function. The search is
streamed: sample chunks against training-image chunks with a running top-k, so memory is
bounded by the chunk sizes, not by N x M.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ncsn.errors import ShapeError
from ncsn.imaging import save_image_grid

__all__ = ["nearest_neighbours", "save_neighbour_grid"]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _flat(x: torch.Tensor, feature_fn: FeatureFn | None, device: torch.device) -> torch.Tensor:
    x = x.to(device, torch.float32)
    if feature_fn is not None:
        x = feature_fn(x)
    return x.reshape(x.shape[0], -1).float()


@torch.no_grad()
def nearest_neighbours(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    k: int = 3,
    feature_fn: FeatureFn | None = None,
    batch_size: int = 256,
    train_batch_size: int = 4096,
    *,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest training images of each sample (L2 distance).

    Candidates are found with ``torch.cdist`` chunk by chunk; the final k distances are then
    recomputed directly from the differences, so an exact copy of a training image gets
    distance exactly 0.

    Args:
        samples: (N, C, H, W) (or any (N, ...)).
        train_images: (M, ...) with the same per-item shape as ``samples``.
        k: Neighbours per sample (at most M).
        feature_fn: Optional map from a batch of images to features (N, ...) in which to
            measure distances (e.g. a classifier's ``features``); pixels when ``None``.
        batch_size: Samples per chunk.
        train_batch_size: Training images per chunk.
        device: Where to compute (default: the samples' device).

    Returns:
        ``(distances (N, k) float32, indices (N, k) int64)``, nearest first, on the CPU.
    """
    if samples.shape[1:] != train_images.shape[1:]:
        raise ShapeError(
            f"samples {tuple(samples.shape[1:])} and training images "
            f"{tuple(train_images.shape[1:])} differ in shape; compare like with like"
        )
    m = int(train_images.shape[0])
    if not 1 <= int(k) <= m:
        raise ValueError(f"k must be in [1, {m}] (the number of training images), got {k}")
    k = int(k)
    device = torch.device(device) if device is not None else samples.device
    all_d, all_i = [], []
    train_chunks = range(0, m, train_batch_size)
    cached_train: list[torch.Tensor] | None = [] if feature_fn is not None else None
    for s0 in range(0, int(samples.shape[0]), batch_size):
        q = _flat(samples[s0 : s0 + batch_size], feature_fn, device)
        best_d = torch.full((q.shape[0], 0), float("inf"), device=device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64, device=device)
        for c, t0 in enumerate(train_chunks):
            if cached_train is not None and c < len(cached_train):
                t = cached_train[c]
            else:
                t = _flat(train_images[t0 : t0 + train_batch_size], feature_fn, device)
                if cached_train is not None and _small(m, t):
                    cached_train.append(t)  # features are reused by later sample chunks
            d = torch.cdist(q, t)
            idx = torch.arange(t0, t0 + t.shape[0], device=device).expand(q.shape[0], -1)
            cand_d, cand_i = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
            top = torch.topk(cand_d, min(k, cand_d.shape[1]), dim=1, largest=False)
            best_d, best_i = top.values, cand_i.gather(1, top.indices)
        # Exact distances of the chosen neighbours, then re-sort.
        nb = _flat(train_images[best_i.reshape(-1).cpu()], feature_fn, device)
        exact = (q.unsqueeze(1) - nb.reshape(q.shape[0], k, -1)).norm(dim=2)
        order = exact.argsort(dim=1, stable=True)
        all_d.append(exact.gather(1, order).cpu())
        all_i.append(best_i.gather(1, order).cpu())
    return torch.cat(all_d), torch.cat(all_i)


def _small(m: int, chunk: torch.Tensor) -> bool:
    """Keep training features in memory when all of them fit in about 1 GiB."""
    return m * chunk[0].numel() * 4 <= (1 << 30)


def save_neighbour_grid(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    indices: torch.Tensor,
    path: str | os.PathLike,
    *,
    max_rows: int = 16,
    scale: int | None = None,
) -> Path:
    """Save a PNG where each row is a sample followed by its k nearest training images.

    Args:
        samples: (N, C, H, W) in [0, 1].
        train_images: (M, C, H, W) in [0, 1].
        indices: (N, k) neighbour indices from :func:`nearest_neighbours`.
        path: Output PNG; its folder must exist.
        max_rows: Show at most this many samples (the first ones).
        scale: Nearest-neighbour upscaling (default :func:`ncsn.imaging.grid_scale`).

    Returns:
        The written path.
    """
    rows = min(int(max_rows), int(samples.shape[0]))
    k = int(indices.shape[1])
    tiles = []
    for r in range(rows):
        tiles.append(samples[r : r + 1].cpu().float())
        tiles.append(train_images[indices[r].cpu()].cpu().float())
    grid = torch.cat(tiles)
    return save_image_grid(grid, path, nrow=k + 1, scale=scale)
