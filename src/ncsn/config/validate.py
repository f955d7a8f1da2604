"""Plain data (parsed YAML, a checkpoint's stored config) to a validated :class:`Config`.

Each value is checked against its field (type, then the rule declared on the field, see
:mod:`ncsn.config.fields`); then the few rules that tie several fields together. Every
problem is one :class:`ConfigError` line naming the source, the key, the value and what is
allowed.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import asdict, fields
from typing import Any

from ncsn.config.fields import check_rule, check_type, rule_of
from ncsn.config.schema import SECTIONS, Config
from ncsn.errors import ConfigError
from ncsn.sampling.registry import get_sampler

__all__ = ["config_from_dict", "suggest"]


def suggest(key: str, valid: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build_section(cls: type, raw: Any, section: str, source: str) -> Any:
    """One section's dataclass from its mapping, every value checked against its field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: section {section!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in by_name:
            raise ConfigError(
                f"{source}: unknown key '{section}.{key}'{suggest(str(key), by_name)}; "
                f"valid keys: {', '.join(sorted(by_name))}"
            )
        values[key] = check_type(value, hints[key], f"{source}: {section}.{key}")
    for key, value in values.items():
        check_rule(value, rule_of(by_name[key]), f"{section}.{key}", source)
    return cls(**values)


def _check_together(cfg: Config, source: str) -> None:
    """The rules that tie several fields together."""
    model_cfg = cfg.model
    if model_cfg.num_levels > 1 and model_cfg.sigma_max <= model_cfg.sigma_min:
        raise ConfigError(
            f"{source}: model.sigma_max ({model_cfg.sigma_max}) must be larger than "
            f"model.sigma_min ({model_cfg.sigma_min}): noise levels go from large to small"
        )
    get_sampler(cfg.sampling.sampler).resolve(asdict(cfg.sampling), f"{source}: sampling")
    training = cfg.training
    if training.loss != "dsm" and (
        training.weighting != "power" or training.sigma_dist != "uniform"
    ):
        raise ConfigError(
            f"{source}: training.weighting={training.weighting!r} and training.sigma_dist="
            f"{training.sigma_dist!r} work with training.loss dsm only (got "
            f"{training.loss!r}); use weighting power and sigma_dist uniform"
        )
    if not cfg.data.dataset:
        raise ConfigError(f"{source}: data.dataset is empty; name a data set, e.g. digits")


def config_from_dict(raw: Any, source: str = "config") -> Config:
    """Validate plain data (e.g. parsed YAML) into a :class:`Config`.

    Args:
        raw: A mapping with optional keys ``name``, ``data``, ``model``, ``training``,
            ``sampling``.
        source: How the origin is named in error messages (a file name).

    Returns:
        The validated config.

    Raises:
        ConfigError: Naming the offending key.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {raw!r}")
    valid = {"name", *SECTIONS}
    for key in raw:
        if key not in valid:
            raise ConfigError(
                f"{source}: unknown top-level key {key!r}{suggest(str(key), valid)}; "
                f"valid keys: {', '.join(sorted(valid))}"
            )
    name = raw.get("name", "custom")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: name: expected a string, got {name!r}")
    sections = {k: _build_section(cls, raw.get(k), k, source) for k, cls in SECTIONS.items()}
    cfg = Config(name=name, **sections)
    _check_together(cfg, source)
    return cfg
