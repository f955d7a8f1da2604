"""EDM's training recipe: log-normal sigma draws, the weighting, data statistics, options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ncsn
import ncsn.data
from ncsn.edm import (
    data_statistics,
    draw_lognormal_sigmas,
    dsm_loss_options,
    edm_weight,
    lognormal_level_probs,
    resolve_data_statistics,
)
from ncsn.errors import ConfigError
from ncsn.losses import anneal_dsm_loss
from ncsn.models import EDMPrecond, ScoreMLP
from ncsn.schedules import geometric_sigmas

SIGMAS = geometric_sigmas(50.0, 0.01, 12)


def _phi(t: float) -> float:
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def test_lognormal_draws_follow_the_truncated_normal_cdf():
    g = torch.Generator().manual_seed(0)
    lo, hi, pm, ps = 0.01, 5.0, -1.2, 1.2
    s = draw_lognormal_sigmas(40_000, lo, hi, pm, ps, like=torch.empty(0), generator=g)
    assert s.shape == (40_000,) and float(s.min()) >= lo and float(s.max()) <= hi
    a, b = _phi((math.log(lo) - pm) / ps), _phi((math.log(hi) - pm) / ps)
    for q in (-3.0, -2.0, -1.0, 0.0, 1.0):
        expected = (_phi((q - pm) / ps) - a) / (b - a)
        assert float((s.log() < q).double().mean()) == pytest.approx(expected, abs=0.01)


def test_lognormal_draws_without_truncation_have_the_normal_moments():
    g = torch.Generator().manual_seed(1)
    s = draw_lognormal_sigmas(40_000, 1e-6, 1e6, -0.5, 0.8, like=torch.empty(0), generator=g)
    assert float(s.log().mean()) == pytest.approx(-0.5, abs=0.02)
    assert float(s.log().std()) == pytest.approx(0.8, abs=0.02)


def test_level_probabilities_are_the_density_at_log_sigma():
    p = lognormal_level_probs(SIGMAS, -1.0, 1.5)
    assert float(p.sum()) == pytest.approx(1.0)
    dens = torch.exp(-0.5 * ((SIGMAS.double().log() + 1.0) / 1.5) ** 2)
    torch.testing.assert_close(p, dens / dens.sum())
    far = lognormal_level_probs(SIGMAS, 80.0, 0.1)  # all density underflows: still finite
    assert torch.isfinite(far).all() and int(far.argmax()) == 0


def test_edm_weighting_makes_every_level_order_one():
    """Untrained preconditioned model (F = 0) on N(mu, sd^2 I) data with the true sd: the
    EDM-weighted loss is d/2 at every sigma (F's target has unit variance); the paper's
    sigma^2 weighting gives d/2 * sd^2 / (sd^2 + sigma^2) instead."""
    mu, sd, n, d = 0.4, 0.3, 6000, 16
    x = mu + sd * torch.randn(n, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model = EDMPrecond(ScoreMLP(dim=d, sigmas=SIGMAS), sigma_data=sd, data_mean=mu).double()
    levels = torch.arange(n) % len(SIGMAS)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        edm = anneal_dsm_loss(
            model, x, SIGMAS, levels=levels, generator=g, weight=lambda s: edm_weight(s, sd)
        )
        paper = anneal_dsm_loss(model, x, SIGMAS, levels=levels, generator=g)
    np.testing.assert_allclose(edm.per_level.numpy(), d / 2, rtol=0.06)
    expected = [d / 2 * sd**2 / (sd**2 + s**2) for s in SIGMAS.tolist()]
    np.testing.assert_allclose(paper.per_level.numpy(), expected, rtol=0.06)


def test_continuous_sigma_is_filed_under_the_nearest_level():
    x = torch.zeros(3, 2)
    sigma = torch.tensor([49.0, 0.011, 1.0])
    out = anneal_dsm_loss(lambda y, s: -y, x, SIGMAS, sigma=sigma)
    assert out.levels.tolist() == [0, len(SIGMAS) - 1, int((SIGMAS.log()).abs().argmin())]


def _cfg(*overrides: str):
    return ncsn.load_config("digits", list(overrides))


def test_default_options_are_the_paper_objective_and_draw_nothing():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    opts = dsm_loss_options(_cfg(), torch.zeros(8, 1, 8, 8), SIGMAS, g)
    assert opts == {"power": 2.0}
    assert torch.equal(g.get_state(), state)


def test_lognormal_options_continuous_or_levels():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(500, 1, 8, 8)
    cont = dsm_loss_options(_cfg("training.sigma_dist=lognormal"), x, SIGMAS, g)
    assert cont["sigma"].shape == (500,) and cont["levels"].shape == (500,)
    assert len(set(cont["sigma"].tolist())) > 400  # continuous
    ncsn_cfg = _cfg("training.sigma_dist=lognormal", "model.name=ncsn")
    disc = dsm_loss_options(ncsn_cfg, x, SIGMAS, g)
    assert "sigma" not in disc and disc["levels"].max() < len(SIGMAS)
    w = dsm_loss_options(_cfg("training.weighting=edm", "model.sigma_data=0.5"), x, SIGMAS, g)
    s = torch.tensor([0.1, 2.0])
    torch.testing.assert_close(w["weight"](s), s**2 * (1 + s**2 / 0.25))


def test_config_refuses_edm_options_with_sliced_losses():
    with pytest.raises(ConfigError, match="training.loss dsm"):
        _cfg("training.loss=ssm", "training.sigma_dist=lognormal")
    with pytest.raises(ConfigError, match="model.precond"):
        _cfg("model.precond=vp")


def test_data_statistics_and_resolution():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    mean, sd = data_statistics(x)
    assert mean == pytest.approx(0.75) and sd == pytest.approx(math.sqrt(0.1875))
    ds = ncsn.data.get_dataset("digits", split="train")
    assert resolve_data_statistics(_cfg(), ds).model.sigma_data is None  # not needed
    cfg = resolve_data_statistics(_cfg("model.precond=edm", "model.data_mean=0.5"), ds)
    images = ncsn.data.as_tensor(ds)[0]
    assert cfg.model.data_mean == 0.5
    assert cfg.model.sigma_data == pytest.approx(data_statistics(images)[1], rel=0.02)
