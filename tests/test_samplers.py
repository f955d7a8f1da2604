"""The sampler registry and the samplers beyond the paper's (pc, euler, heun, dpmpp-2m) against
closed forms: Gaussian and Gaussian-mixture data with exact scores."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsn.errors import ConfigError
from ncsn.sampling import (
    ancestral_sampling,
    dpmpp_2m,
    euler,
    get_sampler,
    heun,
    karras_sigmas,
    nearest_trained_levels,
    predictor_corrector,
    sampler_names,
    sampler_sigmas,
    settings_for_nfe,
)
from ncsn.sampling.registry import Option
from ncsn.schedules import geometric_sigmas

from closed_forms import gaussian_score, mixture_score

STOCHASTIC = {"euler": {"s_churn": 5.0}, "heun": {"s_churn": 5.0}}  # options that add noise


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _run(name, score_fn, x, levels, generator=None, callback=None, **options):
    """Run a registered sampler on its own schedule from sigma = 5 to 0.05."""
    spec = get_sampler(name)
    sig = sampler_sigmas(name, sigma_max=5.0, sigma_min=0.05, levels=levels, options=options)
    kw, _ = spec.split(options)
    return spec(score_fn, x, sig, generator=generator, callback=callback, **kw)


class Counting:
    """The exact score of N(0.5, 0.3^2 I), counting network evaluations."""

    def __init__(self):
        self.calls, self.score = 0, gaussian_score(0.5, 0.3)

    def __call__(self, x, sigma):
        self.calls += 1
        return self.score(x, sigma)


def test_registered_names_are_the_documented_ones():
    assert sampler_names() == ("ald", "cas", "ancestral", "pc", "euler", "heun", "dpmpp-2m")


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sampler_names()),
    levels=st.integers(1, 7),
    steps=st.integers(1, 3),
    denoise=st.booleans(),
)
def test_registry_nfe_is_the_number_of_network_calls(name, levels, steps, denoise):
    spec = get_sampler(name)
    options = {"n_steps_each": steps, "corrector_steps": steps - 1, "denoise": denoise}
    options = {k: v for k, v in options.items() if k in spec.options}
    f = Counting()
    _run(name, f, torch.rand(2, 3), levels, _gen(0), **options, **STOCHASTIC.get(name, {}))
    assert f.calls == spec.nfe(levels, options)


@pytest.mark.parametrize("name", sampler_names())
def test_same_generator_same_samples_shape_dtype_and_callback(name):
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64, generator=_gen(9))
    f = gaussian_score(0.5, 0.3)
    options = {**STOCHASTIC.get(name, {}), "n_steps_each": 2} if name == "ald" else {}
    options = options or STOCHASTIC.get(name, {})
    seen = []
    a = _run(name, f, x, 4, _gen(1), seen.append, **options)
    b = _run(name, f, x, 4, _gen(1), **options)
    c = _run(name, f, x, 4, _gen(2), **options)
    assert torch.equal(a, b)
    assert torch.equal(a, c) == (name == "dpmpp-2m")  # the one deterministic solver
    assert a.shape == x.shape and a.dtype == x.dtype and torch.isfinite(a).all()
    assert [d["step"] for d in seen] == list(range(len(seen))) and seen
    if get_sampler(name).to_zero or name == "pc":  # the last update is the end
        assert torch.equal(seen[-1]["x"], a)


def test_options_parse_ranges_and_refuse_bad_values():
    opt = Option.parse("eta", (1.0, "(0, 1]", "h"))
    assert opt.describe() == "> 0 and <= 1" and opt.kind is float
    assert opt.problem(0.0) and opt.problem(1.5) and opt.problem(True) and not opt.problem(1)
    assert Option.parse("t", (3, "[1, inf)", "h")).problem(2.5) == "must be an integer"
    with pytest.raises(ConfigError, match=r"s\.eta = 0\.0 is out of range; it must be > 0"):
        get_sampler("cas").resolve({"eta": 0.0}, "s")
    assert get_sampler("ancestral").resolve({"eta": 0.0, "snr": -1})["eta"] == 0.0  # not its
    with pytest.raises(ValueError, match="not an interval"):
        Option.parse("x", (1.0, "0..1", "h"))


def test_settings_for_nfe_refuses_budgets_below_the_cheapest_setting():
    assert settings_for_nfe("ald", 1000, levels=10) == {"n_steps_each": 100}
    assert settings_for_nfe("heun", 35, levels=10) == {"levels": 18}  # EDM's 18 steps
    assert settings_for_nfe("euler", 1000, levels=10, max_levels=10) == {"levels": 10}
    with pytest.raises(ConfigError, match="--nfe 50 is too few for sampler 'ald'.* costs 95"):
        settings_for_nfe("ald", 50, levels=95)


def test_karras_schedule_endpoints_and_shape():
    s = karras_sigmas(80.0, 0.002, 18)
    assert s[0] == pytest.approx(80.0) and s[-1] == pytest.approx(0.002) and len(s) == 18
    assert bool((s[1:] < s[:-1]).all())
    torch.testing.assert_close(
        karras_sigmas(2.0, 1.0, 5, rho=1.0), torch.linspace(2, 1, 5).double()
    )
    assert karras_sigmas(3.0, 1.0, 1).tolist() == [3.0]
    z = sampler_sigmas("heun", sigma_max=80.0, sigma_min=0.002, levels=18)
    assert z[-1] == 0 and torch.equal(z[:-1], s)


@settings(max_examples=60, deadline=None)
@given(big_l=st.integers(1, 30), data=st.data())
def test_nearest_trained_levels_are_distinct_trained_levels(big_l, data):
    trained = geometric_sigmas(50.0, 0.01, big_l) if big_l > 1 else torch.tensor([1.0])
    n = data.draw(st.integers(1, big_l))
    targets = karras_sigmas(50.0, 0.01, n, rho=data.draw(st.floats(1.0, 10.0)))
    got = nearest_trained_levels(targets, trained)
    assert len(got) == n and bool((got[1:] < got[:-1]).all())
    assert set(got.tolist()) <= set(trained.tolist())
    if n == big_l:
        assert torch.equal(got, trained)


# --- closed forms -----------------------------------------------------------------------

M, S = 0.3, 0.5  # Gaussian data N(M, S^2)


def _flow(x, sigma_from, sigma_to):
    """The exact probability-flow ODE map for Gaussian data: scale by the std ratio."""
    return M + (x - M) * math.sqrt((S**2 + sigma_to**2) / (S**2 + sigma_from**2))


@pytest.mark.parametrize(
    "solver, ratio, tol", [(euler, 2.0, 0.2), (heun, 4.0, 0.4), (dpmpp_2m, 4.0, 0.4)]
)
def test_ode_solvers_converge_with_their_order(solver, ratio, tol):
    # From sigma = 10 to 0.02 on a Karras schedule; halving every step (64 -> 128 steps)
    # divides the global error by 2 (first order) or 4 (second order). Measured ratios:
    # euler 1.99, heun 4.04, dpmpp-2m 4.07.
    x0 = 10.0 * torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    exact = _flow(x0, 10.0, 0.02)
    errors = []
    for steps in (64, 128):
        out = solver(gaussian_score(M, S), x0, karras_sigmas(10.0, 0.02, steps + 1))
        errors.append(float((out - exact).abs().max()))
    assert errors[0] / errors[1] == pytest.approx(ratio, abs=tol)


def test_ode_samplers_end_at_the_denoiser_of_the_last_level():
    # the last step to sigma = 0 of the registry's schedules returns D(x, sigma_min)
    x = torch.randn(5, 2, dtype=torch.float64, generator=_gen(0))
    sig = torch.tensor([0.4, 0.0], dtype=torch.float64)
    want = x + 0.16 * gaussian_score(M, S)(x, torch.full((5,), 0.4, dtype=torch.float64))
    for solver in (euler, heun, dpmpp_2m):
        torch.testing.assert_close(solver(gaussian_score(M, S), x, sig), want)


def test_ancestral_with_eta_zero_is_the_euler_ode_step():
    x = 5.0 * torch.randn(6, 3, dtype=torch.float64, generator=_gen(0))
    sig = geometric_sigmas(5.0, 0.05, 12, dtype=torch.float64)
    f = gaussian_score(M, S)
    a = ancestral_sampling(f, x, sig, eta=0.0, generator=_gen(1))
    torch.testing.assert_close(a, euler(f, x, torch.cat([sig, sig.new_zeros(1)])))


def _ancestral_variance(v, sig, eta, data_var):
    """Exact variance recursion of ancestral sampling for Gaussian data (the score is linear):
    x' - M = (1 - step/(data_var + sigma^2)) (x - M) + up z."""
    for s, n in zip(sig.tolist(), sig.tolist()[1:], strict=False):
        up = eta * (n**2 * (s**2 - n**2) / s**2) ** 0.5
        step = s * (s - (n**2 - up**2) ** 0.5)
        v = (1 - step / (data_var + s**2)) ** 2 * v + up**2
    return v


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("std", [S, 0.02])
def test_ancestral_variance_follows_its_exact_recursion(eta, std):
    # std = 0.02: nearly a point mass, so the final spread is mostly the injected noise
    n, dim = 20000, 2
    sig = geometric_sigmas(5.0, 0.05, 12, dtype=torch.float64)
    x = M + (std**2 + 25.0) ** 0.5 * torch.randn(n, dim, dtype=torch.float64, generator=_gen(0))
    f = gaussian_score(M, std)
    out = ancestral_sampling(f, x, sig, eta=eta, denoise=False, generator=_gen(1))
    v = _ancestral_variance(std**2 + 25.0, sig, eta, std**2)
    se = v * (2 / (n - 1)) ** 0.5
    assert (out.var(0) - v).abs().max() < 5 * se
    assert (out.mean(0) - M).abs().max() < 5 * (v / n) ** 0.5


