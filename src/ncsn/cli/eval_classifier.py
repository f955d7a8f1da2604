"""``ncsn eval --retrain-classifier``: retrain a shipped domain classifier into the cache (or
``--classifier-out``), never over the shipped file (:mod:`ncsn.metrics.classifier`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.errors import NCSNError
from ncsn.io import check_output_path
from ncsn.metrics import classifier, classifier_training

__all__ = ["add_classifier_arguments", "retrain_classifier"]


def add_classifier_arguments(p: argparse.ArgumentParser) -> None:
    """``--retrain-classifier`` and ``--classifier-out``."""
    p.add_argument(
        "--retrain-classifier",
        choices=list(classifier.CLASSIFIER_CONFIGS),
        help="retrain the domain classifier on the train split and save it to "
        "--classifier-out; the classifier shipped with the package is never replaced",
    )
    p.add_argument(
        "--classifier-out",
        type=Path,
        help="where --retrain-classifier writes (default: the cache folder, "
        "$NCSN_CACHE/classifiers or ~/.cache/ncsn/classifiers)",
    )


def retrain_classifier(args: argparse.Namespace) -> int:
    """Train the classifier of ``--retrain-classifier`` and write it."""
    name = args.retrain_classifier
    shipped = classifier.classifier_asset_path(name)
    out = args.classifier_out or classifier.retrained_classifier_path(name, create=True)
    if out.resolve() == shipped.resolve():
        raise NCSNError(
            f"--classifier-out {out} is the classifier shipped with the package; it is never "
            "replaced: write elsewhere (or leave --classifier-out out: the cache folder)"
        )
    check_output_path(out, what="--classifier-out")
    model = classifier_training.train_classifier(name, root=args.data_root, progress=True)
    classifier.save_classifier(model, out)
    print(f"wrote {out} (test accuracy {model.test_accuracy:.4f})")
    return 0
