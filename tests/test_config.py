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


def _types(annotation) -> tuple:
    import typing

    return typing.get_args(annotation) or (annotation,)


def _numeric(annotation) -> bool:
    return any(a in (int, float) for a in _types(annotation))


def _section_fields():
    import typing
    from dataclasses import fields

    from ncsn.config.schema import SECTIONS

    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            yield section, f, hints[f.name]


def test_every_numeric_field_declares_its_range_or_says_unbounded():
    from ncsn.config.fields import rule_of

    numeric = [(s, f) for s, f, hint in _section_fields() if _numeric(hint)]
    assert len(numeric) > 40  # the walk sees the fields (sampler options included)
    missing = [f"{s}.{f.name}" for s, f in numeric if not rule_of(f).declared]
    assert missing == []


def test_every_bound_is_enforced_at_its_edge():
    """For each declared bound: the bound itself is accepted or refused as declared, a value
    beyond it is refused with one line naming the key, the value and the range."""
    from dataclasses import replace

    from ncsn.config.fields import check_rule, rule_of

    checked = 0
    for section, f, hint in _section_fields():
        rule = rule_of(f)
        step = 1 if int in _types(hint) else 1e-6
        for bound, inside, outside in (
            (rule.ge, rule.ge, None if rule.ge is None else rule.ge - step),
            (rule.gt, None, rule.gt),
            (rule.le, rule.le, None if rule.le is None else rule.le + step),
            (rule.lt, None, rule.lt),
        ):
            if bound is None:
                continue
            checked += 1
            if inside is not None:  # the range allows it (an extra check may not: ema_rate 1)
                check_rule(inside, replace(rule, check=None), f"{section}.{f.name}", "x.yaml")
            with pytest.raises(ConfigError) as err:
                config_from_dict({section: {f.name: outside}}, "x.yaml")
            msg = str(err.value)
            assert msg.startswith(f"x.yaml: {section}.{f.name} = ") and "\n" not in msg
            assert f"it must be {rule.describe()}" in msg
    assert checked > 30


def test_choices_of_registered_things_are_their_registries_names(monkeypatch):
    from ncsn.config.fields import rule_of
    from ncsn.losses import TRAINING_LOSSES, loss_names
    from ncsn.models import MODEL_NAMES
    from ncsn.models.precond import PRECOND_NAMES
    from ncsn.sampling import sampler_names

    rules = {f"{s}.{f.name}": rule_of(f) for s, f, _ in _section_fields()}
    assert rules["model.name"].allowed() == MODEL_NAMES
    assert rules["model.precond"].allowed() == PRECOND_NAMES
    assert rules["training.loss"].allowed() == loss_names() == ("dsm", "ssm", "ssm_vr")
    assert rules["sampling.sampler"].allowed() == sampler_names()
    for name in MODEL_NAMES:
        assert config_from_dict({"model": {"name": name}}).model.name == name
    for name in sampler_names():
        assert config_from_dict({"sampling": {"sampler": name}}).sampling.sampler == name
    # the registry is asked when a config is validated: a new loss is accepted at once
    with pytest.raises(ConfigError, match="training.loss = 'mine' is not valid"):
        config_from_dict({"training": {"loss": "mine"}}, "x.yaml")
    monkeypatch.setitem(TRAINING_LOSSES, "mine", TRAINING_LOSSES["dsm"])
    assert config_from_dict({"training": {"loss": "mine"}}).training.loss == "mine"


def test_rule_messages_name_key_value_and_what_is_allowed():
    cases = {
        "training.ema_rate": (1, "= 1.0 would keep the EMA weights at their random init"),
        "data.val_size": (1.5, "= 1.5 is neither a fraction (below 1) nor a whole number"),
        "training.loss": ("mse", "= 'mse' is not valid; choose one of dsm, ssm, ssm_vr"),
        "data.channels": (2, "= 2 is not valid; choose one of 1, 3"),
        "training.lr": (2, "= 2.0 is out of range; it must be > 0 and <= 1.0"),
    }
    for dotted, (value, text) in cases.items():
        section, key = dotted.split(".")
        with pytest.raises(ConfigError) as err:
            config_from_dict({section: {key: value}}, "x.yaml")
        assert str(err.value).startswith(f"x.yaml: {dotted} {text}"), str(err.value)
    assert config_from_dict({"data": {"val_size": 500}}).data.val_size == 500


def test_yaml_1_2_numbers_in_files_and_overrides(tmp_path):
    """``1e-3`` (no dot, unsigned exponent) is a number wherever YAML is read, and a string
    that looks like one survives save_config -> load_config."""
    path = tmp_path / "c.yaml"
    path.write_text("name: '1e-3'\ntraining: {lr: 1e-3, n_iters: 2e5, adam_eps: 1E-8}\n")
    cfg = load_config(path)
    assert (cfg.training.lr, cfg.training.adam_eps) == (1e-3, 1e-8)
    assert cfg.training.n_iters == 200_000 and isinstance(cfg.training.n_iters, int)
    assert cfg.name == "1e-3"
    assert load_config(save_config(cfg, tmp_path / "saved.yaml")) == cfg
    assert apply_overrides(cfg, ["training.lr=5e-4", "sampling.eps=2e-5"]).training.lr == 5e-4
    with pytest.raises(ConfigError, match="training.lr: expected a number, got '1e-3'"):
        config_from_dict({"training": {"lr": "1e-3"}}, "x.yaml")  # strings stay strings


def test_yaml_reader_keeps_yaml_1_1_forms():
    from ncsn.yamlio import dump_yaml, load_yaml

    assert load_yaml("[1e-3, -2E+3, .5e-1, 1.5, 1_000.5, .inf, 12, 0x1F, 1e, e5, 1_0]") == [
        0.001, -2000.0, 0.05, 1.5, 1000.5, float("inf"), 12, 31, "1e", "e5", 10,
    ]  # fmt: skip
    data = {"a": ["1e-3", "2E5", ".5", "+1", "x"], "b": 1e-3}
    assert load_yaml(dump_yaml(data)) == data