def test_pc_corrector_is_langevin_with_the_snr_step():
    # One level, many corrector steps on N(M, v), v = S^2 + sigma^2, in high dimension D.
    # The step eps = 2 r^2 ||z||^2 / ||s||^2 = 2 r^2 v^2 D / R^2 depends on R^2 = ||x - M||^2;
    # with R^2 = rho D, E[R'^2] = (1 - eps/v)^2 R^2 + 2 eps D has its fixed point at
    # rho = v (1 + r^2) (to O(1/D)). The final denoising step scales x - M by S^2/v.
    r, sigma, dim = 0.5, 0.5, 1000
    v = S**2 + sigma**2
    x = M + v**0.5 * torch.randn(200, dim, dtype=torch.float64, generator=_gen(0))
    sig = torch.tensor([sigma], dtype=torch.float64)
    out = predictor_corrector(
        gaussian_score(M, S), x, sig, snr=r, corrector_steps=100, generator=_gen(1)
    )
    want = (S**2 / v) ** 2 * v * (1 + r**2)
    assert float(out.var(0).mean()) == pytest.approx(want, rel=0.02)  # measured: 0.3 % off


def test_pc_predictor_variance_follows_the_reverse_diffusion_recursion():
    # Predictor only: x' - M = (1 - d/(S^2 + sigma^2)) (x - M) + sqrt(d) z, d = sigma^2 - next^2
    n = 20000
    sig = geometric_sigmas(5.0, 0.05, 15, dtype=torch.float64)
    x = M + (S**2 + 25.0) ** 0.5 * torch.randn(n, 2, dtype=torch.float64, generator=_gen(0))
    out = predictor_corrector(
        gaussian_score(M, S), x, sig, corrector_steps=0, denoise=False, generator=_gen(1)
    )
    v, levels = S**2 + 25.0, [*sig.tolist(), 0.0]
    for s, nxt in zip(levels, levels[1:], strict=False):
        d = s**2 - nxt**2
        v = (1 - d / (S**2 + s**2)) ** 2 * v + d
    assert (out.var(0) - v).abs().max() < 5 * v * (2 / (n - 1)) ** 0.5


