"""The high-level Python API that the command line is a thin layer over.

>>> import ncsn
>>> cfg = ncsn.load_config("digits")
>>> model = ncsn.build_model(cfg)            # an nn.Module: model(x, sigma)
>>> model, cfg = ncsn.load_checkpoint("runs/digits")   # EMA weights
>>> x = ncsn.sample(model, cfg, n=16, seed=0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn.checkpoint import check_state_dict, find_checkpoint, read_checkpoint
from ncsn.config import Config, config_from_dict
from ncsn.errors import CheckpointError, ConfigError
from ncsn.memory import check_model_fits
from ncsn.models import create_model, has_discrete_sigmas
from ncsn.rng import image_generator
from ncsn.sampling import (
    SamplerSpec,
    annealed_langevin_inpainting,
    get_sampler,
    sampler_sigmas,
    settings_for_nfe,
)
from ncsn.schedules import geometric_sigmas
from ncsn.transforms import postprocess

__all__ = [
    "build_model",
    "known_shape",
    "load_checkpoint",
    "sample",
    "sample_batches",
    "inpaint",
    "model_sigmas",
    "init_noise",
    "sampler_settings",
    "with_nfe",
    "with_sampler",
]


def model_sigmas(cfg: Config) -> torch.Tensor:
    """The config's noise levels sigma_1 > ... > sigma_L."""
    model_cfg = cfg.model
    return geometric_sigmas(model_cfg.sigma_max, model_cfg.sigma_min, model_cfg.num_levels)


def _sampler_plan(cfg: Config) -> tuple[SamplerSpec, dict[str, Any], torch.Tensor]:
    """The configured sampler, its resolved options and the schedule it walks."""
    sampling, model_cfg = cfg.sampling, cfg.model
    spec = get_sampler(sampling.sampler)
    options = spec.resolve(dataclasses.asdict(sampling))
    trained = model_sigmas(cfg) if has_discrete_sigmas(model_cfg.name) else None
    sigmas = sampler_sigmas(
        sampling.sampler,
        sigma_max=model_cfg.sigma_max,
        sigma_min=model_cfg.sigma_min,
        levels=sampling.levels or model_cfg.num_levels,
        options=options,
        trained=trained,
    )
    return spec, options, sigmas


def sampler_settings(cfg: Config) -> dict[str, Any]:
    """What the configured sampler does, in the form reports record it.

    Args:
        cfg: The config; its ``sampling`` section and the model's noise levels are used.

    Returns:
        ``sampler``; ``levels``: positive noise levels in its schedule; ``schedule``:
        ``geometric`` or ``karras``, with ``, trained levels`` for networks that know only
        their L levels (the schedule then uses only those); the sampler's options (the
        config's values, else the sampler's defaults); ``nfe``: network evaluations per
        sample (from the registry).
    """
    spec, options, sigmas = _sampler_plan(cfg)
    levels = int((sigmas > 0).sum())
    discrete = has_discrete_sigmas(cfg.model.name)
    return {
        "sampler": spec.name,
        "levels": levels,
        "schedule": spec.schedule + (", trained levels" if discrete else ""),
        **options,
        "nfe": spec.nfe(levels, options),
    }


def with_nfe(cfg: Config, nfe: int) -> Config:
    """The config with its sampler's step count set to spend at most ``nfe`` evaluations.

    The registry says what the count is (``levels``, or ``n_steps_each`` for ALD) and how
    evaluations follow from it; networks that know only their L levels get at most L levels,
    so :func:`sampler_settings` may then report fewer evaluations than asked for.

    Raises:
        ConfigError: If the sampler's cheapest setting costs more than ``nfe``.
    """
    sampling, model_cfg = cfg.sampling, cfg.model
    knob = settings_for_nfe(
        sampling.sampler,
        int(nfe),
        levels=sampling.levels or model_cfg.num_levels,
        options=dataclasses.asdict(sampling),
        max_levels=model_cfg.num_levels if has_discrete_sigmas(model_cfg.name) else None,
    )
    return dataclasses.replace(cfg, sampling=dataclasses.replace(sampling, **knob))


def with_sampler(cfg: Config, name: str) -> Config:
    """The config with sampler ``name``; a different sampler starts from the network's L levels.

    A config's ``sampling.levels`` sets the cost of its own sampler (mnist-cpu's 50 Heun levels
    are 99 evaluations; ALD on them would be 251, not the paper's L x T), so it is dropped when
    the sampler changes. Options stay: each sampler reads only its own.

    Raises:
        ConfigError: If ``name`` is not a registered sampler.
    """
    get_sampler(name)
    sampling = cfg.sampling
    levels = sampling.levels if name == sampling.sampler else None
    return dataclasses.replace(
        cfg, sampling=dataclasses.replace(sampling, sampler=name, levels=levels)
    )


