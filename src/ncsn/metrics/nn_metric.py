"""The ``nn`` metric: nearest training images of each sample, in pixel space and (digits,
MNIST) in the shipped classifier's feature space, with held-out test images as the yardstick
of "not a copy" (see :mod:`ncsn.metrics.neighbours` for the search)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ncsn.errors import ShapeError
from ncsn.metrics.neighbours import nearest_neighbours, save_neighbour_grid

__all__ = ["classifier_features", "nn_metric"]


def classifier_features(
    dataset: str | None, device: str | torch.device, batch_size: int
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Images -> (N, D) features of the data set's shipped classifier, or None without one."""
    from ncsn.metrics.classifier import CLASSIFIER_CONFIGS, classifier_outputs, load_classifier

    name = str(dataset).strip().lower()
    if name not in CLASSIFIER_CONFIGS:
        return None
    clf = load_classifier(name, device=device)

    def features(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(classifier_outputs(clf, x, batch_size=batch_size)[0]).float()

    return features


def nn_metric(
    samples: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor | None,
    features: Callable[[torch.Tensor], torch.Tensor] | None,
    k: int,
    batch_size: int,
    out_dir: str | os.PathLike | None,
    grid_name: str,
    device: str | torch.device,
) -> dict:
    """Nearest training images of the samples, with held-out test images as the yardstick.

    Pixel space always, classifier-feature space when ``features`` (a whole set of images ->
    (N, D) features) is given; each set's features are computed once. A sample closer (in
    pixels) to a training image than any test image is to the training set is counted as a
    suspected copy.
    """
    if samples.shape[1:] != train.shape[1:]:
        raise ShapeError(
            f"nn compares pixels: samples are {tuple(samples.shape[1:])} but training images "
            f"are {tuple(train.shape[1:])}"
        )
    test = test[: len(samples)] if test is not None and len(test) else None

    def summary(d: torch.Tensor) -> dict:
        d = d.double()
        return {"mean": float(d.mean()), "median": float(d.median()), "min": float(d.min())}

    def space(query: torch.Tensor, ref: torch.Tensor, yardstick: torch.Tensor | None, png: str):
        """Neighbours of ``query`` in ``ref`` (+ grid), and of ``yardstick`` in ``ref``."""
        dist, idx = nearest_neighbours(query, ref, k=k, batch_size=batch_size, device=device)
        grid = None
        if out_dir is not None:
            grid = str(save_neighbour_grid(samples, train, idx, Path(out_dir) / png))
        block = {**summary(dist[:, 0]), "grid": grid}
        block["distances"] = [[round(float(v), 4) for v in row] for row in dist]
        block["indices"] = idx.tolist()
        near = None
        if yardstick is not None:
            near = nearest_neighbours(yardstick, ref, k=1, batch_size=batch_size, device=device)
        return block, dist[:, 0], None if near is None else near[0][:, 0]

    pixel, nearest, test_nearest = space(samples, train, test, f"{grid_name}.png")
    out = {"k": int(k), **pixel}
    if features is not None:
        f_test = None if test is None else features(test)
        png = f"{grid_name}_feature.png"
        out["feature"], _, f_test_nearest = space(features(samples), features(train), f_test, png)
    if test is not None:
        out["test_to_train"] = {"n": int(len(test)), **summary(test_nearest)}
        if features is not None:
            out["test_to_train"]["feature"] = summary(f_test_nearest)
        out["closer_than_any_test"] = int((nearest < test_nearest.min()).sum())
    return out
