"""Config fields that carry their own constraints.

Every field of a config section is declared with :func:`opt`, which puts the field's rule (a
range, a set of choices or an explicit "unbounded", plus an optional extra check) into its
``dataclasses.field`` metadata::

    lr: float = opt(1e-3, gt=0, le=1.0)
    loss: str = opt("dsm", choices=loss_names)  # a registry, asked at validation time

:func:`check_type` checks a value against the field's annotation and :func:`check_rule`
against its rule; :mod:`ncsn.config.validate` walks ``dataclasses.fields()`` and calls both.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ncsn.errors import ConfigError

__all__ = ["Rule", "opt", "rule_of", "check_type", "check_rule"]

Choices = Sequence[Any] | Callable[[], Sequence[Any]]


@dataclass(frozen=True)
class Rule:
    """What values a config field allows (``None`` is always allowed where the type is
    optional).

    Attributes:
        ge, gt, le, lt: Bounds (greater or equal, greater than, ...); None: no such bound.
        choices: The allowed values, or a function returning them (a registry's names,
            asked when a config is validated so that importing the config stays cheap).
        unbounded: Declares a number that may take any finite value (or one checked
            elsewhere, e.g. a sampler option checked by the chosen sampler).
        check: ``check(value) -> problem or None`` for what a range cannot say (the problem
            reads after "KEY = VALUE", e.g. "is neither a fraction nor a count; use ...").
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: Choices | None = None
    unbounded: bool = False
    check: Callable[[Any], str | None] | None = None

    @property
    def declared(self) -> bool:
        """Whether the rule says which numbers it allows (a bound, choices or "unbounded")."""
        limits = (self.ge, self.gt, self.le, self.lt)
        return self.unbounded or self.choices is not None or any(b is not None for b in limits)

    def allowed(self) -> tuple[Any, ...]:
        """The choices (the registry asked now), or ``()`` when there are none."""
        choices = self.choices() if callable(self.choices) else self.choices
        return tuple(choices or ())

    def describe(self) -> str:
        """The range in words, e.g. ``>= 0 and <= 1``."""
        parts = [
            f"{op} {bound}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts)


def opt(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Choices | None = None,
    unbounded: bool = False,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field whose metadata holds its :class:`Rule` (see the module docstring)."""
    rule = Rule(ge, gt, le, lt, choices, unbounded, check)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def rule_of(f: dataclasses.Field) -> Rule:
    """The rule declared on a field (an empty one for a field not made by :func:`opt`)."""
    return f.metadata.get("rule", Rule())


def check_type(value: Any, annotation: Any, where: str) -> Any:
    """``value`` if it has the annotation's type (an int is taken for a float, an integral
    float for an int), else :class:`ConfigError` naming ``where``.

    Numbers written as ``1e-3`` arrive as floats: :mod:`ncsn.yamlio` reads YAML 1.2 floats.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_type(value, inner[0], where)
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


def check_rule(value: Any, rule: Rule, dotted: str, source: str) -> None:
    """Raise :class:`ConfigError` (one line: source, key, value, what is allowed) when a
    type-checked ``value`` breaks ``rule``."""
    if value is None:
        return
    choices = rule.allowed()
    if rule.choices is not None and value not in choices:
        raise ConfigError(
            f"{source}: {dotted} = {value!r} is not valid; choose one of "
            f"{', '.join(map(str, choices))}"
        )
    low = (rule.ge is not None and value < rule.ge) or (rule.gt is not None and value <= rule.gt)
    high = (rule.le is not None and value > rule.le) or (rule.lt is not None and value >= rule.lt)
    if low or high:
        raise ConfigError(
            f"{source}: {dotted} = {value} is out of range; it must be {rule.describe()}"
        )
    problem = rule.check(value) if rule.check else None
    if problem:
        raise ConfigError(f"{source}: {dotted} = {value} {problem}")
