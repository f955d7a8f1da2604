"""Score networks and the model registry.

Every model is an ``nn.Module`` with ``forward(x, sigma) -> score`` (same shape as ``x``),
a ``sigmas`` buffer of shape ``(L,)`` and the attributes ``channels``, ``image_size`` and
``num_levels``. Build one by name with :func:`create_model`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.layers import CondInstanceNorm2dPlus, InstanceNorm2dPlus, ResidualBlock
from ncsn.models.mlp import ScoreMLP
from ncsn.models.precond import (
    DEFAULT_DATA_MEAN,
    DEFAULT_SIGMA_DATA,
    PRECOND_NAMES,
    EDMPrecond,
)
from ncsn.models.refine_blocks import CRPBlock, MSFBlock, RCUBlock, RefineBlock
from ncsn.models.refinenet import NCSN, NCSNv2
from ncsn.models.unet import UNet

__all__ = [
    "MODEL_NAMES",
    "NCSN",
    "NCSNv2",
    "UNet",
    "ScoreMLP",
    "EDMPrecond",
    "PRECOND_NAMES",
    "CondInstanceNorm2dPlus",
    "InstanceNorm2dPlus",
    "ResidualBlock",
    "RCUBlock",
    "MSFBlock",
    "CRPBlock",
    "RefineBlock",
    "create_model",
    "count_parameters",
    "has_discrete_sigmas",
]


def _build_mlp(
    *, channels: int, image_size: int, sigmas: Tensor | Sequence[float], **kwargs: Any
) -> ScoreMLP:
    if not isinstance(channels, int) or not isinstance(image_size, int):
        raise ConfigError(
            f"channels and image_size must be integers, got {channels!r}, {image_size!r}"
        )
    return ScoreMLP(
        dim=channels * image_size * image_size, image_size=image_size, sigmas=sigmas, **kwargs
    )


# name -> (class whose signature lists the accepted kwargs, builder)
_REGISTRY: dict[str, tuple[type[nn.Module], Callable[..., nn.Module]]] = {
    "ncsn": (NCSN, NCSN),
    "ncsnv2": (NCSNv2, NCSNv2),
    "unet": (UNet, UNet),
    "mlp": (ScoreMLP, _build_mlp),
}
_RESERVED = {"self", "channels", "image_size", "sigmas", "dim"}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _accepted_kwargs(cls: type[nn.Module]) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in _RESERVED]


def create_model(
    name: str,
    *,
    channels: int,
    image_size: int,
    sigmas: Tensor | Sequence[float],
    precond: str = "none",
    sigma_data: float | None = None,
    data_mean: float | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a score network by name.

    Args:
        name: One of ``"ncsn"`` (the paper's RefineNet), ``"ncsnv2"``, ``"unet"`` (small,
            CPU-efficient) or ``"mlp"`` (flattened input of ``channels * image_size**2``
            values; use ``image_size=1`` for vector data such as 2-D toys).
        channels: Image channels (or the data dimension for ``"mlp"`` with
            ``image_size=1``).
        image_size: Image height/width.
        sigmas: Noise levels, strictly decreasing, shape ``(L,)``.
        **kwargs: Model-specific options (e.g. ``ngf`` for the RefineNets, ``ch``,
            ``ch_mult``, ``num_res_blocks``, ``attention`` for the U-Net, ``hidden``,
            ``depth``, ``scale_by_sigma`` for the MLP).
        precond: ``"none"`` (the network is the score model) or ``"edm"`` (wrapped in
            :class:`EDMPrecond`; a U-Net then gets ``input_scaling=False``, a RefineNet
            ``rescale_input=False``).
        sigma_data: Data standard deviation for ``"edm"`` (None: 0.25).
        data_mean: Data mean for ``"edm"`` (None: 0.5).

    Returns:
        The model (on the CPU, float32).

    Raises:
        ConfigError: For an unknown name, an unknown option or an invalid value.
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}; valid choices are: {', '.join(sorted(_REGISTRY))}"
        )
    cls, builder = _REGISTRY[key]
    accepted = _accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {key!r}; "
            f"valid options are: {', '.join(accepted)}"
        )
    if precond not in PRECOND_NAMES:
        raise ConfigError(
            f"unknown preconditioning {precond!r}; valid choices are: {', '.join(PRECOND_NAMES)}"
        )
    if precond == "edm" and key == "unet":
        kwargs.setdefault("input_scaling", False)
    if precond == "edm" and key in ("ncsn", "ncsnv2"):
        kwargs.setdefault("rescale_input", False)  # c_in centres and scales the input
    net = builder(channels=channels, image_size=image_size, sigmas=sigmas, **kwargs)
    if precond == "none":
        return net
    return EDMPrecond(
        net,
        sigma_data=DEFAULT_SIGMA_DATA if sigma_data is None else sigma_data,
        data_mean=DEFAULT_DATA_MEAN if data_mean is None else data_mean,
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Count a model's parameters.

    Args:
        model: Any module.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        The number of scalar parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def has_discrete_sigmas(name: str) -> bool:
    """Whether model ``name`` knows only its L training levels (the paper's ``ncsn`` maps any
    sigma to the nearest one), so that samplers use only those levels and training draws
    only them (:func:`ncsn.edm.draw_training_sigmas`)."""
    entry = _REGISTRY.get(str(name).lower())
    return bool(entry and getattr(entry[0], "discrete_sigmas", False))
