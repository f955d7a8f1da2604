"""Typed, validated configuration.

A :class:`Config` is built from YAML (a bundled name such as ``digits`` or a file path), checked
field by field (unknown keys, wrong types and out-of-range values are :class:`ConfigError`
naming the key), overridden with ``key=value`` strings, and saved back to YAML so that
``load_config(save_config(c)) == c``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from ncsn.errors import ConfigError
from ncsn.io import atomic_write
from ncsn.sampling.registry import get_sampler, option_fields, sampler_names
from ncsn.yamlio import load_yaml

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
]


@dataclass
class DataConfig:
    """What to train on.

    Attributes:
        dataset: ``digits`` (built in), ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeba``,
            or ``folder:PATH`` for any image folder.
        root: Where torchvision data sets live (default: ``$NCSN_DATA_ROOT`` or ``./data``).
        image_size: Resize to this size (None: the data set's own).
        channels: 1 or 3 (None: the data set's own).
        random_flip: Random horizontal flips while training (None: the data set's default).
        dequantize: Uniform dequantisation of 8-bit data.
        logit_transform: Train in logit space.
        val_size: Part of the training split held out for the validation loss: a fraction
            below 1 or a whole number of images.
    """

    dataset: str = "digits"
    root: str | None = None
    image_size: int | None = None
    channels: int | None = None
    random_flip: bool | None = None
    dequantize: bool = False
    logit_transform: bool = False
    val_size: float = 0.05


@dataclass
class ModelConfig:
    """The score network and its noise levels.

    Attributes:
        name: ``ncsn`` (the paper's RefineNet), ``ncsnv2``, ``unet`` (CPU-efficient) or ``mlp``.
        sigma_max: sigma_1, the largest noise level.
        sigma_min: sigma_L, the smallest noise level.
        num_levels: L.
        options: Extra keyword arguments for the architecture (e.g. ``ngf``, ``ch``).
        precond: ``none`` (the network is the score model, as in the paper) or ``edm``
            (:class:`ncsn.models.precond.EDMPrecond`: EDM's c_skip, c_out, c_in around the
            network, so every noise level is learnable from the first steps).
        sigma_data: Standard deviation of the data around ``data_mean`` for ``edm``
            preconditioning and weighting (None: estimated from the training data when
            training starts and written into the run's config).
        data_mean: The data's mean pixel value, subtracted before the network (None: estimated
            like ``sigma_data``).
    """

    name: str = "unet"
    sigma_max: float = 1.0
    sigma_min: float = 0.01
    num_levels: int = 10
    options: dict = field(default_factory=dict)
    precond: str = "none"
    sigma_data: float | None = None
    data_mean: float | None = None


@dataclass
class TrainingConfig:
    """Optimisation, logging and checkpointing.

    Attributes:
        n_iters: Number of optimiser steps.
        batch_size: Examples per step.
        lr: Adam learning rate.
        beta1: Adam beta1.
        beta2: Adam beta2.
        weight_decay: Adam weight decay.
        adam_eps: Adam epsilon.
        warmup: Linear learning-rate warm-up steps.
        lr_schedule: ``constant`` after the warm-up, or ``cosine``: decays from ``lr`` to 0
            at step ``n_iters`` (half a cosine period; set ``n_iters`` to the steps the run
            will really take, e.g. what ``time_limit`` allows).
        grad_clip: Clip the gradient norm to this value (None: no clipping).
        ema_rate: Exponential moving average of the weights, in [0, 1) (None: no EMA).
        loss: ``dsm`` (the paper), ``ssm`` or ``ssm_vr`` (annealed sliced score matching).
        loss_power: lambda(sigma) = sigma**loss_power (``weighting: power``), between 0 and 4
            (the paper: 2).
        weighting: ``power`` (lambda = sigma**loss_power, the paper) or ``edm``
            (lambda = sigma^2 (1 + sigma^2 / sigma_data^2): EDM's weighting in score units).
        sigma_dist: Noise levels drawn for training: ``uniform`` over the L levels (the paper)
            or ``lognormal`` (EDM: log sigma ~ N(p_mean, p_std^2), truncated to
            [sigma_min, sigma_max]; continuous sigma, or levels with those probabilities for
            the paper's level-indexed network).
        p_mean: Mean of log sigma for ``lognormal`` (EDM's -1.2 is for data in [-1, 1];
            ncsn's data in [0, 1] has half the scale, so -1.2 + ln 1/2 = -1.9).
        p_std: Standard deviation of log sigma for ``lognormal``.
        n_projections: Random projections per example for sliced score matching.
        seed: Seed of every random draw in training, 0 to 2**63 - 1.
        log_every: Steps between metric lines.
        eval_every: Steps between held-out DSM evaluations (0: never).
        sample_every: Steps between sample grids (0: never).
        checkpoint_every: Steps between checkpoints.
        keep_checkpoints: How many recent checkpoints to keep.
        milestone_every: Also keep every checkpoint at a multiple of this (0: none).
        max_bad_steps: Non-finite steps to skip before stopping (0: stop at the first).
        time_limit: Stop (with a checkpoint) after this many minutes of training (None: no limit).
        tensorboard: Also write TensorBoard event files when tensorboard is installed.
        threads: CPU threads for PyTorch (0: leave PyTorch's default).
        accumulate: Gradient accumulation: each step runs ``accumulate`` micro-batches of
            ``batch_size / (processes * accumulate)`` examples per process and sums their
            gradients, so the update is the one of a whole batch of ``batch_size``.
        precision: ``fp32`` or ``bf16`` (the network runs under bfloat16 autocast; the loss,
            gradients, optimizer and EMA stay float32).
        activation_checkpointing: Recompute each block's activations in the backward pass
            instead of storing them (less memory, one more forward pass of compute).
        compile: Run the network through ``torch.compile`` (falls back to eager with one
            warning line where compilation fails).
        channels_last: Channels-last memory format for the network and its inputs (meant for
            CUDA tensor cores).
    """

    n_iters: int = 200_000
    batch_size: int = 128
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    warmup: int = 0
    lr_schedule: str = "constant"
    grad_clip: float | None = None
    ema_rate: float | None = 0.999
    loss: str = "dsm"
    loss_power: float = 2.0
    weighting: str = "power"
    sigma_dist: str = "uniform"
    p_mean: float = -1.9
    p_std: float = 1.2
    n_projections: int = 1
    seed: int = 0
    log_every: int = 100
    eval_every: int = 1000
    sample_every: int = 5000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    milestone_every: int = 0
    max_bad_steps: int = 0
    time_limit: float | None = None
    tensorboard: bool = True
    threads: int = 0
    accumulate: int = 1
    precision: str = "fp32"
    activation_checkpointing: bool = False
    compile: bool = False
    channels_last: bool = False


def _sampling_config() -> type:
    """The ``sampling`` section: fixed keys, then every option of every registered sampler.

    Sampler options default to ``None``, "the chosen sampler's own default" (see
    :mod:`ncsn.sampling.registry`); an option the chosen sampler does not have is ignored.
    """
    head = [
        ("sampler", str, field(default="ald")),
        ("levels", int | None, field(default=None)),
    ]
    options = option_fields()
    middle = [(k, kind | None, field(default=None)) for k, (kind, _) in options.items()]
    tail = [
        ("init", str, field(default="uniform")),
        ("n_samples", int, field(default=64)),
        ("batch_size", int, field(default=100)),
    ]
    cls = make_dataclass("SamplingConfig", head + middle + tail)
    cls.__module__ = __name__
    lines = [
        "How to sample.",
        "",
        "Attributes:",
        f"    sampler: One of {', '.join(sampler_names())} (see :mod:`ncsn.sampling`).",
        "    levels: Noise levels in the sampler's schedule (None: the network's L; networks",
        "        trained on a fixed set of levels use at most those).",
        *(f"    {k}: {text}" for k, (_, text) in options.items()),
        "    init: ``uniform`` (the paper: U[0,1], for samplers that allow it) or ``gaussian``",
        "        (0.5 + sigma_1 N(0, I)).",
        "    n_samples: Samples to draw by default.",
        "    batch_size: Samples per network batch.",
    ]
    cls.__doc__ = "\n".join(lines)
    return cls


SamplingConfig = _sampling_config()


@dataclass
class Config:
    """A whole experiment."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (YAML-safe)."""
        return asdict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "sampling": SamplingConfig,
}

# (minimum, maximum, inclusive-minimum) per numeric key; None = unbounded
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "data.image_size": (1, 4096, True),
    "data.val_size": (0, None, True),
    "model.sigma_max": (0, None, False),
    "model.sigma_min": (0, None, False),
    "model.num_levels": (1, 100_000, True),
    "model.sigma_data": (0, None, False),
    "training.n_iters": (0, None, True),
    "training.batch_size": (1, 1_000_000, True),
    "training.lr": (0, 1.0, False),
    "training.beta1": (0, 1, True),
    "training.beta2": (0, 1, True),
    "training.weight_decay": (0, None, True),
    "training.adam_eps": (0, None, False),
    "training.warmup": (0, None, True),
    "training.grad_clip": (0, None, False),
    "training.ema_rate": (0, 1, True),  # 1 itself is refused in _check_special
    "training.loss_power": (0, 4, True),
    "training.seed": (0, 2**63 - 1, True),
    "training.n_projections": (1, 1000, True),
    "training.p_std": (0, None, False),
    "training.log_every": (1, None, True),
    "training.eval_every": (0, None, True),
    "training.sample_every": (0, None, True),
    "training.checkpoint_every": (1, None, True),
    "training.keep_checkpoints": (1, None, True),
    "training.milestone_every": (0, None, True),
    "training.max_bad_steps": (0, None, True),
    "training.time_limit": (0, None, False),
    "training.threads": (0, 1024, True),
    "training.accumulate": (1, 1_000_000, True),
    "sampling.levels": (1, 1_000_000, True),
    "sampling.n_samples": (1, None, True),
    "sampling.batch_size": (1, None, True),
}
_CHOICES = {
    "model.name": ("ncsn", "ncsnv2", "unet", "mlp"),
    "model.precond": ("none", "edm"),
    "training.loss": ("dsm", "ssm", "ssm_vr"),
    "training.precision": ("fp32", "bf16"),
    "training.lr_schedule": ("constant", "cosine"),
    "training.weighting": ("power", "edm"),
    "training.sigma_dist": ("uniform", "lognormal"),
    "sampling.sampler": sampler_names(),
    "sampling.init": ("uniform", "gaussian"),
    "data.channels": (1, 3),
}


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads 1e-3 (no dot) as a string: accept it
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if annotation is dict or origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping of names to values, got {value!r}")
    raise TypeError(f"unsupported annotation {annotation!r} for {where}")


def _build_section(cls, raw: Any, section: str, source: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: section {section!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key '{section}.{key}'{_suggest(str(key), names)}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        values[key] = _coerce(value, hints[key], f"{source}: {section}.{key}")
    return cls(**values)


def _check_ranges(cfg: Config, source: str) -> None:
    for dotted, (lo, hi, inclusive) in _RANGES.items():
        section, key = dotted.split(".")
        v = getattr(getattr(cfg, section), key)
        if v is None:
            continue
        too_low = lo is not None and (v < lo if inclusive else v <= lo)
        too_high = hi is not None and v > hi
        if too_low or too_high:
            lo_s = "" if lo is None else (f">= {lo}" if inclusive else f"> {lo}")
            hi_s = "" if hi is None else f"<= {hi}"
            rng = " and ".join(s for s in (lo_s, hi_s) if s)
            raise ConfigError(f"{source}: {dotted} = {v} is out of range; it must be {rng}")
    for dotted, choices in _CHOICES.items():
        section, key = dotted.split(".")
        v = getattr(getattr(cfg, section), key)
        if v is not None and v not in choices:
            raise ConfigError(
                f"{source}: {dotted} = {v!r} is not valid; choose one of "
                f"{', '.join(map(str, choices))}"
            )
    _check_special(cfg, source)
    m = cfg.model
    if m.num_levels > 1 and m.sigma_max <= m.sigma_min:
        raise ConfigError(
            f"{source}: model.sigma_max ({m.sigma_max}) must be larger than model.sigma_min "
            f"({m.sigma_min}): noise levels go from large to small"
        )
    get_sampler(cfg.sampling.sampler).resolve(asdict(cfg.sampling), f"{source}: sampling")
    t = cfg.training
    if t.loss != "dsm" and (t.weighting != "power" or t.sigma_dist != "uniform"):
        raise ConfigError(
            f"{source}: training.weighting={t.weighting!r} and training.sigma_dist="
            f"{t.sigma_dist!r} work with training.loss dsm only (got {t.loss!r}); "
            "use weighting power and sigma_dist uniform"
        )
    if not cfg.data.dataset:
        raise ConfigError(f"{source}: data.dataset is empty; name a data set, e.g. digits")


def _check_special(cfg: Config, source: str) -> None:
    """Values that a plain range cannot express."""
    if cfg.training.ema_rate == 1:
        raise ConfigError(
            f"{source}: training.ema_rate = 1 would keep the EMA weights at their random "
            "initialisation (and sample with them); use a rate below 1, e.g. 0.999, or null "
            "for no EMA"
        )
    v = cfg.data.val_size
    if v > 1 and not float(v).is_integer():
        raise ConfigError(
            f"{source}: data.val_size = {v} is neither a fraction (below 1) nor a whole "
            "number of images; use e.g. 0.05 for 5% or 500 for 500 images"
        )


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
    valid = {"name", *_SECTIONS}
    for key in raw:
        if key not in valid:
            raise ConfigError(
                f"{source}: unknown top-level key {key!r}{_suggest(str(key), valid)}; "
                f"valid keys: {', '.join(sorted(valid))}"
            )
    name = raw.get("name", "custom")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: name: expected a string, got {name!r}")
    sections = {k: _build_section(cls, raw.get(k), k, source) for k, cls in _SECTIONS.items()}
    cfg = Config(name=name, **sections)
    _check_ranges(cfg, source)
    return cfg


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
        raw = _read_yaml(res.read_text(), f"config {text_name!r}")
        source = f"config {text_name!r}"
    elif path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
        raw = _read_yaml(text, str(path))
        source = str(path)
    else:
        raise ConfigError(
            f"no config named {text_name!r}: not a bundled config "
            f"({', '.join(bundled_configs())}) and no such file"
        )
    cfg = config_from_dict(raw, source)
    return apply_overrides(cfg, overrides or [])


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
        if len(parts) < 2 or parts[0] not in _SECTIONS:
            raise ConfigError(
                f"override {item!r}: key must be section.key with section one of "
                f"{', '.join(_SECTIONS)}"
            )
        try:
            value = load_yaml(text) if text.strip() else None
        except (ComposerError, ConstructorError) as e:
            raise ConfigError(f"override {key.strip()}=...: {_yaml_problem(e)}") from None
        except yaml.YAMLError:
            value = text
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
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    return path


def config_to_yaml(cfg: Config) -> str:
    """The YAML text of ``cfg`` (what ``--dry-run`` prints)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def replace(cfg: Config, **sections) -> Config:
    """A copy of ``cfg`` with whole sections replaced."""
    return dataclasses.replace(cfg, **sections)
