"""Tests for ncsn.api helpers that do not need a trained network."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ncsn import api
from ncsn.api import init_noise, model_sigmas, sample, sampler_settings, with_nfe
from ncsn.config import load_config
from ncsn.errors import ConfigError
from ncsn.sampling import get_sampler, sampler_names


class CountingScore(nn.Module):
    """The exact score of N(0.5, I) perturbed by sigma, counting its evaluations."""

    channels, image_size = 1, 4

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives sample() a device
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -(x - 0.5) / (1.0 + sigma.reshape(-1, 1, 1, 1) ** 2)


def _config(sampler: str, model: str = "unet", levels: int = 6, **options):
    cfg = load_config("digits")
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, name=model, num_levels=levels),
        sampling=dataclasses.replace(
            cfg.sampling, sampler=sampler, batch_size=2, **{"levels": None, **options}
        ),
    )


@pytest.mark.parametrize("sampler", sampler_names())
@pytest.mark.parametrize("denoise", [True, False])
def test_sampler_settings_nfe_counts_the_network_calls(sampler, denoise):
    cfg = _config(sampler, n_steps_each=3, denoise=denoise, corrector_steps=2)
    model = CountingScore()
    sample(model, cfg, 2, seed=0)  # one batch: every network call is one evaluation per sample
    got = sampler_settings(cfg)
    assert got["nfe"] == model.calls
    assert got["sampler"] == sampler and got["levels"] == 6
    assert set(got) == {"sampler", "levels", "schedule", "nfe", *get_sampler(sampler).options}
    assert got.get("denoise", denoise) == denoise
    assert got.get("n_steps_each", 3) == 3 and got.get("corrector_steps", 2) == 2


@pytest.mark.parametrize("sampler", sampler_names())
@pytest.mark.parametrize("nfe", [10, 35, 100])
def test_with_nfe_spends_at_most_the_requested_evaluations(sampler, nfe):
    # ALD on 6 levels costs at least 6 (+1): 10 -> T = 1, 35 -> T = 5, 100 -> T = 16
    cfg = with_nfe(_config(sampler), nfe)
    got = sampler_settings(cfg)["nfe"]
    assert got <= nfe
    knob = get_sampler(sampler).knob
    value = cfg.sampling.levels if knob == "levels" else getattr(cfg.sampling, knob)
    bigger = dataclasses.replace(
        cfg, sampling=dataclasses.replace(cfg.sampling, **{knob: value + 1})
    )
    assert sampler_settings(bigger)["nfe"] > nfe  # the largest setting within the budget
    model = CountingScore()
    sample(model, cfg, 2, seed=0)
    assert model.calls == got


def test_another_sampler_starts_from_the_networks_levels():
    # mnist-cpu's 100 levels set PC's cost; ALD on them would be neither PC's budget nor
    # the paper's L x T, so another sampler gets the network's L levels (ALD: 95 x 5 + 1)
    cfg = load_config("mnist-cpu")
    assert (cfg.sampling.sampler, cfg.sampling.levels) == ("pc", 100)
    ald = sampler_settings(api.with_sampler(cfg, "ald"))
    assert (ald["sampler"], ald["levels"], ald["nfe"]) == ("ald", 95, 476)
    assert sampler_settings(api.with_sampler(cfg, "heun"))["levels"] == 95
    same = api.with_sampler(cfg, "pc")
    assert (same.sampling.levels, sampler_settings(same)["nfe"]) == (100, 200)
    with pytest.raises(ConfigError, match="unknown sampler 'hune'; choose one of ald"):
        api.with_sampler(cfg, "hune")


def test_discrete_sigma_networks_sample_only_their_trained_levels():
    # the paper's NCSN maps any sigma to its nearest level: every sigma a sampler passes to it
    # must be one of its levels, and asking for more levels than it has gives all of them
    class Recording(CountingScore):
        def forward(self, x, sigma):
            self.seen.update(sigma.tolist())
            return super().forward(x, sigma)

    for sampler in sampler_names():
        cfg = with_nfe(_config(sampler, model="ncsn", levels=8), 1000)
        model = Recording()
        model.seen = seen = set()
        sample(model, cfg, 2, seed=0)
        trained = set(model_sigmas(cfg).tolist())
        assert seen <= trained, sampler
        assert sampler_settings(cfg)["levels"] == 8
        assert "trained levels" in sampler_settings(cfg)["schedule"]


def test_discrete_sigma_networks_get_distinct_levels_for_short_schedules():
    cfg = _config("heun", model="ncsn", levels=10)
    cfg = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, levels=4))
    _, _, sigmas = api._sampler_plan(cfg)
    trained = model_sigmas(cfg)
    pos = sigmas[sigmas > 0].float()
    assert len(pos) == 4 and len(set(pos.tolist())) == 4
    assert set(pos.tolist()) <= set(trained.tolist())
    assert pos[0] == trained[0] and pos[-1] == trained[-1]  # the range is kept
    assert sigmas[-1] == 0


@pytest.mark.parametrize("sampler", sampler_names())
def test_initial_noise_rule_comes_from_the_registry(sampler):
    cfg = _config(sampler)  # init: uniform (the default)
    x = init_noise(cfg, 4000, (1,), torch.Generator().manual_seed(0), "cpu")
    if get_sampler(sampler).uniform_init:
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    else:  # 0.5 + sigma_1 N(0, I), sigma_1 = 5 in digits
        assert abs(float(x.std()) - 5.0) < 0.2 and abs(float(x.mean()) - 0.5) < 0.3