def known_shape(dataset: str | None) -> tuple[int | None, int | None]:
    """``(channels, image_size)`` of a built-in data set from the data table, without reading
    any data (digits 1x8, mnist and fashion_mnist 1x28, cifar10 3x32, celeba 3x32 before a
    config's ``data.image_size``); ``(None, None)`` for folders and unknown names."""
    from ncsn.data import find_dataset

    record = find_dataset(dataset)
    return (None, None) if record is None else (record.channels, record.image_size)


def build_model(
    cfg: Config,
    *,
    channels: int | None = None,
    image_size: int | None = None,
    batch_size: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build the score network a config describes (random initialisation, on the CPU).

    Its memory needs are checked first (:func:`ncsn.memory.check_model_fits`): a model that
    cannot fit in the free memory is refused before anything is allocated.

    Args:
        cfg: The config; ``data.channels`` and ``data.image_size`` give the shape unless
            passed here, else the known data set's own (:func:`known_shape`; no data is read).
        channels: Image channels (overrides the config).
        image_size: Image side (overrides the config).
        batch_size: When > 0, also check that training at this batch size fits on ``device``.
        device: Where the model will be used (for the memory check).

    Returns:
        An ``nn.Module`` with the ``model(x, sigma)`` score contract.

    Raises:
        ConfigError: Unknown shape, invalid options, or a model that cannot fit in memory.
    """
    known_channels, known_size = known_shape(cfg.data.dataset)
    channels = channels or cfg.data.channels or known_channels
    image_size = image_size or cfg.data.image_size or known_size
    if channels is None or image_size is None:
        raise ConfigError(
            f"the model's input shape is unknown for data set {cfg.data.dataset!r}: set "
            "data.channels and data.image_size (train resolves them from the data set)"
        )
    clash = sorted({"precond", "sigma_data", "data_mean"} & set(cfg.model.options))
    if clash:
        raise ConfigError(f"model.options.{clash[0]}: set model.{clash[0]} instead")
    sigmas = model_sigmas(cfg)

    def build() -> nn.Module:
        return create_model(
            cfg.model.name,
            channels=channels,
            image_size=image_size,
            sigmas=sigmas,
            precond=cfg.model.precond,
            sigma_data=cfg.model.sigma_data,
            data_mean=cfg.model.data_mean,
            **cfg.model.options,
        )

    shape = (channels, image_size, image_size)
    check_model_fits(build, shape, what="model.options", batch_size=batch_size, device=device)
    return build()


def load_checkpoint(
    path_or_workdir: str | Path, *, device: str | torch.device = "cpu", ema: bool = True
) -> tuple[nn.Module, Config]:
    """Load a trained score network without executing any code from the file.

    Args:
        path_or_workdir: A checkpoint file or a run folder (its latest checkpoint).
        device: Where to put the model.
        ema: Use the EMA weights when the checkpoint has them.

    Returns:
        ``(model, config)``, the model in eval mode.

    Raises:
        CheckpointError: Missing, corrupt or mismatched checkpoint.
    """
    path = find_checkpoint(path_or_workdir)
    state = read_checkpoint(path)
    try:
        cfg = config_from_dict(state["config"], f"config stored in {path}")
        weights = state["ema"] if ema and state.get("ema") is not None else state["model"]
    except KeyError as e:
        raise CheckpointError(
            f"checkpoint {path} lacks {e}; it was not written by ncsn train"
        ) from None
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise CheckpointError(f"checkpoint {path}: its weights are not a mapping of tensors")
    from ncsn.guard import build_for_checkpoint

    n_elements = sum(t.numel() for t in weights.values())
    model = build_for_checkpoint(lambda: build_model(cfg), len(weights), n_elements, path)
    check_state_dict(model, weights, path)
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg


def init_noise(
    cfg: Config, n: int, shape: tuple[int, ...], generator: torch.Generator, device
) -> torch.Tensor:
    """The sampler's starting point: U[0,1] (the paper; for samplers registered with
    ``uniform_init``, i.e. ALD) or 0.5 + sigma_1 N(0, I)."""
    if cfg.sampling.init == "uniform" and get_sampler(cfg.sampling.sampler).uniform_init:
        x = torch.rand((n, *shape), generator=generator)
    else:
        x = 0.5 + cfg.model.sigma_max * torch.randn((n, *shape), generator=generator)
    if cfg.data.logit_transform:
        x = torch.logit(x.clamp(1e-3, 1 - 1e-3)) if cfg.sampling.init == "uniform" else x - 0.5
    return x.to(device)


def _run_sampler(model, cfg, x, generator, callback):
    spec, options, sigmas = _sampler_plan(cfg)
    kw, _ = spec.split(options)
    return spec(model, x, sigmas.to(x.device), generator=generator, callback=callback, **kw)


def _sample_images(model, cfg, idx: range, seed: int, device, callback=None):
    """Images ``idx`` of seed ``seed`` (before postprocessing), each from its own generator."""
    shape = (model.channels, model.image_size, model.image_size)
    gens = [image_generator(seed, k) for k in idx]
    x = torch.cat([init_noise(cfg, 1, shape, g, device) for g in gens])
    return _run_sampler(model, cfg, x, gens, callback)


def _batch_plan(model, cfg, n: int, batch_size, device) -> tuple[torch.device, list[range]]:
    """The device and the image-index ranges of ``n`` samples in batches (shared by
    :func:`sample` and :func:`sample_batches`, so both cut the same batches)."""
    if n < 1:
        raise ConfigError(f"number of samples must be >= 1, got {n}")
    device = torch.device(device) if device else next(model.parameters()).device
    bs = batch_size or cfg.sampling.batch_size
    return device, [range(start, min(start + bs, n)) for start in range(0, n, bs)]


@torch.no_grad()
def sample_batches(
    model: nn.Module,
    cfg: Config,
    n: int,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the images of :func:`sample` batch by batch (CPU, [0, 1]), never holding all ``n``.

    The concatenated batches equal ``sample(model, cfg, n, seed=seed)`` (per-image seeds), so
    metrics over 50,000 samples need the memory of one batch.
    """
    device, batches = _batch_plan(model, cfg, n, batch_size, device)
    for idx in batches:
        res = _sample_images(model, cfg, idx, seed, device)
        yield postprocess(res, logit=cfg.data.logit_transform).cpu()


