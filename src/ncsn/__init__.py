"""ncsn: noise-conditional score networks (Song & Ermon, NeurIPS 2019) in PyTorch.

The public API: configs (:func:`load_config`), models (:func:`build_model`), training
(:func:`train`), checkpoints (:func:`load_checkpoint`; the authors' released ones with
:func:`load_official`), sampling (:func:`sample`,
:func:`inpaint` and the samplers in :mod:`ncsn.sampling`), losses (:mod:`ncsn.losses`) and noise
schedules (:mod:`ncsn.schedules`).

``import ncsn`` is cheap: each name below is imported on first use (PEP 562), so modules and
the CLI import what they need at the top without paying for torch until it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module defining it
_EXPORTS = {
    "build_model": "ncsn.api",
    "inpaint": "ncsn.api",
    "load_checkpoint": "ncsn.api",
    "model_sigmas": "ncsn.api",
    "sample": "ncsn.api",
    "Config": "ncsn.config",
    "bundled_configs": "ncsn.config",
    "load_config": "ncsn.config",
    "save_config": "ncsn.config",
    "NCSNError": "ncsn.errors",
    "load_official": "ncsn.official",
    "train": "ncsn.training",
}

__all__ = [
    "Config",
    "NCSNError",
    "build_model",
    "bundled_configs",
    "inpaint",
    "load_checkpoint",
    "load_config",
    "load_official",
    "model_sigmas",
    "sample",
    "save_config",
    "train",
    "__version__",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports lazily
    from ncsn.api import build_model, inpaint, load_checkpoint, model_sigmas, sample
    from ncsn.config import Config, bundled_configs, load_config, save_config
    from ncsn.errors import NCSNError
    from ncsn.official import load_official
    from ncsn.training import train


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ncsn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
