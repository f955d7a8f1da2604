"""Typed, validated configuration.

A :class:`Config` is built from YAML (a bundled name such as ``digits`` or a file path), checked
field by field (unknown keys, wrong types and out-of-range values are :class:`ConfigError`
naming the key), overridden with ``key=value`` strings, and saved back to YAML so that
``load_config(save_config(c)) == c``.

- :mod:`ncsn.config.fields`: :func:`~ncsn.config.fields.opt`, a dataclass field carrying its
  rule (range, choices from a registry, or unbounded), and the checks that read it;
- :mod:`ncsn.config.schema`: the sections (:class:`DataConfig`, :class:`ModelConfig`,
  :class:`TrainingConfig`, :class:`SamplingConfig`) and :class:`Config`;
- :mod:`ncsn.config.validate`: :func:`config_from_dict` and the rules across fields;
- :mod:`ncsn.config.files`: loading, overriding and saving YAML.

A new config field is one line in its section (``name: type = opt(default, ...)``) and one
line of its docstring.
"""

from ncsn.config.files import (
    apply_overrides,
    bundled_configs,
    config_to_yaml,
    load_config,
    save_config,
)
from ncsn.config.schema import Config, DataConfig, ModelConfig, SamplingConfig, TrainingConfig
from ncsn.config.validate import config_from_dict

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainingConfig",
    "SamplingConfig",
    "load_config",
    "save_config",
    "bundled_configs",
    "apply_overrides",
    "config_from_dict",
    "config_to_yaml",
]

for _name in __all__:  # the public path in reprs, docs and pickles: ncsn.config.Config
    globals()[_name].__module__ = __name__
del _name
