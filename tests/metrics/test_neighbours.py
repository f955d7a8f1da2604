"""Nearest-neighbour search against training images and the neighbour grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.errors import ShapeError
from ncsn.metrics.neighbours import nearest_neighbours, save_neighbour_grid


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    train = torch.rand(300, 1, 6, 6, generator=gen)
    samples = torch.rand(23, 1, 6, 6, generator=gen)
    return samples, train


@pytest.mark.parametrize("bs,tbs", [(4, 7), (256, 4096), (1, 300)])
def test_matches_brute_force_cdist(bs, tbs):
    samples, train = _data()
    d, i = nearest_neighbours(samples, train, k=3, batch_size=bs, train_batch_size=tbs)
    full = torch.cdist(samples.reshape(23, -1).double(), train.reshape(300, -1).double())
    ref = full.topk(3, dim=1, largest=False)
    torch.testing.assert_close(i, ref.indices)
    torch.testing.assert_close(d.double(), ref.values, rtol=1e-5, atol=1e-5)
    assert d.shape == (23, 3) and i.dtype == torch.int64


def test_exact_copy_has_distance_zero():
    samples, train = _data(1)
    samples[5] = train[123]
    samples[9] = train[0]
    d, i = nearest_neighbours(samples, train, k=2, batch_size=8, train_batch_size=50)
    assert d[5, 0].item() == 0.0 and i[5, 0].item() == 123
    assert d[9, 0].item() == 0.0 and i[9, 0].item() == 0
    assert (d[:, 1] >= d[:, 0]).all()


def test_feature_space():
    samples, train = _data(2)

    def row_means(x):
        return 2.0 * x.mean(dim=3)  # (N, 1, 6) features

    d, i = nearest_neighbours(samples, train, k=2, feature_fn=row_means, train_batch_size=64)
    fs, ft = row_means(samples).reshape(23, -1), row_means(train).reshape(300, -1)
    ref = torch.cdist(fs.double(), ft.double()).topk(2, dim=1, largest=False)
    torch.testing.assert_close(d.double(), ref.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(i, ref.indices)


def test_errors():
    samples, train = _data()
    with pytest.raises(ShapeError):
        nearest_neighbours(torch.rand(2, 1, 5, 5), train)
    with pytest.raises(ValueError):
        nearest_neighbours(samples, train[:2], k=3)


def test_neighbour_grid_and_evaluate_nn(tmp_path):
    samples, train = _data()
    _, idx = nearest_neighbours(samples, train, k=3)
    path = save_neighbour_grid(samples, train, idx, tmp_path / "grid.png", max_rows=4, scale=1)
    with Image.open(path) as im:
        # 4 rows of (1 + 3) images of 6 px with 2 px padding.
        assert im.size == (4 * 8 + 2, 4 * 8 + 2)

    from ncsn.data import as_tensor, get_dataset
    from ncsn.metrics import evaluate

    digits_train, _ = as_tensor(get_dataset("digits", split="train"))
    x = torch.cat([digits_train[:2], torch.rand(3, 1, 8, 8)])
    out = evaluate(x, metrics=["nn"], dataset="digits", out_dir=tmp_path, progress=False)
    assert out["nn"]["min"] == 0.0 and out["nn"]["k"] == 3
    assert (tmp_path / "nn_grid.png").is_file() and out["nn"]["grid"].endswith("nn_grid.png")
    assert out["protocol"]["nn"]["n"] == len(digits_train)
    assert np.isfinite(out["nn"]["mean"])
    nn = out["nn"]
    assert np.array(nn["distances"]).shape == (5, 3) and nn["distances"][0][0] == 0.0
    assert nn["indices"][1][0] == 1  # the copy of training image 1 finds image 1
    assert nn["feature"]["min"] < 1e-4  # copies are copies in feature space too
    assert nn["feature"]["indices"][0][0] == 0 and np.array(nn["feature"]["indices"]).shape == (
        5,
        3,
    )
    assert (tmp_path / "nn_grid_feature.png").is_file()
    # The two copies sit nearer the training set than any held-out image; noise does not.
    assert nn["closer_than_any_test"] == 2
    assert 0 < nn["test_to_train"]["min"] <= nn["test_to_train"]["median"]
