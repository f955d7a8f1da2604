"""Log-likelihoods through the probability-flow ODE against closed forms, and bits per dim."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.likelihood import log_likelihood, probability_flow_log_likelihood
from ncsn.metrics.likelihood import bits_per_dim, dequantize

from closed_forms import (
    gaussian_log_density,
    gaussian_score,
    mixture_log_density,
    mixture_score,
)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _flow_log_density(x, m, s, lo, hi):
    """What the flow computes for data N(m, s^2 I) and the prior N(0, hi^2 I): the exact VE
    flow scales x - m by sqrt((s^2 + sigma^2)/(s^2 + lo^2)), and the prior differs from
    p_hi = N(m, s^2 + hi^2): log p_lo(x) + log prior(x_T) - log p_hi(x_T)."""
    x_t = m + (x - m) * math.sqrt((s**2 + hi**2) / (s**2 + lo**2))
    return (
        gaussian_log_density(x, m, s**2 + lo**2)
        + gaussian_log_density(x_t, 0.0, hi**2)
        - gaussian_log_density(x_t, m, s**2 + hi**2)
    )


@pytest.mark.parametrize("exact", [True, False])
def test_gaussian_log_density_matches_the_closed_form(exact):
    m, s, lo, hi, dim = 0.4, 0.3, 0.01, 5.0, 3
    x = m + s * torch.randn(6, dim, dtype=torch.float64, generator=_gen(0)) * 2
    got = log_likelihood(gaussian_score(m, s), x, lo, hi, exact_divergence=exact, generator=_gen(1))
    torch.testing.assert_close(got, _flow_log_density(x, m, s, lo, hi), atol=2e-3, rtol=0)
    # the prior term matters: dropping it would be off by far more than the tolerance
    assert (got - gaussian_log_density(x, m, s**2 + lo**2)).abs().max() > 0.1


def test_mixture_log_density_matches_the_closed_form():
    # The paper's 2-D mixture; the prior mismatch at sigma_max is removed with the exact
    # p_sigma_max at the path's end, so what remains is the ODE's own accuracy.
    means = torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=torch.float64)
    weights = torch.tensor([0.2, 0.8], dtype=torch.float64)
    lo, hi = 0.01, 50.0
    x = torch.tensor([[-5.0, -4.0], [0.0, 0.0], [5.5, 5.0], [3.0, -2.0]], dtype=torch.float64)
    res = probability_flow_log_likelihood(
        mixture_score(means, weights), x, lo, hi, exact_divergence=True
    )
    exact_end = mixture_log_density(res.x_max, means, weights, 1 + hi**2)
    got = res.log_density - res.prior_log_density + exact_end
    want = mixture_log_density(x, means, weights, 1 + lo**2)
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)


def test_hutchinson_estimate_is_unbiased_for_a_correlated_gaussian():
    # Correlated data: the score's Jacobian is not diagonal, so one Rademacher probe is noisy;
    # 400 copies of one point with their own probes average to the exact-divergence value.
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)

    def score(x, sigma):
        prec = torch.linalg.inv(cov + float(sigma[0]) ** 2 * torch.eye(2, dtype=x.dtype))
        return -x @ prec

    point = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
    exact = log_likelihood(score, point, 0.01, 5.0, exact_divergence=True)
    copies = point.repeat(400, 1)
    gens = [_gen(k) for k in range(400)]
    est = log_likelihood(score, copies, 0.01, 5.0, generator=gens)
    assert float(est.std()) > 0.01  # the estimate does vary
    assert abs(float(est.mean() - exact)) < 4 * float(est.std()) / 20


def test_bits_per_dim_of_gaussian_data_uses_dequantisation_offset_and_8_bits():
    # Model: the exact score of N(0.5, s^2 I) images, the prior centred at 0.5.
    s, lo, hi = 0.3, 0.01, 2.0  # a small sigma_max: the prior centre matters
    images = torch.randint(0, 256, (5, 1, 2, 2), generator=_gen(0)).float() / 255
    got = bits_per_dim(gaussian_score(0.5, s), images, sigma_min=lo, sigma_max=hi, seed=3)
    y = dequantize(images, seed=3).flatten(1).double()
    assert bool(
        ((y >= images.flatten(1) * 255 / 256) & (y < (images.flatten(1) * 255 + 1) / 256)).all()
    )
    want = -_flow_log_density(y - 0.5, 0.0, s, lo, hi) / (4 * math.log(2)) + 8
    torch.testing.assert_close(
        torch.tensor(got["per_image"], dtype=torch.float64), want, atol=1e-3, rtol=0
    )
    assert got["n"] == 5 and got["mean"] == pytest.approx(float(want.mean()), abs=1e-3)
    # batching does not change the numbers
    again = bits_per_dim(
        gaussian_score(0.5, s), images, sigma_min=lo, sigma_max=hi, seed=3, batch_size=2
    )
    assert again["per_image"] == pytest.approx(got["per_image"], abs=1e-4)


def test_bits_per_dim_in_logit_space_adds_the_log_jacobian():
    # A model of N(0, s^2 I) in logit space; the density of y in [0, 1] is
    # p_z(logit(p)) * prod (1 - 2 lam) / (p (1 - p)), p = lam + (1 - 2 lam) y.
    s, lo, hi, lam = 1.5, 0.01, 60.0, 1e-6
    images = torch.randint(0, 256, (3, 1, 2, 2), generator=_gen(1)).float() / 255
    got = bits_per_dim(gaussian_score(0.0, s), images, sigma_min=lo, sigma_max=hi, logit=True)
    y = dequantize(images, seed=0).flatten(1).double()
    p = lam + (1 - 2 * lam) * y
    z = torch.log(p) - torch.log1p(-p)
    log_y = _flow_log_density(z, 0.0, s, lo, hi) + (
        math.log(1 - 2 * lam) - torch.log(p) - torch.log1p(-p)
    ).sum(1)
    want = -log_y / (4 * math.log(2)) + 8
    torch.testing.assert_close(
        torch.tensor(got["per_image"], dtype=torch.float64), want, atol=2e-3, rtol=0
    )
