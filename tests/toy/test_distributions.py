"""GaussianMixture against closed forms and autograd; toy samplers' shapes and supports."""

import math

import pytest
import torch

from ncsn.errors import ConfigError
from ncsn.toy.distributions import (
    TOY_DATASETS,
    GaussianMixture,
    checkerboard,
    get_toy_dataset,
    paper_mixture,
)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _random_mixture(k, d, seed):
    g = _gen(seed)
    means = 4 * torch.randn(k, d, generator=g, dtype=torch.float64)
    stds = 0.5 + torch.rand(k, generator=g, dtype=torch.float64)
    weights = 0.1 + torch.rand(k, generator=g, dtype=torch.float64)
    return GaussianMixture(means, stds, weights)


@pytest.mark.parametrize(("k", "d", "seed"), [(1, 2, 0), (2, 2, 1), (3, 2, 2), (4, 3, 3)])
@pytest.mark.parametrize("spread", [1.0, 30.0])
def test_score_equals_autograd_gradient_of_log_prob(k, d, seed, spread):
    # spread 30: points far in the tails, where unnormalised component densities underflow;
    # the closed form (softmax of log joints) must still agree with autograd of logsumexp.
    mix = _random_mixture(k, d, seed)
    x = (
        spread * torch.randn(64, d, generator=_gen(seed + 10), dtype=torch.float64)
    ).requires_grad_()
    (grad,) = torch.autograd.grad(mix.log_prob(x).sum(), x)
    score = mix.score(x.detach())
    assert torch.isfinite(score).all()
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9)


