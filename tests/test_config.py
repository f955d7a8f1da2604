import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsn.config import (
    Config,
    apply_overrides,
    bundled_configs,
    config_from_dict,
    load_config,
    save_config,
)
from ncsn.errors import ConfigError


def test_bundled_configs_load_and_round_trip(tmp_path):
    names = bundled_configs()
    for required in (
        "digits",
        "mnist-cpu",
        "mnist",
        "cifar10",
        "celeba",
        "ncsnv2-cifar10",
        "ncsnv2-celeba64",
    ):
        assert required in names
    for name in names:
        cfg = load_config(name)
        path = save_config(cfg, tmp_path / f"{name}.yaml")
        assert load_config(path) == cfg


def test_paper_hyperparameters():
    for name in ("mnist", "cifar10", "celeba"):
        c = load_config(name)
        assert c.model.name == "ncsn"
        assert (c.training.lr, c.training.batch_size, c.training.n_iters) == (1e-3, 128, 200_000)
        assert (c.model.sigma_max, c.model.sigma_min, c.model.num_levels) == (1.0, 0.01, 10)
        # T = 100 and the official step_lr = 2e-5 = eps / 2
        assert (c.sampling.n_steps_each, c.sampling.eps) == (100, 4e-5)
    assert load_config("mnist").model.options["ngf"] == 64
    assert load_config("cifar10").model.options["ngf"] == 128
    assert load_config("cifar10").data.random_flip is True


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"training": {"lrr": 1}}, r"unknown key 'training.lrr' \(did you mean 'lr'\?\)"),
        ({"trainin": {}}, "unknown top-level key 'trainin'"),
        ({"training": {"lr": "fast"}}, "training.lr: expected a number"),
        ({"training": {"batch_size": 1.5}}, "training.batch_size: expected an integer"),
        ({"training": {"batch_size": 0}}, "training.batch_size = 0 is out of range"),
        ({"training": {"lr": -1}}, "training.lr = -1.0 is out of range"),
        ({"model": {"num_levels": 0}}, "model.num_levels = 0 is out of range"),
        ({"model": {"sigma_max": 0.001, "sigma_min": 0.01}}, "must be larger than model.sigma_min"),
        ({"model": {"name": "gan"}}, "model.name = 'gan' is not valid"),
        ({"training": {"ema_rate": True}}, "training.ema_rate: expected a number"),
        ({"data": ["x"]}, "section 'data' must be a mapping"),
        ([1, 2], "top level must be a mapping"),
        ({"sampling": {"eps": float("nan")}}, "expected a finite number"),
    ],
)
def test_validation_errors_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw, "x.yaml")


def test_overrides():
    cfg = apply_overrides(
        load_config("digits"),
        ["training.lr=2e-4", "model.options.ch=16", "training.grad_clip=null"],
    )
    assert cfg.training.lr == 2e-4 and cfg.model.options["ch"] == 16
    assert cfg.training.grad_clip is None
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(cfg, ["training.lr"])
    with pytest.raises(ConfigError, match="unknown key 'training.foo'"):
        apply_overrides(cfg, ["training.foo=1"])
    with pytest.raises(ConfigError, match="section one of"):
        apply_overrides(cfg, ["lr=1"])


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="no config named 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: .* at line \d+"):
        load_config(bad)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(string.printable, max_size=8),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.dictionaries(
        st.sampled_from(["name", "data", "model", "training", "sampling", "extra"]),
        st.one_of(
            _values,
            st.dictionaries(
                st.sampled_from(
                    [
                        "lr",
                        "batch_size",
                        "dataset",
                        "sigma_max",
                        "sigma_min",
                        "num_levels",
                        "eps",
                        "sampler",
                        "options",
                        "ema_rate",
                        "zzz",
                    ]
                ),
                _values,
                max_size=4,
            ),
        ),
        max_size=4,
    )
)
def test_fuzzed_configs_either_validate_or_raise_config_error(raw):
    try:
        cfg = config_from_dict(raw, "fuzz")
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(cfg, Config)
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