def test_pc_corrector_pulls_the_predictor_towards_the_target_in_high_dimension():
    # With sigma_min = 0.01 the target is N(M, S^2 + 0.01^2). The snr step uses per-example
    # norms ||z||/||s||, which concentrate only in high dimension (the sampler is meant for
    # images), so this runs in 256 dimensions: measured variances 0.270-0.272 (predictor only)
    # and 0.259-0.261 (one corrector step per level) against 0.2501, over three seeds.
    sig = geometric_sigmas(20.0, 0.01, 100, dtype=torch.float64)
    x = M + (S**2 + 400.0) ** 0.5 * torch.randn(500, 256, dtype=torch.float64, generator=_gen(2))
    target = S**2 + 0.01**2
    got = {}
    for steps in (0, 1):
        out = predictor_corrector(
            gaussian_score(M, S), x, sig, corrector_steps=steps, denoise=False, generator=_gen(3)
        )
        got[steps] = float(out.var(0).mean())
        assert abs(float(out.mean()) - M) < 0.01
    assert abs(got[1] - target) < abs(got[0] - target) and abs(got[1] / target - 1) < 0.06


MEANS = torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.2, 0.8], dtype=torch.float64)


def _mixture_start(n, dim, sigma_max):
    """Exact draws of the paper's mixture (1/5 at -5, 4/5 at +5, unit spread; the means kept
    10 sqrt(2) apart in any dimension) perturbed at sigma_max, and the component means."""
    means = MEANS.repeat(1, dim // 2) / (dim / 2) ** 0.5
    g = _gen(0)
    first = torch.rand(n, generator=g, dtype=torch.float64) < 0.2
    mu = torch.where(first[:, None], means[0], means[1])
    x = mu + (1 + sigma_max**2) ** 0.5 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, means


@pytest.mark.parametrize(
    "name, levels, options, dim, tol",
    [
        ("euler", 30, {}, 2, 0.03),
        ("heun", 30, {}, 2, 0.03),
        ("heun", 30, {"s_churn": 10.0}, 2, 0.03),
        ("dpmpp-2m", 30, {}, 2, 0.03),
        ("ancestral", 200, {}, 2, 0.03),
        ("pc", 100, {}, 32, 0.04),
    ],
)
def test_samplers_recover_the_mixture_weights(name, levels, options, dim, tol):
    # n = 4000 (pc: 2000): the binomial standard error of the small mode's share is 0.0063
    # (0.0089); the tolerances allow ~4.5 standard errors with the discretisation bias.
    # Measured: euler 0.205, heun 0.211, heun+churn 0.201, dpmpp-2m 0.210, ancestral 0.208,
    # pc 0.208 (32 dimensions: the snr step needs a few dozen, see the test above).
    n = 2000 if name == "pc" else 4000
    x, means = _mixture_start(n, dim, 20.0)
    spec = get_sampler(name)
    sig = sampler_sigmas(name, sigma_max=20.0, sigma_min=0.01, levels=levels, options=options)
    kw, _ = spec.split(options)
    out = spec(mixture_score(means, WEIGHTS), x, sig, generator=_gen(1), **kw)
    share = float((out.sum(1) < 0).double().mean())
    assert abs(share - 0.2) < tol
    near = out[out.sum(1) > 0] - means[1]  # the big mode: unit spread per dimension
    assert abs(float(near.std(0).mean()) - 1.0) < 0.15
