"""Losses against closed forms: Gaussian data, exact scores, linear score functions."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsn.losses import (
    anneal_dsm_loss,
    anneal_sliced_score_matching_loss,
    dsm_loss,
    exact_score_matching_loss,
    sliced_score_matching_loss,
)
from ncsn.schedules import geometric_sigmas

from closed_forms import gaussian_score

D, STD, MEAN = 3, 0.7, 0.5


def _data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MEAN + STD * torch.randn(n, D, generator=g, dtype=torch.float64)


def _per_example(loss_fn, n_rep, **kw):
    """Loss on n_rep independent batches of 1000 -> mean and standard error."""
    vals = torch.stack([loss_fn(seed=k, **kw) for k in range(n_rep)])
    return vals.mean().item(), (vals.std() / n_rep**0.5).item()


def test_dsm_at_true_score_reaches_closed_form_minimum():
    # For data N(m, s^2 I) in R^d the DSM objective at the true perturbed score is
    # 1/2 (d/sigma^2 - d/(s^2 + sigma^2)): the irreducible variance of the target.
    sigma = 0.4
    expected = 0.5 * (D / sigma**2 - D / (STD**2 + sigma**2))

    def run(seed, shift=0.0):
        g = torch.Generator().manual_seed(1000 + seed)
        true = gaussian_score(MEAN, STD)
        fn = lambda x, s: true(x, s) + shift  # noqa: E731
        return dsm_loss(fn, _data(1000, seed), sigma, generator=g)

    mean, se = _per_example(run, 40)
    assert abs(mean - expected) < 5 * se + 1e-9
    # a wrong score costs exactly 1/2 ||delta||^2 more in expectation: the same noise draws
    worse, _ = _per_example(run, 40, shift=0.3)
    assert worse - mean == pytest.approx(0.5 * D * 0.3**2, rel=0.15)


def test_anneal_dsm_weights_make_levels_equal_at_true_score():
    # with lambda(sigma) = sigma^2 each level's minimum is d/2 * s^2/(s^2 + sigma^2)
    sigmas = geometric_sigmas(1.0, 0.01, 5, dtype=torch.float64)
    x = _data(20000)
    levels = torch.arange(20000) % 5
    g = torch.Generator().manual_seed(3)
    out = anneal_dsm_loss(gaussian_score(MEAN, STD), x, sigmas, levels=levels, generator=g)
    expected = 0.5 * D * STD**2 / (STD**2 + sigmas**2)
    # each level has 4000 examples; the per-example loss has std about its mean (chi-square-like)
    torch.testing.assert_close(out.per_level, expected, rtol=0.08, atol=0.0)
    assert out.counts.tolist() == [4000] * 5
    assert out.loss.item() == pytest.approx(out.per_level.mean().item(), rel=1e-9)


def test_anneal_dsm_power_zero_is_unweighted_and_levels_drawn_uniformly():
    sigmas = geometric_sigmas(1.0, 0.1, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    out = anneal_dsm_loss(gaussian_score(MEAN, STD), _data(8000), sigmas, power=0.0, generator=g)
    assert out.counts.sum() == 8000
    assert (out.counts - 2000).abs().max() < 5 * (8000 * 0.25 * 0.75) ** 0.5
    expected = 0.5 * D * (1 / sigmas**2 - 1 / (STD**2 + sigmas**2))
    torch.testing.assert_close(out.per_level, expected, rtol=0.1, atol=0.0)


def test_exact_score_matching_at_true_score_is_minus_half_fisher_information():
    # J(s) = E[1/2 ||s||^2 + tr(ds/dx)]; at the score of N(m, s^2 I): d/(2 s^2) - d/s^2
    x = _data(50000)
    val = exact_score_matching_loss(gaussian_score(MEAN, STD), x).item()
    expected = -D / (2 * STD**2)
    se = (0.5 * ((x - MEAN) ** 2).sum(1) / STD**4).std().item() / 50000**0.5
    assert abs(val - expected) < 5 * se
    worse = exact_score_matching_loss(lambda x, s: -(x - MEAN) / (1.5 * STD**2), x).item()
    assert worse > val


def _linear_score(seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)  # non-symmetric on purpose
    b = torch.randn(D, generator=g, dtype=torch.float64)
    return A, b, (lambda x, s: x @ A.T + b)


def test_exact_score_matching_trace_is_exact_for_linear_scores():
    A, b, fn = _linear_score()
    x = _data(100)
    direct = (0.5 * ((x @ A.T + b) ** 2).sum(1)).mean() + torch.trace(A)
    assert exact_score_matching_loss(fn, x).item() == pytest.approx(direct.item(), rel=1e-10)


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
@pytest.mark.parametrize("vr", [False, True])
def test_sliced_agrees_with_exact_in_expectation(dist, vr):
    A, b, fn = _linear_score(1)
    x = _data(4000)
    exact = exact_score_matching_loss(fn, x).item()
    vals = []
    for k in range(20):
        g = torch.Generator().manual_seed(k)
        vals.append(
            sliced_score_matching_loss(
                fn, x, n_projections=4, distribution=dist, variance_reduction=vr, generator=g
            ).item()
        )
    vals = torch.tensor(vals)
    assert abs(vals.mean().item() - exact) < 5 * vals.std().item() / 20**0.5 + 1e-9


def test_variance_reduction_lowers_the_variance():
    A, b, fn = _linear_score(2)
    x = _data(256)

    def spread(vr):
        vals = [
            sliced_score_matching_loss(
                fn, x, variance_reduction=vr, generator=torch.Generator().manual_seed(k)
            ).item()
            for k in range(60)
        ]
        return torch.tensor(vals).std().item()

    assert spread(True) < spread(False)


def test_anneal_sliced_matches_anneal_dsm_at_true_score_up_to_constant():
    # At the true perturbed score, annealed SSM estimates -1/2 E||s||^2 weighted by sigma^2,
    # i.e. -d/2 * sigma^2/(s^2+sigma^2) per level.
    sigmas = geometric_sigmas(1.0, 0.1, 3, dtype=torch.float64)
    levels = torch.arange(30000) % 3
    out = anneal_sliced_score_matching_loss(
        gaussian_score(MEAN, STD),
        _data(30000),
        sigmas,
        levels=levels,
        variance_reduction=True,
        generator=torch.Generator().manual_seed(100),  # independent of the data's seed
    )
    expected = -0.5 * D * sigmas**2 / (STD**2 + sigmas**2)
    torch.testing.assert_close(out.per_level, expected, rtol=0.05, atol=0.0)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(D + 1, 16), torch.nn.Softplus(), torch.nn.Linear(16, D)
        )

    def forward(self, x, sigma):
        return self.net(torch.cat([x, sigma.log()[:, None]], 1)) / sigma[:, None]


@pytest.mark.parametrize(
    "loss",
    [
        lambda m, x, s: anneal_dsm_loss(m, x, s).loss,
        lambda m, x, s: anneal_sliced_score_matching_loss(m, x, s, n_projections=2).loss,
        lambda m, x, s: dsm_loss(m, x, 0.3),
        lambda m, x, s: sliced_score_matching_loss(m, x, sigma=0.3, variance_reduction=True),
        lambda m, x, s: exact_score_matching_loss(m, x, sigma=0.3),
    ],
)
def test_gradients_reach_every_parameter_and_are_finite(loss):
    torch.manual_seed(0)
    m = _Tiny()
    loss(m, _data(64).float(), geometric_sigmas(1.0, 0.01, 10)).backward()
    for p in m.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 6),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_losses_are_finite_scalars_of_input_dtype_for_any_shape(batch, shape, dtype):
    x = torch.rand(batch, *shape, dtype=dtype)
    sigmas = geometric_sigmas(1.0, 0.01, 4, dtype=dtype)
    fn = gaussian_score(0.5, 0.3)
    g = torch.Generator().manual_seed(0)
    out = anneal_dsm_loss(fn, x, sigmas, generator=g)
    assert out.loss.shape == () and out.loss.dtype == dtype and torch.isfinite(out.loss)
    assert out.per_level.shape == (4,) and out.levels.shape == (batch,)
    ssm = sliced_score_matching_loss(fn, x, sigma=0.1, generator=g)
    assert ssm.shape == () and ssm.dtype == dtype and torch.isfinite(ssm)


def test_same_generator_same_loss():
    x = _data(32)
    sigmas = geometric_sigmas(dtype=torch.float64)
    fn = gaussian_score(0.0, 1.0)
    a = anneal_dsm_loss(fn, x, sigmas, generator=torch.Generator().manual_seed(5)).loss
    b = anneal_dsm_loss(fn, x, sigmas, generator=torch.Generator().manual_seed(5)).loss
    c = anneal_dsm_loss(fn, x, sigmas, generator=torch.Generator().manual_seed(6)).loss
    assert a == b and a != c