def test_single_gaussian_score_and_log_prob_closed_forms():
    mu, s = torch.tensor([[1.5, -2.0]], dtype=torch.float64), 0.7
    mix = GaussianMixture(mu, s)
    x = torch.randn(50, 2, generator=_gen(0), dtype=torch.float64) * 3
    torch.testing.assert_close(mix.score(x), -(x - mu) / s**2)
    ref = torch.distributions.MultivariateNormal(mu[0], s**2 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(mix.log_prob(x), ref.log_prob(x))


def test_log_prob_integrates_to_one_on_a_grid():
    mix = paper_mixture()
    t = torch.linspace(-12, 12, 601, dtype=torch.float64)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    mass = mix.log_prob(pts).exp().sum() * (t[1] - t[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-6


def test_perturbed_adds_sigma_squared_to_component_variances():
    mix = _random_mixture(3, 2, 5)
    pm = mix.perturbed(1.3)
    torch.testing.assert_close(pm.stds**2, mix.stds**2 + 1.3**2)
    torch.testing.assert_close(pm.means, mix.means)
    torch.testing.assert_close(pm.weights, mix.weights)
    assert mix.perturbed(0.0).stds.equal(mix.stds)
    with pytest.raises(ConfigError):
        mix.perturbed(-1.0)


def test_perturbed_matches_noisy_samples():
    # Var of x + sigma z per dimension equals the perturbed mixture's: same law, 5 std errors.
    mix, sigma, n = paper_mixture(), 2.0, 100_000
    g = _gen(3)
    noisy = mix.sample(n, g, dtype=torch.float64) + sigma * torch.randn(
        n, 2, generator=g, dtype=torch.float64
    )
    direct = mix.perturbed(sigma).sample(n, _gen(4), dtype=torch.float64)
    for x in (noisy, direct):
        var = x.var(0)
        m4 = ((x - x.mean(0)) ** 4).mean(0)
        se_var = ((m4 - var**2) / n).sqrt()
        # per-dimension variance: sum_k w_k (s_k^2 + sigma^2 + mu_k^2) - m^2 = 1 + 4 + 25 - 9
        assert ((var - 21.0).abs() < 5 * se_var).all()


def test_sample_moments_and_component_frequencies():
    # Paper mixture per dimension: mean 0.2*(-5) + 0.8*5 = 3, variance 1 + 25 - 9 = 17.
    # Standard errors: sqrt(17/n) for the mean, sqrt((m4 - var^2)/n) for the variance,
    # sqrt(0.2*0.8/n) for the frequency of component 0; every check allows 5 of them.
    n = 200_000
    x, comp = paper_mixture().sample(n, _gen(0), dtype=torch.float64, return_components=True)
    assert x.shape == (n, 2) and comp.shape == (n,)
    assert ((x.mean(0) - 3.0).abs() < 5 * math.sqrt(17 / n)).all()
    var = x.var(0)
    se_var = ((((x - x.mean(0)) ** 4).mean(0) - var**2) / n).sqrt()
    assert ((var - 17.0).abs() < 5 * se_var).all()
    freq = float((comp == 0).double().mean())
    assert abs(freq - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)


def test_sample_is_reproducible_and_typed():
    mix = paper_mixture()
    a = mix.sample(100, _gen(7))
    b = mix.sample(100, _gen(7))
    assert a.dtype == torch.float32 and a.equal(b)
    assert mix.sample(0).shape == (0, 2)


def test_score_fn_uses_each_examples_sigma():
    mix = _random_mixture(3, 2, 9)
    x = torch.randn(6, 2, generator=_gen(1), dtype=torch.float64) * 5
    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 4.0, 20.0], dtype=torch.float64)
    out = mix.score_fn(x, sigma)
    for b in range(6):
        torch.testing.assert_close(out[b], mix.perturbed(float(sigma[b])).score(x[b : b + 1])[0])
    # a scalar sigma applies to every example; sigma = 0 is the data score
    torch.testing.assert_close(mix.score_fn(x, 0.5), mix.perturbed(0.5).score(x))
    torch.testing.assert_close(mix.score_fn(x, torch.zeros(6)), mix.score(x))


def test_score_fn_float32_and_shape_errors():
    mix = paper_mixture()
    x = torch.randn(4, 2)
    assert mix.score_fn(x, torch.ones(4)).dtype == torch.float32
    with pytest.raises(ConfigError):
        mix.score_fn(x, torch.ones(3))
    with pytest.raises(ConfigError):
        mix.score(torch.randn(4, 3))


def test_far_points_have_the_nearest_components_score():
    mix = paper_mixture()
    x = torch.tensor([[1e3, 1e3], [-1e3, -1e3]], dtype=torch.float64)
    torch.testing.assert_close(mix.score(x), -(x - mix.means[[1, 0]]))


def test_mode_fractions_and_nearest_component():
    mix = paper_mixture()
    x = torch.tensor([[-4.0, -6.0], [4.0, 6.0], [5.0, 5.0], [9.0, 9.0]])
    assert mix.nearest_component(x).tolist() == [0, 1, 1, 1]
    assert mix.mode_fractions(x).tolist() == [0.25, 0.75]


@pytest.mark.parametrize(
    ("means", "stds", "weights"),
    [
        (torch.zeros(2), 1.0, None),  # means must be (K, D)
        (torch.zeros(2, 2), torch.ones(3), None),  # stds of the wrong length
        (torch.zeros(2, 2), -1.0, None),  # non-positive std
        (torch.zeros(2, 2), 1.0, torch.tensor([1.0, 0.0])),  # non-positive weight
        (torch.zeros(2, 2), 1.0, torch.ones(3)),  # weights of the wrong length
    ],
)
def test_invalid_parameters_raise(means, stds, weights):
    with pytest.raises(ConfigError):
        GaussianMixture(means, stds, weights)


def test_weights_are_normalised():
    mix = GaussianMixture(torch.zeros(2, 2), 1.0, torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(mix.weights, torch.tensor([0.25, 0.75], dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_samplers_shape_finite_reproducible(name):
    sampler = get_toy_dataset(name)
    a, b = sampler(500, _gen(0)), sampler(500, _gen(0))
    assert a.shape == (500, 2) and torch.isfinite(a).all()
    assert a.equal(b)
    assert a.abs().max() < 20


def test_checkerboard_points_lie_on_dark_squares():
    x = checkerboard(5000, _gen(1), squares=4, size=2.0)
    cells = torch.floor(x / 2.0 + 2)
    assert ((cells >= 0) & (cells < 4)).all()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()


def test_unknown_toy_dataset_lists_choices():
    with pytest.raises(ConfigError, match="checkerboard"):
        get_toy_dataset("nope")
