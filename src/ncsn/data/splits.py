"""Fixed train/val/test splits: one seeded permutation per data set size."""

from __future__ import annotations

from typing import Any

import numpy as np

from ncsn.data.records import SPLITS
from ncsn.errors import ConfigError, DataError

__all__ = ["VAL_DEFAULT", "canonical_split", "split_indices"]

VAL_DEFAULT = 0.05
_SEED = 0
_SPLIT_ALIASES = {"valid": "val", "validation": "val"}


def canonical_split(split: str, name: str) -> str:
    """``split`` in lower case with ``valid``/``validation`` read as ``val``.

    Raises:
        DataError: A split that no data set has, naming ``name``.
    """
    key = str(split).lower()
    key = _SPLIT_ALIASES.get(key, key)
    if key not in SPLITS:
        raise DataError(f"unknown split {key!r} for data set {name}; use one of {SPLITS}")
    return key


def _n_val(val_size: int | float | None, pool: int) -> int:
    v = VAL_DEFAULT if val_size is None else val_size
    bad = isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v >= 0
    if bad or (float(v) > 1 and not float(v).is_integer()):
        raise ConfigError(
            f"val_size must be a fraction in [0, 1) or a whole number of images, got {v!r}"
        )
    n = int(round(float(v) * pool)) if float(v) < 1 else int(v)
    if n >= pool:
        raise ConfigError(f"val_size={v!r} leaves no training data ({pool} items); use less")
    return n


def _empty_split_hint(split: str, val_size: Any) -> str:
    if split != "val":
        return "use the split 'all'"
    if float(VAL_DEFAULT if val_size is None else val_size) == 0:
        return "data.val_size is 0, so nothing is held out; use the train or test split"
    return f"data.val_size = {val_size} rounds to no image; use a larger data.val_size"


def split_indices(n: int, test_frac: float, val_size: Any, split: str) -> np.ndarray:
    """Sorted indices of ``split`` among ``n`` items.

    A fixed permutation (seed 0) is cut into test (its last ``test_frac``) and the rest; the
    last ``val_size`` of the rest is val, the others train. ``all`` is every item.

    Raises:
        DataError: The split is empty.
        ConfigError: Invalid ``val_size``.
    """
    if split == "all":
        return np.arange(n)
    perm = np.random.RandomState(_SEED).permutation(n)
    n_test = int(round(test_frac * n))
    pool = perm[: n - n_test]
    n_val = _n_val(val_size, len(pool))
    parts = {"test": perm[n - n_test :], "val": pool[len(pool) - n_val :]}
    parts["train"] = pool[: len(pool) - n_val]
    if len(parts[split]) == 0:
        hint = _empty_split_hint(split, val_size)
        raise DataError(f"the {split} split is empty ({n} items in all); {hint}")
    return np.sort(parts[split])