@torch.no_grad()
def sample(
    model: nn.Module,
    cfg: Config,
    n: int,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    record_every: int = 0,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Draw ``n`` samples with the config's sampler, in the data range [0, 1].

    Image k of seed S does not depend on ``n`` or ``batch_size``: each image has its own
    generator (its start and its noise are drawn from it).

    Args:
        model: Score network.
        cfg: Config (sampling section and noise levels).
        n: Number of samples.
        seed: Seed S.
        batch_size: Images per network batch (default: ``cfg.sampling.batch_size``).
        device: Device (default: the model's).
        progress: Show a progress bar.
        record_every: If > 0 also return the chain every this many sampler updates (the
            callback's ``step``) and its end (for animations).

    Returns:
        Samples (n, C, H, W) clamped to [0, 1], or ``(samples, trajectory)``.
    """
    device, batches = _batch_plan(model, cfg, n, batch_size, device)
    outs, trajs = [], []
    from tqdm.auto import tqdm

    with tqdm(total=n, desc="sampling", unit="img", disable=not progress) as bar:
        for idx in batches:
            frames: list[torch.Tensor] = []

            def record(info: dict[str, Any], frames=frames) -> None:
                if info["step"] % record_every == 0:
                    frames.append(info["x"].detach().cpu().clone())

            res = _sample_images(model, cfg, idx, seed, device, record if record_every else None)
            if record_every:
                frames.append(res.detach().cpu().clone())
                trajs.append([postprocess(t, logit=cfg.data.logit_transform) for t in frames])
            outs.append(postprocess(res, logit=cfg.data.logit_transform).cpu())
            bar.update(len(idx))
    samples = torch.cat(outs)
    if record_every:
        return samples, [torch.cat(step) for step in zip(*trajs, strict=True)]
    return samples


@torch.no_grad()
def inpaint(
    model: nn.Module,
    cfg: Config,
    images: torch.Tensor,
    mask: torch.Tensor,
    *,
    n_completions: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Complete the occluded part of ``images`` (Algorithm 2) with the config's ALD T and eps.

    Args:
        model: Score network.
        cfg: Config.
        images: Observed images (N, C, H, W) in [0, 1].
        mask: 1 where observed, 0 where to fill; broadcastable to the images.
        n_completions: Completions per image.
        seed: Seed of the starting noise and the Langevin noise.
        device: Device (default: the model's).

    Returns:
        Completions (N, n_completions, C, H, W) in [0, 1].
    """
    device = torch.device(device) if device else next(model.parameters()).device
    n = images.shape[0]
    y = images.repeat_interleave(n_completions, dim=0).to(device)
    m = mask.to(device)
    if cfg.data.logit_transform:
        from ncsn.transforms import preprocess

        y = preprocess(y, dequantize=False, logit=True)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(y.shape, generator=g).to(device)
    sigmas = model_sigmas(cfg).to(device)
    ald = get_sampler("ald").resolve(dataclasses.asdict(cfg.sampling))
    out = annealed_langevin_inpainting(
        model, x0, y, m, sigmas, n_steps_each=ald["n_steps_each"], eps=ald["eps"], generator=g
    )
    out = postprocess(out, logit=cfg.data.logit_transform).cpu()
    return out.reshape(n, n_completions, *images.shape[1:])
