"""Colour image folders: `ncsn techniques --data FOLDER` and the cifar10-cpu config."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.api import build_model
from ncsn.cli import main
from ncsn.config import load_config
from ncsn.data import as_tensor, get_dataset
from ncsn.models import EDMPrecond
from ncsn.schedules import gamma_for_dimension, sigma_max_from_data


@pytest.fixture
def photos(tmp_path):
    """24 colour photos of mixed sizes (not square, not 8x8), in a flat folder."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(24):
        w, h = (20, 26) if k % 2 else (31, 17)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{k:02d}.png")
    return folder


def test_techniques_on_an_image_folder(photos, capsys):
    argv = ["techniques", "--config", "cifar10-cpu", "--data", str(photos)]
    assert main([*argv, "--set", "data.image_size=8"]) == 0
    out = json.loads(capsys.readouterr().out)
    ds = get_dataset(f"folder:{photos}", split="train", image_size=8, val_size=0.05)
    images = as_tensor(ds)[0]
    assert out["shape"] == [3, 8, 8] and out["images"] == len(ds) and out["dim"] == 192
    assert out["sigma_max"] == pytest.approx(sigma_max_from_data(images), abs=1e-4)
    gamma = gamma_for_dimension(192)
    ratio = (out["sigma_max"] / 0.01) ** (1 / (out["num_levels"] - 1))
    assert ratio <= gamma < (out["sigma_max"] / 0.01) ** (1 / (out["num_levels"] - 2))
    assert out["data_mean"] == pytest.approx(float(images.mean()), abs=1e-4)
    assert out["sigma_data"] == pytest.approx(float(images.std(unbiased=False)), abs=1e-4)
    # the printed overrides make a config with those levels
    cfg = load_config("cifar10-cpu", [*out["set"], "data.image_size=8"])
    assert cfg.model.num_levels == out["num_levels"] and cfg.sampling.eps > 0
    assert cfg.data.dataset == str(photos)


def test_techniques_without_image_size_names_the_fix(photos, capsys):
    assert main(["techniques", "--data", str(photos)]) == 2
    err = capsys.readouterr().err
    assert "data.image_size" in err and len(err.strip().splitlines()) == 1


def test_cifar10_cpu_config_wraps_the_unet():
    cfg = load_config("cifar10-cpu")
    assert cfg.model.precond == "edm" and cfg.training.weighting == "edm"
    assert cfg.model.sigma_data is None  # estimated from the data by ncsn train
    model = build_model(cfg, channels=3)
    assert isinstance(model, EDMPrecond) and model.image_size == 32
    assert model.net.input_scaling is False
    with torch.no_grad():
        score = model(torch.rand(2, 3, 32, 32), torch.tensor([48.17, 0.01]))
    assert math.isfinite(float(score.abs().sum()))
