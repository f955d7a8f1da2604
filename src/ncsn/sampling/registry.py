"""The sampler registry: the one list of sampler names, their options and their cost.

A sampler is a pure function ``sampler(score_fn, x, sigmas, *, generator=None,
callback=None, **options) -> x`` registered once::

    @register_sampler(
        "euler",
        nfe=lambda levels, **o: levels,
        options={"s_churn": (0.0, "[0, inf)", "EDM's S_churn")},
        schedule="karras",
    )
    def euler(score_fn, x, sigmas, *, s_churn=0.0, generator=None, callback=None): ...

with its network evaluations per sample as a function of the number of noise levels in its
schedule and its options, and each option's default, allowed range (an interval such as
``"(0, 1]"``, or ``None`` for booleans and unbounded values) and help. The config's
``sampling`` section, ``ncsn sample --sampler NAME --nfe N``, the initial noise, the GIF
frames, :func:`ncsn.api.sampler_settings` and the benchmarks all read this registry.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ncsn.errors import ConfigError

__all__ = [
    "Option",
    "SamplerSpec",
    "SAMPLERS",
    "SCHEDULES",
    "register_sampler",
    "get_sampler",
    "sampler_names",
    "option_fields",
    "settings_for_nfe",
]

SCHEDULES = {
    "geometric": "geometric levels sigma_max -> sigma_min (the network's own levels when "
    "their number is L)",
    "karras": "Karras et al. (2022): (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - "
    "sigma_max^(1/rho)))^rho, then 0",
}
SCHEDULE_OPTIONS = {"geometric": (), "karras": ("rho",)}
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\]\)\s]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Option:
    """One sampler option: its default, type (that of the default), allowed range and help."""

    name: str
    default: Any
    kind: type
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @classmethod
    def parse(cls, name: str, spec: tuple[Any, str | None, str]) -> Option:
        """Build from ``(default, interval or None, help)``; a ``None`` default is a float."""
        default, interval, text = spec
        kind = bool if isinstance(default, bool) else int if isinstance(default, int) else float
        if interval is None:
            return cls(name, default, kind, text)
        m = _INTERVAL.match(interval)
        if not m:
            raise ValueError(f"option {name}: range {interval!r} is not an interval like '(0, 1]'")
        lo = None if m[2] in ("-inf", "-infinity") else float(m[2])
        hi = None if m[3] in ("inf", "infinity") else float(m[3])
        return cls(name, default, kind, text, lo, hi, m[1] == "(", m[4] == ")")

    def describe(self) -> str:
        """The range in words, e.g. ``> 0 and <= 1``."""
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return " and ".join(parts) or "any value"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or ``None``."""
        if value is None:
            return None if self.default is None else "must be set"
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number ({self.kind.__name__})"
        if self.kind is int and not float(value).is_integer():
            return "must be an integer"
        if not math.isfinite(value):
            return "must be finite"
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        return f"is out of range; it must be {self.describe()}" if low or high else None


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler. Calling it calls the sampler function."""

    name: str
    fn: Callable[..., Any]
    nfe_fn: Callable[..., int]
    options: dict[str, Option]
    schedule: str = "geometric"
    to_zero: bool = False
    knob: str = "levels"
    uniform_init: bool = False
    sampler_options: tuple[str, ...] = field(default=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def summary(self) -> str:
        """The first line of the sampler function's docstring."""
        return (inspect.getdoc(self.fn) or self.name).splitlines()[0]

    def resolve(self, values: Mapping[str, Any] | None = None, where: str = "sampling") -> dict:
        """All options of this sampler: ``values`` where given (not ``None``), else defaults.

        Keys of ``values`` that are not options of this sampler are ignored (a config holds
        the options of every sampler).

        Raises:
            ConfigError: A value outside its option's range, naming the key and the range.
        """
        values = values or {}
        out = {}
        for name, opt in self.options.items():
            v = values.get(name)
            v = opt.default if v is None else v
            bad = opt.problem(v)
            if bad:
                raise ConfigError(f"{where}.{name} = {v!r} {bad} for sampler {self.name!r}")
            out[name] = opt.kind(v) if v is not None else None
        return out

    def nfe(self, levels: int, options: Mapping[str, Any] | None = None) -> int:
        """Network evaluations per sample with ``levels`` noise levels and these options."""
        return int(self.nfe_fn(int(levels), **self.resolve(options)))

    def split(self, options: Mapping[str, Any]) -> tuple[dict, dict]:
        """Resolved options as (the sampler function's keywords, the schedule's keywords)."""
        full = self.resolve(options)
        sched = {k: full[k] for k in SCHEDULE_OPTIONS[self.schedule]}
        return {k: full[k] for k in self.sampler_options}, sched


SAMPLERS: dict[str, SamplerSpec] = {}


