"""The config sections: one dataclass each, every field declared with its rule.

A field's allowed values sit on the field (:func:`ncsn.config.fields.opt`): a range, choices
(names of registered things come from their registry: models, preconditionings, losses,
samplers), or ``unbounded=True``. The ``sampling`` section also holds every option of every
registered sampler (checked by the chosen sampler, :mod:`ncsn.sampling.registry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, make_dataclass
from typing import Any

from ncsn.config.fields import opt
from ncsn.sampling.registry import option_fields, sampler_names

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainingConfig", "SamplingConfig", "SECTIONS"]


def _model_names() -> tuple[str, ...]:
    from ncsn.models import MODEL_NAMES  # the model registry, asked at validation time

    return MODEL_NAMES


def _precond_names() -> tuple[str, ...]:
    from ncsn.models.precond import PRECOND_NAMES

    return PRECOND_NAMES


def _loss_names() -> tuple[str, ...]:
    from ncsn.losses import loss_names

    return loss_names()


def _below_one(rate: float) -> str | None:
    if rate == 1:
        return (
            "would keep the EMA weights at their random initialisation (and sample with them); "
            "use a rate below 1, e.g. 0.999, or null for no EMA"
        )
    return None


def _fraction_or_count(value: float) -> str | None:
    if value > 1 and not float(value).is_integer():
        return (
            "is neither a fraction (below 1) nor a whole number of images; use e.g. 0.05 "
            "for 5% or 500 for 500 images"
        )
    return None


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

    dataset: str = opt("digits")  # checked by ncsn.data when the data set is opened
    root: str | None = opt(None)
    image_size: int | None = opt(None, ge=1, le=4096)
    channels: int | None = opt(None, choices=(1, 3))
    random_flip: bool | None = opt(None)
    dequantize: bool = opt(False)
    logit_transform: bool = opt(False)
    val_size: float = opt(0.05, ge=0, check=_fraction_or_count)


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

    name: str = opt("unet", choices=_model_names)
    sigma_max: float = opt(1.0, gt=0)
    sigma_min: float = opt(0.01, gt=0)
    num_levels: int = opt(10, ge=1, le=100_000)
    options: dict = opt(factory=dict)  # checked by ncsn.models.create_model
    precond: str = opt("none", choices=_precond_names)
    sigma_data: float | None = opt(None, gt=0)
    data_mean: float | None = opt(None, unbounded=True)


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

    n_iters: int = opt(200_000, ge=0)
    batch_size: int = opt(128, ge=1, le=1_000_000)
    lr: float = opt(1e-3, gt=0, le=1.0)
    beta1: float = opt(0.9, ge=0, le=1)
    beta2: float = opt(0.999, ge=0, le=1)
    weight_decay: float = opt(0.0, ge=0)
    adam_eps: float = opt(1e-8, gt=0)
    warmup: int = opt(0, ge=0)
    lr_schedule: str = opt("constant", choices=("constant", "cosine"))
    grad_clip: float | None = opt(None, gt=0)
    ema_rate: float | None = opt(0.999, ge=0, le=1, check=_below_one)
    loss: str = opt("dsm", choices=_loss_names)
    loss_power: float = opt(2.0, ge=0, le=4)
    weighting: str = opt("power", choices=("power", "edm"))
    sigma_dist: str = opt("uniform", choices=("uniform", "lognormal"))
    p_mean: float = opt(-1.9, unbounded=True)
    p_std: float = opt(1.2, gt=0)
    n_projections: int = opt(1, ge=1, le=1000)
    seed: int = opt(0, ge=0, le=2**63 - 1)
    log_every: int = opt(100, ge=1)
    eval_every: int = opt(1000, ge=0)
    sample_every: int = opt(5000, ge=0)
    checkpoint_every: int = opt(5000, ge=1)
    keep_checkpoints: int = opt(3, ge=1)
    milestone_every: int = opt(0, ge=0)
    max_bad_steps: int = opt(0, ge=0)
    time_limit: float | None = opt(None, gt=0)
    tensorboard: bool = opt(True)
    threads: int = opt(0, ge=0, le=1024)
    accumulate: int = opt(1, ge=1, le=1_000_000)
    precision: str = opt("fp32", choices=("fp32", "bf16"))
    activation_checkpointing: bool = opt(False)
    compile: bool = opt(False)
    channels_last: bool = opt(False)


def _sampling_config() -> type:
    """The ``sampling`` section: fixed keys, then every option of every registered sampler.

    Sampler options default to ``None``, "the chosen sampler's own default" (see
    :mod:`ncsn.sampling.registry`); an option the chosen sampler does not have is ignored.
    The chosen sampler checks its options' ranges, so here they are ``unbounded``.
    """
    head = [
        ("sampler", str, opt("ald", choices=sampler_names)),
        ("levels", int | None, opt(None, ge=1, le=1_000_000)),
    ]
    options = option_fields()
    middle = [(k, kind | None, opt(None, unbounded=True)) for k, (kind, _) in options.items()]
    tail = [
        ("init", str, opt("uniform", choices=("uniform", "gaussian"))),
        ("n_samples", int, opt(64, ge=1)),
        ("batch_size", int, opt(100, ge=1)),
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

    name: str = opt("custom")
    data: DataConfig = opt(factory=DataConfig)
    model: ModelConfig = opt(factory=ModelConfig)
    training: TrainingConfig = opt(factory=TrainingConfig)
    sampling: SamplingConfig = opt(factory=SamplingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (YAML-safe)."""
        return asdict(self)


# section name -> its dataclass, in the order of a config file
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "sampling": SamplingConfig,
}
