"""Configs as YAML: bundled names, files, ``section.key=value`` overrides, saving.

YAML is read by :func:`ncsn.yamlio.load_yaml` (bounded, no duplicate keys, ``1e-3`` is a
number) and written by :func:`ncsn.yamlio.dump_yaml`, so that
``load_config(save_config(c)) == c``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from ncsn.config.schema import SECTIONS, Config
from ncsn.config.validate import config_from_dict
from ncsn.errors import ConfigError
from ncsn.io import atomic_write
from ncsn.yamlio import dump_yaml, load_yaml

__all__ = ["bundled_configs", "load_config", "apply_overrides", "save_config", "config_to_yaml"]


def bundled_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    folder = resources.files("ncsn") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> Any:
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: {_yaml_problem(e)}") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = str(getattr(e, "problem", None) or "invalid YAML").replace("\n", " ")
    if isinstance(e, (ComposerError, ConstructorError)):  # bombs, recursion, duplicates
        return f"{where}: {problem}" if where else problem
    return f"{problem}{' at ' + where if where else ''}; fix the YAML syntax"


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a bundled config by name or a YAML file by path, then apply overrides.

    Args:
        name_or_path: A bundled name (see :func:`bundled_configs`) or a path to a YAML file.
        overrides: ``section.key=value`` strings (values parsed as YAML).

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: Unknown name, unreadable file, bad YAML, or an invalid value.
    """
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name in bundled_configs() and not path.is_file():
        res = resources.files("ncsn") / "configs" / f"{text_name}.yaml"
        source = f"config {text_name!r}"
        raw = _read_yaml(res.read_text(), source)
    elif path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
        source = str(path)
        raw = _read_yaml(text, source)
    else:
        raise ConfigError(
            f"no config named {text_name!r}: not a bundled config "
            f"({', '.join(bundled_configs())}) and no such file"
        )
    cfg = config_from_dict(raw, source)
    return apply_overrides(cfg, overrides or [])


def _override_value(key: str, text: str) -> Any:
    """The YAML value of one override (its text itself where it is not valid YAML)."""
    try:
        return load_yaml(text) if text.strip() else None
    except (ComposerError, ConstructorError) as e:
        raise ConfigError(f"override {key}=...: {_yaml_problem(e)}") from None
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` overrides (values parsed as YAML) and re-validate.

    Args:
        cfg: The config to start from (not modified).
        overrides: Strings such as ``training.lr=2e-4`` or ``model.options.ch=32``.

    Returns:
        A new validated config.
    """
    raw = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if len(parts) < 2 or parts[0] not in SECTIONS:
            raise ConfigError(
                f"override {item!r}: key must be section.key with section one of "
                f"{', '.join(SECTIONS)}"
            )
        value = _override_value(key.strip(), text)
        target = raw[parts[0]]
        for p in parts[1:-1]:
            if not isinstance(target.get(p), dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping")
            target = target[p]
        target[parts[-1]] = value
    return config_from_dict(raw, "override")


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (atomically).

    Args:
        cfg: The config.
        path: Output file.

    Returns:
        The path written.
    """
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(config_to_yaml(cfg))
    return path


def config_to_yaml(cfg: Config) -> str:
    """The YAML text of ``cfg`` (what ``--dry-run`` and :func:`save_config` write)."""
    return dump_yaml(cfg.to_dict())
