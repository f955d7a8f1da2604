import math

import pytest
import torch

from ncsn.errors import ConfigError
from ncsn.schedules import (
    gamma_for_dimension,
    geometric_sigmas,
    langevin_eps_for_steps,
    num_levels_from_gamma,
    sigma_max_from_data,
)


def test_paper_sequence_endpoints_and_constant_ratio():
    s = geometric_sigmas(1.0, 0.01, 10)
    assert s.shape == (10,) and s.dtype == torch.float32
    assert s[0].item() == pytest.approx(1.0) and s[-1].item() == pytest.approx(0.01)
    ratios = s[:-1] / s[1:]
    # sigma_1/sigma_L = 100 over 9 ratios: each is 100**(1/9)
    torch.testing.assert_close(ratios, torch.full((9,), 100 ** (1 / 9)), rtol=1e-5, atol=0)
    assert bool((s[:-1] > s[1:]).all())


@pytest.mark.parametrize(
    "args", [(0.01, 1.0, 10), (1.0, 1.0, 10), (-1.0, 0.01, 10), (1.0, 0.01, 0)]
)
def test_bad_schedules_raise_config_error(args):
    with pytest.raises(ConfigError):
        geometric_sigmas(*args)


def test_sigma_max_from_data_is_max_pairwise_distance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, 2, generator=g)
    flat = x.reshape(50, -1)
    brute = max(float((a - b).norm()) for a in flat for b in flat)
    assert sigma_max_from_data(x) == pytest.approx(brute, rel=1e-6)


def test_gamma_rule_reaches_target_overlap():
    d = 3 * 32 * 32
    g = gamma_for_dimension(d)
    cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    r = math.sqrt(2 * d)
    assert cdf(r * (g - 1) + 3 * g) - cdf(r * (g - 1) - 3 * g) == pytest.approx(0.5, abs=1e-6)
    # the ratio shrinks towards 1 as the dimension grows
    assert 1 < gamma_for_dimension(4 * d) < g < gamma_for_dimension(64)


def test_num_levels_spans_range_with_ratio_at_most_gamma():
    d = 3 * 32 * 32
    L = num_levels_from_gamma(50.0, 0.01, d)
    ratio = (50.0 / 0.01) ** (1 / (L - 1))
    assert ratio <= gamma_for_dimension(d) < (50.0 / 0.01) ** (1 / (L - 2))


def test_eps_rule_matches_ncsnv2_published_cifar10_choice():
    # NCSNv2 (Song & Ermon 2020) used sigma 50 -> 0.01, L=232, T=5 and step 6.2e-6 in the
    # official convention (x + a s + sqrt(2a) z); ours is the paper convention, eps = 2a.
    eps = langevin_eps_for_steps(geometric_sigmas(50.0, 0.01, 232), 5)
    assert eps / 2 == pytest.approx(6.2e-6, rel=0.02)


@pytest.mark.parametrize("d", [5, 64, 784, 3 * 32 * 32, 3 * 256 * 256])
def test_gamma_rule_has_the_closed_form_at_one_half(d):
    # overlap 1/2: Phi(sqrt(2D)(g-1) - 3g) = 1/2 up to Phi's upper tail (< 1e-9), so
    # sqrt(2D)(g-1) = 3g, i.e. g = sqrt(2D) / (sqrt(2D) - 3)
    r = math.sqrt(2 * d)
    assert gamma_for_dimension(d) == pytest.approx(r / (r - 3), rel=1e-8)


def test_cifar10_levels_from_the_rule_and_the_papers_choice():
    # sigma 50 -> 0.01 for D = 3072: the rule at overlap 1/2 gives L = 220 (closed form above);
    # NCSNv2 used L = 232, whose ratio has overlap 0.57 ("about 0.5" in the paper)
    r = math.sqrt(2 * 3072)
    L = math.ceil(math.log(50 / 0.01) / math.log(r / (r - 3))) + 1
    assert num_levels_from_gamma(50.0, 0.01, 3072) == L == 220
    ratio_232 = (50 / 0.01) ** (1 / 231)
    cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    overlap = cdf(r * (ratio_232 - 1) + 3 * ratio_232) - cdf(r * (ratio_232 - 1) - 3 * ratio_232)
    assert overlap == pytest.approx(0.567, abs=1e-3)
    assert num_levels_from_gamma(50.0, 0.01, 3072, target=0.566) == 232  # just below it


@pytest.mark.parametrize("d, target", [(4, 0.5), (1, 0.5), (3072, 0.998), (3072, 0.0)])
def test_gamma_rule_refuses_what_has_no_ratio(d, target):
    with pytest.raises(ConfigError):
        gamma_for_dimension(d, target=target)


@pytest.mark.parametrize("s1, sl, L", [(1.0, 0.5, 2), (50.0, 0.01, 232), (1.0, 0.01, 10)])
def test_eps_rule_has_the_closed_form_for_one_step(s1, sl, L):
    # T = 1: f(x) = (1-x)^2 gamma^2 + 2x, minimal at x = e/sigma_L^2 = 1 - 1/gamma^2
    sigmas = geometric_sigmas(s1, sl, L, dtype=torch.float64)
    gamma = float(sigmas[0] / sigmas[1])
    assert langevin_eps_for_steps(sigmas, 1) == pytest.approx(2 * sl**2 * (1 - gamma**-2))


def test_eps_rule_minimises_the_variance_mismatch():
    sigmas = geometric_sigmas(1.0, 0.01, 10, dtype=torch.float64)
    gamma, sl2, t = float(sigmas[0] / sigmas[1]), 0.01**2, 100

    def f(eps):
        r = 1 - eps / 2 / sl2
        tail = 2 / (1 + r)  # 2e / (sigma_L^2 (1 - r^2)) with e = (1 - r) sigma_L^2
        return r ** (2 * t) * (gamma**2 - tail) + tail

    eps = langevin_eps_for_steps(sigmas, t)
    assert f(eps) < min(f(eps * 0.999), f(eps * 1.001)) and f(eps) > 1
