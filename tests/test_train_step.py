"""The learning-rate schedule of a training step (ncsn.train_step.lr_at)."""

import dataclasses
import math

import pytest

from ncsn.config import load_config
from ncsn.errors import ConfigError
from ncsn.train_step import lr_at


def _cfg(**training):
    cfg = load_config("digits")
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, **training))


def test_constant_after_linear_warmup():
    cfg = _cfg(lr=1e-3, warmup=10, n_iters=100)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 4) == pytest.approx(5e-4)
    assert [lr_at(cfg, s) for s in (9, 50, 99, 500)] == [pytest.approx(1e-3)] * 4


def test_cosine_halves_at_midpoint_and_reaches_zero_at_n_iters():
    cfg = _cfg(lr=2e-3, warmup=10, n_iters=110, lr_schedule="cosine")
    assert lr_at(cfg, 5) == pytest.approx(2e-3 * 6 / 10)  # still warming up
    assert lr_at(cfg, 10) == pytest.approx(2e-3)  # decay starts where the warm-up ends
    assert lr_at(cfg, 60) == pytest.approx(1e-3)  # half-way: cos(pi/2) = 0
    assert lr_at(cfg, 35) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)))
    assert lr_at(cfg, 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(cfg, 200) == pytest.approx(0.0, abs=1e-12)  # past n_iters (resumed longer)
    rates = [lr_at(cfg, s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_unknown_schedule_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {dataset: digits}\ntraining: {lr_schedule: step}\n")
    with pytest.raises(ConfigError, match="lr_schedule"):
        load_config(str(path))


@pytest.mark.parametrize("loss", ["dsm", "ssm", "ssm_vr"])
def test_each_training_loss_is_the_registered_function_on_the_step_draws(loss):
    """train_step's loss is TRAINING_LOSSES[training.loss] on the same draws: the sliced
    losses differ exactly by the variance reduction, DSM by its own formula."""
    import torch

    from ncsn.losses import anneal_dsm_loss, anneal_sliced_score_matching_loss
    from ncsn.train_step import _loss_fn, draw

    cfg = _cfg(loss=loss, n_projections=2)
    sigmas = torch.tensor([1.0, 0.5, 0.1])
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_levels=3))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=g)
    d = draw(cfg, 6, x.shape[1:], sigmas, torch.Generator().manual_seed(0))
    weight = torch.randn(16, generator=g)

    def score_fn(y, sigma):  # a nonlinear score with a non-trivial Jacobian trace
        return torch.tanh(y.flatten(1) * weight).view_as(y) / sigma.view(-1, 1, 1, 1)

    got = _loss_fn(cfg, score_fn, x, sigmas, d)
    kw = {"levels": d.levels, "noise": d.noise}
    if loss == "dsm":
        want = anneal_dsm_loss(score_fn, x, sigmas, power=2.0, **kw)
    else:
        want = anneal_sliced_score_matching_loss(
            score_fn, x, sigmas, power=2.0, n_projections=2, projections=d.projections,
            variance_reduction=loss == "ssm_vr", **kw,
        )  # fmt: skip
    torch.testing.assert_close(got.per_level, want.per_level)
    if loss != "dsm":
        other = anneal_sliced_score_matching_loss(
            score_fn, x, sigmas, power=2.0, n_projections=2, projections=d.projections,
            variance_reduction=loss != "ssm_vr", **kw,
        )  # fmt: skip
        assert not torch.allclose(got.per_level, other.per_level)