def register_sampler(
    name: str,
    *,
    nfe: Callable[..., int],
    options: Mapping[str, tuple[Any, str | None, str]] | None = None,
    schedule: str = "geometric",
    to_zero: bool = False,
    knob: str = "levels",
    uniform_init: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a sampler function under ``name`` (a decorator; returns the function).

    Args:
        name: The sampler's name in configs and on the command line.
        nfe: ``nfe(levels, **options) -> int``, network evaluations per sample.
        options: ``{option: (default, interval or None, help)}``.
        schedule: ``geometric`` or ``karras`` (see :data:`SCHEDULES`); a ``karras`` sampler
            must declare the option ``rho``.
        to_zero: The schedule ends with sigma = 0 (the last step returns the denoiser).
        knob: What ``--nfe`` sets: ``levels`` or the name of an integer option.
        uniform_init: The sampler may start from the paper's U[0, 1] noise (``init:
            uniform``); otherwise it starts from 0.5 + sigma_1 N(0, I).
    """
    opts = {k: Option.parse(k, v) for k, v in (options or {}).items()}
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    missing = set(SCHEDULE_OPTIONS[schedule]) - set(opts)
    if missing or (knob != "levels" and (knob not in opts or opts[knob].kind is not int)):
        raise ValueError(f"sampler {name}: missing schedule options {missing} or bad knob {knob}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = inspect.signature(fn).parameters
        own = tuple(k for k in opts if k not in SCHEDULE_OPTIONS[schedule])
        lacking = [k for k in (*own, "generator", "callback") if k not in params]
        if lacking:
            raise TypeError(f"sampler {name}: {fn.__name__} lacks keyword(s) {lacking}")
        for other in SAMPLERS.values():
            for k, o in opts.items():
                if k in other.options and other.options[k].kind is not o.kind:
                    raise TypeError(f"option {k} of {name} and {other.name} differ in type")
        SAMPLERS[name] = SamplerSpec(
            name, fn, nfe, opts, schedule, to_zero, knob, uniform_init, own
        )
        return fn

    return wrap


def sampler_names() -> tuple[str, ...]:
    """The registered sampler names, in registration order."""
    return tuple(SAMPLERS)


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler ``name`` (callable like its function).

    Raises:
        ConfigError: Unknown name, listing the registered ones.
    """
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}"
        ) from None


def option_fields() -> dict[str, tuple[type, str]]:
    """Every option name of every sampler: ``{name: (type, help naming its samplers)}``."""
    kinds: dict[str, type] = {}
    texts: dict[str, dict[str, list[str]]] = {}  # option -> help text -> samplers
    for spec in SAMPLERS.values():
        for k, o in spec.options.items():
            kinds.setdefault(k, o.kind)
            rng = "" if o.kind is bool or o.lo is o.hi is None else f", {o.describe()}"
            texts.setdefault(k, {}).setdefault(f"{o.help} (default {o.default}{rng})", [])
            texts[k][f"{o.help} (default {o.default}{rng})"].append(spec.name)
    return {
        k: (kinds[k], "; ".join(f"{', '.join(names)}: {t}" for t, names in texts[k].items()))
        for k in kinds
    }


def settings_for_nfe(
    name: str,
    nfe: int,
    *,
    levels: int,
    options: Mapping[str, Any] | None = None,
    max_levels: int | None = None,
) -> dict[str, int]:
    """The setting of a sampler's knob that spends at most ``nfe`` network evaluations.

    The knob (``levels`` for most samplers, ``n_steps_each`` for ALD) is set to the largest
    value whose evaluation count does not exceed ``nfe``; ``max_levels`` caps the number of
    levels (networks trained on a fixed set of levels).

    Args:
        name: Sampler name.
        nfe: Target network evaluations per sample.
        levels: Noise levels used when the knob is another option.
        options: The other options (defaults where missing).
        max_levels: Upper bound on the levels (``None``: none).

    Returns:
        ``{knob: value}``.

    Raises:
        ConfigError: If even the smallest setting costs more than ``nfe``.
    """
    spec = get_sampler(name)
    opts = dict(options or {})

    def cost(k: int) -> int:
        if spec.knob == "levels":
            return spec.nfe(k, opts)
        return spec.nfe(levels, {**opts, spec.knob: k})

    if cost(1) > nfe:
        raise ConfigError(
            f"--nfe {nfe} is too few for sampler {name!r}: its cheapest setting ({spec.knob} = "
            f"1 with {levels} levels) costs {cost(1)} evaluations"
        )
    lo, hi = 1, int(nfe) + 2  # every sampler costs at least levels - 1 evaluations
    if spec.knob == "levels" and max_levels is not None:
        hi = min(hi, int(max_levels))
    while lo < hi:  # the largest k in [lo, hi] with cost(k) <= nfe (cost is non-decreasing)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= nfe else (lo, mid - 1)
    return {spec.knob: lo}
