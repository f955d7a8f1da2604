"""Held-out DSM loss: fixed noise, batch-size independence, closed form on Gaussian data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncsn.metrics.heldout import denoiser_table, heldout_dsm_loss, image_noise, unlearned_summary

from closed_forms import gaussian_score

SIGMAS = torch.tensor([1.0, 0.5, 0.25, 0.1])


def _toy_score(x, sigma):
    """A deliberately imperfect score function (not the exact score)."""
    return -torch.tanh(x) / sigma.reshape(-1, 1, 1, 1)


def test_same_result_for_any_batch_size_and_repeat():
    x = torch.rand(37, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    results = [heldout_dsm_loss(_toy_score, x, SIGMAS, batch_size=b) for b in (1, 5, 16, 37, 100)]
    for r in results[1:]:
        assert r["loss"] == pytest.approx(results[0]["loss"], rel=1e-6)
        np.testing.assert_allclose(r["per_level"], results[0]["per_level"], rtol=1e-6)
        assert r["counts"] == results[0]["counts"]
    assert results[0]["counts"] == [10, 9, 9, 9]  # level = index % L
    again = heldout_dsm_loss(_toy_score, x, SIGMAS, batch_size=5)
    assert again == results[1]


def test_seed_changes_noise_and_all_levels():
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    a = heldout_dsm_loss(_toy_score, x, SIGMAS, seed=0)
    b = heldout_dsm_loss(_toy_score, x, SIGMAS, seed=1)
    assert a["loss"] != b["loss"]
    full = heldout_dsm_loss(_toy_score, x, SIGMAS, all_levels=True, batch_size=5)
    assert full["counts"] == [12] * 4 and full["n"] == 12
    full2 = heldout_dsm_loss(_toy_score, x, SIGMAS, all_levels=True, batch_size=12)
    assert full2["loss"] == pytest.approx(full["loss"], rel=1e-6)


def test_image_noise_depends_only_on_index():
    a = image_noise(3, range(0, 10), (2, 3))
    b = image_noise(3, [7, 8, 9], (2, 3))
    torch.testing.assert_close(a[7:], b)
    assert not torch.equal(image_noise(4, [7], (2, 3)), b[:1])


def test_closed_form_gaussian():
    """Exact score of N(m, s^2 I) data: per-level loss ~ d/2 * s^2 / (s^2 + sigma^2)."""
    m, s, n, shape = 0.3, 0.7, 4000, (1, 4, 4)
    d = math.prod(shape)
    x = m + s * torch.randn(n, *shape, generator=torch.Generator().manual_seed(2))
    res = heldout_dsm_loss(gaussian_score(m, s), x, SIGMAS, batch_size=512)
    expected = [d / 2 * s**2 / (s**2 + sig**2) for sig in SIGMAS.tolist()]
    # Per-example loss has std ~ sqrt(d/2) * expected/d...; 1000 examples per level: 5% is ample.
    np.testing.assert_allclose(res["per_level"], expected, rtol=0.05)
    assert res["loss"] == pytest.approx(float(np.mean(expected)), rel=0.05)


def test_no_grad_and_float64():
    net = torch.nn.Conv2d(1, 1, 3, padding=1).double()
    x = torch.rand(6, 1, 5, 5, dtype=torch.float64)
    res = heldout_dsm_loss(lambda y, sigma: net(y), x, SIGMAS.double(), batch_size=4)
    assert math.isfinite(res["loss"]) and net.weight.grad is None


def test_evaluate_dsm_on_digits_test_split():
    from ncsn.metrics import evaluate

    x = torch.rand(4, 1, 8, 8)
    out = evaluate(
        x,
        metrics=["dsm"],
        dataset="digits",
        score_fn=_toy_score,
        sigmas=SIGMAS,
        progress=False,
        n_ref=50,
    )
    assert out["protocol"]["dsm"] == {"split": "test", "n": 50, "seed": 0}
    assert len(out["dsm"]["per_level"]) == 4 and math.isfinite(out["dsm"]["loss"])


def test_stratified_levels_leave_no_level_empty():
    """L = 216 levels, 54 images (5 % of ~1,080): every level evaluated, none NaN, balanced,
    and the result does not depend on the batch size."""
    sigmas = torch.logspace(math.log10(44.0), -2, 216)
    x = torch.rand(54, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    res = heldout_dsm_loss(_toy_score, x, sigmas, batch_size=64)
    assert res["draws_per_image"] == 4  # ceil(216 / 54)
    assert min(res["counts"]) == 1 and sum(res["counts"]) == 216
    for key in ("per_level", "denoiser_mse", "mean_image_mse"):
        assert all(math.isfinite(v) for v in res[key]), key
    other = heldout_dsm_loss(_toy_score, x, sigmas, batch_size=7)
    np.testing.assert_allclose(other["denoiser_mse"], res["denoiser_mse"], rtol=1e-6)
    uneven = heldout_dsm_loss(_toy_score, x[:50], sigmas)
    assert min(uneven["counts"]) >= 1 and max(uneven["counts"]) - min(uneven["counts"]) <= 1


def test_denoiser_mse_closed_form_gaussian():
    """Exact score of N(m, s^2 I): Tweedie's D is the posterior mean, MSE s^2 sigma^2 /
    (s^2 + sigma^2) per value; the (leave-one-out) mean image's MSE is s^2."""
    m, s, n, shape = 0.3, 0.7, 4000, (1, 4, 4)
    x = m + s * torch.randn(n, *shape, generator=torch.Generator().manual_seed(4))
    res = heldout_dsm_loss(gaussian_score(m, s), x, SIGMAS, batch_size=512)
    expected = [s**2 * sig**2 / (s**2 + sig**2) for sig in SIGMAS.tolist()]
    np.testing.assert_allclose(res["denoiser_mse"], expected, rtol=0.05)
    np.testing.assert_allclose(res["mean_image_mse"], s**2, rtol=0.05)
    assert "every level" in unlearned_summary(res)


def _result(ratios, sigmas=(8.0, 4.0, 2.0, 1.0)):
    return {
        "sigmas": list(sigmas),
        "denoiser_mse": [0.1 * r for r in ratios],
        "mean_image_mse": [0.1] * len(ratios),
        "per_level": [1.0] * len(ratios),
        "counts": [3] * len(ratios),
    }


def test_unlearned_summary_names_the_levels():
    assert unlearned_summary(_result([30.0, 2.0, 0.5, 0.1])) == (
        "sigma >= 4 not learned yet (denoiser worse than the mean image at 2 of 4 levels)"
    )
    assert "every level" in unlearned_summary(_result([1.04, 0.9, 0.5, 0.1]))  # 5 % margin
    line = unlearned_summary(_result([1.0, 2.0, 0.5, 0.1]))
    assert line == "not learned yet: denoiser worse than the mean image at 1 of 4 levels, sigma 4"
    line = unlearned_summary(_result([1.0, 2.0, 0.5, 3.0]))
    assert line.endswith("at 2 of 4 levels, between sigma 1 and 4")
    assert "not learned" in unlearned_summary(_result([float("nan"), 0.5, 0.5, 0.1]))


def test_denoiser_table_bands():
    table = denoiser_table(_result([30.0, 2.0, 0.5, 0.1]), rows=2)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 4–8 | 6 |") and lines[2].endswith("| 16 |")
    assert lines[3].endswith("| 0.3 |")
