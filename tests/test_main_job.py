"""The README's main job: the digits default makes recognisable digits of all ten classes."""

import pytest

from ncsn.api import load_checkpoint, sample
from ncsn.config import apply_overrides, load_config
from ncsn.metrics.classifier import classifier_outputs, load_classifier
from ncsn.metrics.domain import class_histogram
from ncsn.training import train


@pytest.mark.slow
def test_digits_default_samples_are_digits_of_every_class(tmp_path):
    # The bundled config as `make demo` runs it, stopped after 1,000 of its 3,000 steps (the
    # learning rate is constant after the warm-up, so these are the default run's first 1,000
    # steps). The classifier check of benchmarks/check_digits.py with its thresholds; measured
    # on 200 samples: smallest class fraction 0.07 after 500 steps, 0.085 after 1,000, mean
    # confidence 0.90 and 0.96 (250 steps fail: 0.02).
    cfg = apply_overrides(load_config("digits"), ["training.n_iters=1000"])
    train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    model, cfg = load_checkpoint(tmp_path / "run")
    _, probs = classifier_outputs(load_classifier("digits"), sample(model, cfg, 200, seed=0))
    hist = class_histogram(probs)
    assert min(hist["fractions"]) >= 0.03 and hist["confidence"] >= 0.8, hist
