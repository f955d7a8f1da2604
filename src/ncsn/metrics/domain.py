"""Domain metrics for digit data sets, computed with the shipped digit classifiers.

Inception features mean little for 8x8 or 28x28 gray digits, so these metrics use a small CNN
trained on the data set itself (:mod:`ncsn.metrics.classifier`):

* ``dfid``: Fréchet distance between classifier penultimate features of the samples and of
  reference images;
* ``dkid``: KID on the same features (``{"mean", "std"}``);
* ``dis``: classifier Inception Score ``exp(E KL(p(y|x) || p(y)))`` (``{"mean", "std"}``; at
  most the number of classes, 10);
* ``classes``: histogram of argmax predictions (``counts``, ``fractions``), the mean
  max-probability (``confidence``) and the total-variation distance of the histogram from
  uniform (``tv_from_uniform``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ncsn.metrics.classifier import DigitClassifier, classifier_outputs, load_classifier
from ncsn.metrics.fid import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)

__all__ = ["DOMAIN_METRICS", "domain_metrics", "class_histogram"]

DOMAIN_METRICS = ("dfid", "dkid", "dis", "classes")


def class_histogram(probs: np.ndarray) -> dict:
    """Summarise class predictions.

    Args:
        probs: (N, K) class probabilities.

    Returns:
        ``{"counts": [K ints], "fractions": [K floats], "confidence": mean max-probability,
        "tv_from_uniform": 0.5 * sum |fraction - 1/K|}``.
    """
    k = probs.shape[1]
    counts = np.bincount(probs.argmax(axis=1), minlength=k) if len(probs) else np.zeros(k, int)
    fractions = counts / max(1, counts.sum())
    return {
        "counts": [int(c) for c in counts],
        "fractions": [float(f) for f in fractions],
        "confidence": float(probs.max(axis=1).mean()) if len(probs) else float("nan"),
        "tv_from_uniform": float(0.5 * np.abs(fractions - 1.0 / k).sum()),
    }


def domain_metrics(
    samples: torch.Tensor,
    dataset_name: str,
    reference_images: torch.Tensor | None = None,
    *,
    metrics: Sequence[str] = DOMAIN_METRICS,
    classifier: DigitClassifier | None = None,
    batch_size: int = 1000,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Classifier-based sample-quality metrics for ``digits`` or ``mnist`` samples.

    Args:
        samples: (N, 1, S, S) in [0, 1] (S = 8 digits, 28 MNIST).
        dataset_name: ``digits`` or ``mnist`` (selects the shipped classifier).
        reference_images: Real images (M, 1, S, S) for ``dfid``/``dkid`` (e.g. the train
            split); not needed for ``dis``/``classes``.
        metrics: Which of ``dfid``, ``dkid``, ``dis``, ``classes`` to compute.
        classifier: Use this classifier instead of loading the shipped one.
        batch_size: Images per classifier forward pass.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size.
        seed: Seed of the KID subset draws.
        progress: Show progress bars.

    Returns:
        One entry per requested metric (see the module docstring).

    Raises:
        DataError: No classifier for ``dataset_name`` (or missing weights).
        ShapeError: Images of the wrong shape for the classifier.
        ValueError: Unknown metric name or missing reference images.
    """
    unknown = [m for m in metrics if m not in DOMAIN_METRICS]
    if unknown:
        raise ValueError(f"unknown domain metrics {unknown}; use {DOMAIN_METRICS}")
    model = classifier if classifier is not None else load_classifier(dataset_name)
    feats, probs = classifier_outputs(
        model, samples, batch_size=batch_size, progress=progress, desc="classifier: samples"
    )
    out: dict = {}
    if "dfid" in metrics or "dkid" in metrics:
        if reference_images is None:
            raise ValueError("dfid and dkid need reference_images")
        ref_feats, _ = classifier_outputs(
            model,
            reference_images,
            batch_size=batch_size,
            progress=progress,
            desc="classifier: reference",
        )
        if "dfid" in metrics:
            stats = (*feature_statistics(feats), *feature_statistics(ref_feats))
            out["dfid"] = frechet_distance(*stats)
        if "dkid" in metrics:
            mean, std = kernel_inception_distance(
                feats, ref_feats, kid_subsets, kid_subset_size, generator=seed
            )
            out["dkid"] = {"mean": mean, "std": std}
    if "dis" in metrics:
        mean, std = inception_score(probs, splits=10)
        out["dis"] = {"mean": mean, "std": std}
    if "classes" in metrics:
        out["classes"] = class_histogram(probs)
    return out
