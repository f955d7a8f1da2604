"""The metric registry: the one list of metric names :func:`~ncsn.metrics.evaluate` accepts.

A metric is one short function of an :class:`~ncsn.metrics.context.EvalContext`, registered
with the inputs it needs; :func:`~ncsn.metrics.evaluate.evaluate` checks those inputs before
any work and calls the functions in registration order::

    @register_metric("mean", needs=(SAMPLES,))
    def mean_pixel(ctx):
        return float(ctx.samples.mean())

Inputs a metric may declare (``needs``):

* ``samples``: generated images (every metric but the model-only ones);
* ``model``: a score function and its sigmas (a checkpoint);
* ``data``: the training data set (its splits are read);
* ``reference``: reference images: the data set's ``ref_split`` or the caller's ``reference``;
* ``classifier``: a shipped domain classifier for the data set (``digits``, ``mnist``).

``streams=True`` says the metric reads samples batch by batch, so that samples stay a stream
when every requested metric streams; ``check`` runs before any work (e.g. a missing network
layer fails before sampling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLASSIFIER",
    "DATA",
    "MODEL",
    "NEEDS",
    "REFERENCE",
    "SAMPLES",
    "Metric",
    "get_metric",
    "metric_names",
    "register_metric",
]

SAMPLES, MODEL, DATA, REFERENCE, CLASSIFIER = "samples", "model", "data", "reference", "classifier"
NEEDS = (SAMPLES, MODEL, DATA, REFERENCE, CLASSIFIER)


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, what it needs and the function computing it."""

    name: str
    needs: frozenset[str]
    compute: Callable[[Any], Any]
    streams: bool = False
    check: Callable[[Any], None] | None = None


_METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    *,
    needs: Iterable[str] = (SAMPLES,),
    streams: bool = False,
    check: Callable[[Any], None] | None = None,
) -> Callable:
    """Register ``fn(ctx) -> value`` as metric ``name`` (decorator); see the module docstring."""
    needs = frozenset(needs)
    unknown = needs - set(NEEDS)
    if unknown:
        raise ValueError(f"metric {name!r} needs unknown inputs {sorted(unknown)}; use {NEEDS}")

    def wrap(fn: Callable) -> Callable:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        _METRICS[name] = Metric(name, needs, fn, streams, check)
        return fn

    return wrap


def metric_names() -> tuple[str, ...]:
    """Every registered metric name, in registration order."""
    _load_builtin()
    return tuple(_METRICS)


def get_metric(name: str) -> Metric:
    """The registered metric ``name`` (KeyError when there is none)."""
    _load_builtin()
    return _METRICS[name]


def _load_builtin() -> None:
    import ncsn.metrics.builtin  # noqa: F401  (registers the shipped metrics)
