"""Tests for ncsn.api helpers that do not need a trained network."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ncsn.api import sample, sampler_settings
from ncsn.config import load_config


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


@pytest.mark.parametrize("sampler", ["ald", "cas", "ancestral"])
@pytest.mark.parametrize("denoise", [True, False])
def test_sampler_settings_nfe_counts_the_network_calls(sampler, denoise):
    cfg = load_config("digits")
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, num_levels=6),
        sampling=dataclasses.replace(
            cfg.sampling, sampler=sampler, n_steps_each=3, denoise=denoise, batch_size=2
        ),
    )
    model = CountingScore()
    sample(model, cfg, 2, seed=0)  # one batch: every network call is one evaluation per sample
    got = sampler_settings(cfg)
    assert got["nfe"] == model.calls
    assert got["sampler"] == sampler and got["levels"] == 6 and got["denoise"] == denoise
    assert got["n_steps_each"] == (3 if sampler == "ald" else 1)
    assert (got["eps"] is not None) == (sampler == "ald")
    assert (got["eta"] is not None) == (sampler == "cas")
