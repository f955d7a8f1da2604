"""Check that digit samples look like digits of all ten classes.

Reads samples written by ``ncsn sample --save-npz`` and classifies them with the digits
classifier shipped in the package (trained on the digits train split only). Passes when every
class is present with at least ``--min-fraction`` of the samples and the mean max-probability
is at least ``--min-confidence``; prints the class histogram either way.

    python benchmarks/check_digits.py --samples runs/digits/samples.npz
"""

from __future__ import annotations

import argparse
import json

import _main
from ncsn.imaging import load_npz
from ncsn.metrics.classifier import classifier_outputs, load_classifier
from ncsn.metrics.domain import class_histogram


def check(samples_path: str, dataset: str, min_fraction: float, min_confidence: float) -> dict:
    """Classify the samples; return the histogram with a ``passed`` flag."""
    x = load_npz(samples_path)
    clf = load_classifier(dataset)
    _, probs = classifier_outputs(clf, x)
    hist = class_histogram(probs)
    hist["n"] = int(x.shape[0])
    hist["passed"] = bool(
        min(hist["fractions"]) >= min_fraction and hist["confidence"] >= min_confidence
    )
    hist["thresholds"] = {"min_fraction": min_fraction, "min_confidence": min_confidence}
    return hist


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", required=True)
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    p.add_argument("--min-fraction", type=float, default=0.03)
    p.add_argument("--min-confidence", type=float, default=0.8)
    a = p.parse_args(argv)
    res = check(a.samples, a.dataset, a.min_fraction, a.min_confidence)
    print(json.dumps(res))
    counts = " ".join(f"{k}:{c}" for k, c in enumerate(res["counts"]))
    verdict = "PASS" if res["passed"] else "FAIL"
    print(f"{verdict}: classes {counts}; mean confidence {res['confidence']:.3f}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    _main.run(main)
