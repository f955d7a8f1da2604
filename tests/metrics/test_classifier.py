"""Shipped digit classifiers and the domain metrics built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncsn.errors import DataError, ShapeError
from ncsn.metrics.classifier import (
    DigitClassifier,
    classifier_accuracy,
    load_classifier,
    save_classifier,
)
from ncsn.metrics.classifier_training import _random_shift, train_classifier
from ncsn.metrics.domain import class_histogram, domain_metrics


@pytest.fixture(scope="module")
def digits_split():
    from ncsn.data import as_tensor, get_dataset

    return {s: as_tensor(get_dataset("digits", split=s)) for s in ("train", "test")}


def test_shipped_digits_classifier_accuracy(digits_split):
    model = load_classifier("digits")
    x, y = digits_split["test"]
    acc = classifier_accuracy(model, x, y)
    assert acc >= 0.97
    assert model.test_accuracy == pytest.approx(acc, abs=1e-6)  # metadata matches
    assert sum(p.numel() for p in model.parameters()) < 50_000


def test_shipped_mnist_classifier_accuracy(shared_data):
    from ncsn.data import as_tensor, get_dataset

    model = load_classifier("mnist")
    assert 50_000 <= sum(p.numel() for p in model.parameters()) <= 200_000
    x, y = as_tensor(get_dataset("mnist", root=shared_data, split="test"))
    acc = classifier_accuracy(model, x, y)
    assert acc >= 0.99
    assert model.test_accuracy == pytest.approx(acc, abs=1e-4)


def test_features_and_logits_of_the_shipped_classifier():
    model = load_classifier("digits")
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    feats = model.features(x)
    assert feats.shape == (5, model.feature_dim) and (feats >= 0).all()  # after the ReLU
    torch.testing.assert_close(model(x), model.head(feats))  # the logits come from them
    # loaded in eval mode (batch norm from running statistics): an image alone scores the same
    torch.testing.assert_close(model(x[2:3]), model(x)[2:3])
    with pytest.raises(ShapeError, match=r"\(N, 1, 8, 8\)"):
        model.check_input(torch.rand(5, 1, 28, 28))


def test_unknown_dataset_and_missing_weights(tmp_path):
    with pytest.raises(DataError, match="digits, mnist"):
        load_classifier("cifar10")
    with pytest.raises(DataError, match="retrain-classifier digits"):
        load_classifier("digits", path=tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot load classifier"):
        load_classifier("digits", path=bad)


def test_train_save_load_roundtrip(tmp_path, digits_split):
    model = train_classifier("digits", epochs=2, seed=1)
    # the recorded accuracy is the model's on the test split, far above chance after 2 epochs
    # (0.70 with seed 1; chance is 0.1)
    assert model.test_accuracy == pytest.approx(classifier_accuracy(model, *digits_split["test"]))
    assert model.test_accuracy > 0.5
    path = save_classifier(model, tmp_path / "c.safetensors")
    loaded = load_classifier("digits", path=path)
    assert loaded.test_accuracy == pytest.approx(model.test_accuracy, abs=1e-6)
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_class_histogram():
    probs = np.eye(4)[[0, 1, 1, 3]] * 0.9 + 0.025
    h = class_histogram(probs)
    assert h["counts"] == [1, 2, 0, 1]
    assert h["fractions"] == pytest.approx([0.25, 0.5, 0.0, 0.25])
    assert h["confidence"] == pytest.approx(0.925)


def test_domain_metrics_real_vs_noise(digits_split):
    train, _ = digits_split["train"]
    test, _ = digits_split["test"]
    real = domain_metrics(test, "digits", train, kid_subsets=20, kid_subset_size=300)
    noise = torch.rand(test.shape, generator=torch.Generator().manual_seed(0))
    fake = domain_metrics(noise, "digits", train, kid_subsets=20, kid_subset_size=300)
    assert real["dfid"] < 0.1 * fake["dfid"]
    assert real["dkid"]["mean"] < 0.1 * fake["dkid"]["mean"]
    fractions = np.array(real["classes"]["fractions"])
    assert np.all(np.abs(fractions - 0.1) < 0.05)
    assert real["classes"]["tv_from_uniform"] < 0.1
    assert real["classes"]["confidence"] > 0.9
    assert real["dis"]["mean"] > 8.0 and fake["dis"]["mean"] < real["dis"]["mean"]


def test_evaluate_domain_metrics_and_errors(digits_split):
    from ncsn.metrics import evaluate

    test, _ = digits_split["test"]
    out = evaluate(
        test[:200],
        metrics=["dfid", "dis", "classes"],
        dataset="digits",
        progress=False,
        kid_subsets=5,
    )
    assert set(out) == {"dfid", "dis", "classes", "protocol"}
    assert out["protocol"]["classifier"]["name"] == "classifier_digits"
    assert out["protocol"]["classifier"]["test_accuracy"] >= 0.97
    assert out["protocol"]["reference"]["split"] == "train"
    with pytest.raises(DataError, match="domain classifier"):
        evaluate(test[:4].expand(-1, 3, -1, -1), metrics=["dfid"], dataset="cifar10")
    with pytest.raises(ShapeError):
        evaluate(torch.rand(4, 1, 28, 28), metrics=["classes"], dataset="digits")


def test_classifier_is_small_for_digits():
    m = DigitClassifier(image_size=8, channels=(16, 32), pool=2, hidden=64)
    assert sum(p.numel() for p in m.parameters()) < 20_000


def test_training_is_deterministic_for_a_seed():
    """Initialisation, order, shifts and dropout masks all follow ``seed``: the global RNG
    (which torch seeds at random in each process) is neither read nor advanced."""
    state = torch.get_rng_state()
    a = train_classifier("digits", epochs=1, seed=3).state_dict()
    torch.manual_seed(12345)  # a different global RNG state must not matter
    b = train_classifier("digits", epochs=1, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_classifier("digits", epochs=1, seed=4).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)
    torch.set_rng_state(state)


def test_random_shift_is_a_zero_filled_translation():
    x = torch.arange(2 * 25, dtype=torch.float32).view(2, 1, 5, 5)
    g = torch.Generator().manual_seed(0)
    out = _random_shift(x, 2, g)
    g = torch.Generator().manual_seed(0)
    dy, dx = (torch.randint(0, 5, (2,), generator=g) - 2 for _ in range(2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for k in range(2):
        top, left = 2 + int(dy[k]), 2 + int(dx[k])
        assert torch.equal(out[k], padded[k, :, top : top + 5, left : left + 5])
    assert torch.equal(_random_shift(x, 0, g), x)
