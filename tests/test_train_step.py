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
    from ncsn.config import load_config as load

    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {dataset: digits}\ntraining: {lr_schedule: step}\n")
    with pytest.raises(ConfigError, match="lr_schedule"):
        load(str(path))
