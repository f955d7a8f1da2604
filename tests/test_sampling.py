"""Samplers against closed forms: Langevin stationary laws, mixture weights, exact chains."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsn.errors import ConfigError, ShapeError
from ncsn.sampling import (
    ancestral_sampling,
    annealed_langevin_dynamics,
    annealed_langevin_inpainting,
    consistent_annealed_sampling,
    get_sampler,
    langevin_dynamics,
)
from ncsn.schedules import geometric_sigmas

from closed_forms import gaussian_score, mixture_score


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _check_mean_var(x, mean, var, n_se=5.0):
    """Sample mean and variance per dimension within n_se standard errors of the target."""
    n = x.shape[0]
    se_mean = (var / n) ** 0.5
    se_var = var * (2.0 / (n - 1)) ** 0.5  # Gaussian: Var(sample var) = 2 var^2/(n-1)
    assert (x.mean(0) - mean).abs().max() < n_se * se_mean
    assert (x.var(0) - var).abs().max() < n_se * se_var


@pytest.mark.parametrize("dim", [1, 2])
def test_langevin_reaches_the_discretised_gaussian_stationary_law(dim):
    # x' - m = (1 - h/(2v)) (x - m) + sqrt(h) z is an AR(1) chain: its stationary variance is
    # h / (1 - (1 - h/(2v))^2) = v / (1 - h/(4v)) exactly, and its mean is m.
    m, v, h = 1.5, 0.8, 0.1
    x0 = torch.zeros(20000, dim, dtype=torch.float64)
    x = langevin_dynamics(gaussian_score(m, v**0.5), x0, h, 400, generator=_gen(0))
    _check_mean_var(x, m, v / (1 - h / (4 * v)))


def test_langevin_variance_bias_vanishes_with_small_steps():
    m, v, h = 0.0, 1.0, 0.01
    x = langevin_dynamics(gaussian_score(m, v), torch.zeros(20000, 1), h, 3000, generator=_gen(1))
    _check_mean_var(x.double(), m, v / (1 - h / (4 * v)))
    assert abs(x.var().item() - v) < 0.05


MEANS = torch.tensor([[-5.0, -5.0], [5.0, 5.0]])
WEIGHTS = torch.tensor([0.2, 0.8])


def _mode_fraction(x):
    return (x.sum(1) < 0).double().mean().item()  # fraction nearer (-5,-5)


def test_annealed_langevin_recovers_mixture_weights_but_plain_langevin_does_not():
    # The paper's Fig. 3 setting: 1/5 N((-5,-5), I) + 4/5 N((5,5), I), exact scores.
    # n = 4000: the binomial standard error of the fraction is sqrt(.2 * .8 / 4000) = 0.0063;
    # the tolerance 0.03 allows ~5 standard errors (discretisation bias is far smaller).
    n = 4000
    score = mixture_score(MEANS, WEIGHTS)
    x0 = 16 * torch.rand(n, 2, generator=_gen(0)) - 8
    sigmas = geometric_sigmas(20.0, 1.0, 10)
    ald = annealed_langevin_dynamics(
        score, x0, sigmas, n_steps_each=100, eps=0.1, generator=_gen(1)
    )
    assert abs(_mode_fraction(ald) - 0.2) < 0.03
    # plain Langevin keeps the modes of a uniform start: about half the chains in each mode
    ld = langevin_dynamics(score, x0, 0.1, 1000, generator=_gen(2))
    assert abs(_mode_fraction(ld) - 0.5) < 0.05


def test_annealed_langevin_final_level_has_right_spread_for_gaussian_data():
    # With exact scores the last level's chain targets N(m, s^2 + sigma_L^2), step alpha_L = eps
    m, s = 0.3, 0.5
    sigmas = geometric_sigmas(3.0, 0.05, 8, dtype=torch.float64)
    x0 = torch.rand(20000, 1, generator=_gen(0), dtype=torch.float64)
    x = annealed_langevin_dynamics(
        gaussian_score(m, s), x0, sigmas, n_steps_each=200, eps=1e-3, generator=_gen(3)
    )
    v = s**2 + 0.05**2
    _check_mean_var(x, m, v / (1 - 1e-3 / (4 * v)))


def test_denoise_applies_tweedie_step():
    sigmas = geometric_sigmas(1.0, 0.1, 3)
    x0 = torch.randn(8, 2, generator=_gen(0))
    score = gaussian_score(0.0, 1.0)
    kw = {"n_steps_each": 5, "eps": 0.01}
    a = annealed_langevin_dynamics(score, x0, sigmas, **kw, generator=_gen(1))
    b = annealed_langevin_dynamics(score, x0, sigmas, **kw, denoise=True, generator=_gen(1))
    torch.testing.assert_close(b, a + 0.01 * score(a, torch.full((8,), 0.1)))


def test_ancestral_sampling_is_exact_for_point_mass_data():
    # For data at a single point m the score at level i is -(x - m)/sigma_i^2 and every step
    # samples the exact posterior q(x_{i+1} | x_i): the output is N(m, sigma_L^2).
    m = -1.0
    sigmas = geometric_sigmas(5.0, 0.1, 12, dtype=torch.float64)
    x0 = m + 5.0 * torch.randn(20000, 2, generator=_gen(0), dtype=torch.float64)
    x = ancestral_sampling(gaussian_score(m, 0.0), x0, sigmas, denoise=False, generator=_gen(1))
    _check_mean_var(x, m, 0.1**2)


def test_ancestral_posterior_mean_is_exact_for_gaussian_data():
    # For Gaussian data the step's mean is the exact posterior mean; its variance is the
    # point-mass one, so the output variance lies between sigma_L^2 and s^2 + sigma_L^2.
    m, s = -1.0, 0.6
    sigmas = geometric_sigmas(5.0, 0.1, 12, dtype=torch.float64)
    x0 = m + (s**2 + 25.0) ** 0.5 * torch.randn(20000, 2, generator=_gen(0), dtype=torch.float64)
    x = ancestral_sampling(gaussian_score(m, s), x0, sigmas, denoise=False, generator=_gen(1))
    assert (x.mean(0) - m).abs().max() < 5 * ((s**2 + 0.01) / 20000) ** 0.5
    assert bool(((x.var(0) > 0.1**2) & (x.var(0) < s**2 + 0.1**2)).all())


def test_consistent_annealed_sampling_keeps_noise_level_consistent():
    # For point-mass data the score is -(x - m)/sigma^2. CAS leaves (1 - eta) sigma_i of the
    # noise and tops it up to sigma_{i+1}, so before the last step x - m ~ N(0, sigma_L^2) and
    # after it N(0, ((1 - eta) sigma_L)^2).
    m = 2.0
    sigmas = geometric_sigmas(10.0, 0.1, 15, dtype=torch.float64)
    x0 = m + 10.0 * torch.randn(20000, 1, generator=_gen(0), dtype=torch.float64)
    score = gaussian_score(m, 0.0)
    x = consistent_annealed_sampling(score, x0, sigmas, eta=0.5, denoise=False, generator=_gen(1))
    _check_mean_var(x, m, (0.5 * 0.1) ** 2)
    x = consistent_annealed_sampling(score, x0, sigmas, eta=1.0, denoise=False, generator=_gen(1))
    torch.testing.assert_close(x, torch.full_like(x, m))
    with pytest.raises(ValueError, match="eta"):
        consistent_annealed_sampling(score, x0, sigmas, eta=0.1)


def _corr_gaussian_prec(rho, sigma):
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    return torch.linalg.inv(cov + sigma**2 * torch.eye(2, dtype=torch.float64))


def _corr_gaussian_score(rho):
    def score_fn(x, sigma):
        prec = torch.stack([_corr_gaussian_prec(rho, float(s)) for s in sigma.unique()])
        idx = torch.searchsorted(sigma.unique(), sigma.contiguous())  # sigma may be expanded
        return -(prec[idx] @ x[..., None])[..., 0]

    return score_fn


def test_inpainting_samples_the_gaussian_conditional():
    # x ~ N(0, [[1, rho], [rho, 1]]) perturbed at sigma; observe x1. At the last level,
    # Algorithm 2 runs Langevin on x2 given x1 = y~ = y + sigma_L z with the joint perturbed
    # score s2 = -(P21 y~ + P22 x2), P = (Sigma + sigma_L^2 I)^-1. Its stationary law given
    # y~ is N(-P21 y~/P22, (1/P22)/(1 - alpha P22/4)) (the discretised chain, alpha = eps);
    # averaging over y~ adds (P21/P22)^2 sigma_L^2 to the variance.
    rho, y, n, eps = 0.8, 1.0, 20000, 0.02
    sigmas = geometric_sigmas(3.0, 0.1, 10, dtype=torch.float64)
    x0 = torch.rand(n, 2, generator=_gen(0), dtype=torch.float64)
    observed = torch.full((n, 2), y, dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    out = annealed_langevin_inpainting(
        _corr_gaussian_score(rho),
        x0,
        observed,
        mask,
        sigmas,
        n_steps_each=100,
        eps=eps,
        generator=_gen(1),
    )
    assert bool((out[:, 0] == y).all())
    P = _corr_gaussian_prec(rho, 0.1)
    p21, p22 = P[1, 0].item(), P[1, 1].item()
    var = (1 / p22) / (1 - eps * p22 / 4) + (p21 / p22) ** 2 * 0.1**2
    _check_mean_var(out[:, 1:], -p21 / p22 * y, var)


@pytest.mark.parametrize(
    "mask_shape", [(2, 3, 4, 4), (1, 1, 4, 4), (3, 4, 4), (4, 4), (4,), (1, 3, 1, 1)]
)
def test_inpainting_keeps_observed_entries_exactly_for_any_mask_shape(mask_shape):
    x0 = torch.rand(2, 3, 4, 4, generator=_gen(0))
    obs = torch.rand(2, 3, 4, 4, generator=_gen(1))
    mask = (torch.rand(mask_shape, generator=_gen(2)) > 0.5).float()
    sigmas = geometric_sigmas(1.0, 0.01, 3)
    out = annealed_langevin_inpainting(
        gaussian_score(0.5, 0.3), x0, obs, mask, sigmas, n_steps_each=4, eps=1e-4
    )
    full = mask.expand_as(obs).bool()
    assert torch.equal(out[full], obs[full])
    assert not torch.equal(out[~full], x0[~full])


def test_inpainting_rejects_bad_shapes_and_masks_with_clear_errors():
    x = torch.zeros(2, 1, 4, 4)
    sig = geometric_sigmas(1.0, 0.1, 2)
    f = gaussian_score(0.0, 1.0)
    with pytest.raises(ShapeError, match="observed has shape"):
        annealed_langevin_inpainting(
            f, x, torch.zeros(2, 1, 4, 5), torch.ones(4, 4), sig, n_steps_each=1
        )
    with pytest.raises(ShapeError, match="does not broadcast"):
        annealed_langevin_inpainting(f, x, x, torch.ones(3, 3), sig, n_steps_each=1)
    with pytest.raises(ShapeError, match="larger than"):
        annealed_langevin_inpainting(f, x, x, torch.ones(3, 2, 1, 4, 4), sig, n_steps_each=1)
    with pytest.raises(ShapeError, match="only 0"):
        annealed_langevin_inpainting(f, x, x, torch.full((4, 4), 0.5), sig, n_steps_each=1)


SAMPLER_CALLS = {
    "ld": lambda f, x, g: langevin_dynamics(f, x, 0.01, 5, generator=g),
    "ald": lambda f, x, g: annealed_langevin_dynamics(
        f, x, geometric_sigmas(1.0, 0.1, 3), n_steps_each=3, eps=1e-3, generator=g
    ),
    "inpaint": lambda f, x, g: annealed_langevin_inpainting(
        f,
        x,
        x,
        (torch.arange(x[0].numel()).reshape(x.shape[1:]) % 2).float(),
        geometric_sigmas(1.0, 0.1, 3),
        n_steps_each=3,
        eps=1e-3,
        generator=g,
    ),
    "cas": lambda f, x, g: consistent_annealed_sampling(
        f, x, geometric_sigmas(1.0, 0.1, 3), generator=g
    ),
    "ancestral": lambda f, x, g: ancestral_sampling(
        f, x, geometric_sigmas(1.0, 0.1, 3), generator=g
    ),
}


@pytest.mark.parametrize("name", list(SAMPLER_CALLS))
def test_same_generator_same_samples_different_generator_different(name):
    call = SAMPLER_CALLS[name]
    x = torch.rand(4, 1, 3, 3, generator=_gen(9))
    f = gaussian_score(0.5, 0.3)
    a, b, c = (call(f, x, _gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from(list(SAMPLER_CALLS)),
    batch=st.integers(1, 4),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_samplers_preserve_shape_dtype_and_device(name, batch, shape, dtype):
    x = torch.rand(batch, *shape, dtype=dtype)
    out = SAMPLER_CALLS[name](gaussian_score(0.5, 0.3), x, _gen(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out).all()


def test_callback_sees_every_step_in_order():
    seen = []
    out = annealed_langevin_dynamics(
        gaussian_score(0.0, 1.0),
        torch.zeros(3, 2),
        geometric_sigmas(1.0, 0.1, 2),
        n_steps_each=4,
        eps=0.01,
        callback=seen.append,
        generator=_gen(0),
    )
    assert [d["level"] for d in seen] == [0] * 4 + [1] * 4
    assert [d["step"] for d in seen] == list(range(8))
    assert torch.equal(seen[-1]["x"], out)
    assert seen[0]["step_size"] == pytest.approx(0.01 * 100)


def test_get_sampler_unknown_name():
    assert get_sampler("ald").fn is annealed_langevin_dynamics
    with pytest.raises(ConfigError, match="unknown sampler 'nope'; choose one of ald, cas"):
        get_sampler("nope")
