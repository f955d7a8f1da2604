"""build_model from a bundled config alone: the known data sets' shapes, no data read."""

import dataclasses

import pytest
import torch

import ncsn
from ncsn.api import known_shape
from ncsn.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "shape"),
    [("digits", (1, 8)), ("mnist", (1, 28)), ("fashion-mnist", (1, 28)), ("CIFAR10", (3, 32))],
)
def test_known_shapes(name, shape):
    assert known_shape(name) == shape


def test_unknown_data_sets_have_no_shape():
    assert known_shape("folder:/nowhere") == (None, None)
    assert known_shape("/some/folder") == (None, None)


def test_build_model_from_a_bundled_config_reads_no_data(monkeypatch):
    import ncsn.data

    def no_data(*a, **k):
        raise AssertionError("build_model read the data set")

    monkeypatch.setattr(ncsn.data, "get_dataset", no_data)
    cfg = ncsn.load_config("mnist")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options={"ngf": 8}))
    model = ncsn.build_model(cfg)
    assert (model.channels, model.image_size) == (1, 28)
    sigma = torch.full((2,), float(model.sigmas[0]))
    assert model(torch.rand(2, 1, 28, 28), sigma).shape == (2, 1, 28, 28)


def test_config_and_arguments_override_the_table():
    cfg = ncsn.load_config("mnist")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options={"ngf": 8}))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=16))
    assert ncsn.build_model(cfg).image_size == 16
    assert ncsn.build_model(cfg, channels=3, image_size=12).channels == 3
    folder = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, dataset="/x", image_size=None)
    )
    with pytest.raises(ConfigError, match="input shape is unknown for data set '/x'"):
        ncsn.build_model(folder)
