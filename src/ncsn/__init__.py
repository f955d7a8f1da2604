"""ncsn: noise-conditional score networks (Song & Ermon, NeurIPS 2019) in PyTorch.

The public API: configs (:func:`load_config`), models (:func:`build_model`), training
(:func:`train`), checkpoints (:func:`load_checkpoint`; the authors' released ones with
:func:`load_official`), sampling (:func:`sample`,
:func:`inpaint` and the samplers in :mod:`ncsn.sampling`), losses (:mod:`ncsn.losses`) and noise
schedules (:mod:`ncsn.schedules`).
"""

from ncsn.api import build_model, inpaint, load_checkpoint, model_sigmas, sample
from ncsn.config import Config, bundled_configs, load_config, save_config
from ncsn.errors import NCSNError
from ncsn.official import load_official
from ncsn.training import train

__version__ = "0.1.0"

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
