"""The authors' released checkpoints as ncsn models, configs and run folders.

>>> model, cfg = ncsn.load_official("exp/logs/cifar10")        # NCSNv2, EMA weights
>>> x = ncsn.sample(model, cfg, n=16)

``ncsn import-official PATH --out WORKDIR`` (:func:`import_official`) writes an ordinary run
folder that ``ncsn sample``, ``inpaint``, ``eval`` and ``train --resume`` accept.

Everything is checked before a network is built: the YAML is read without constructing
objects, the checkpoint with ``torch.load(weights_only=True)``, every official key must find
its place (:mod:`ncsn.official_format`), and every official option that would change what
the network, the data or the sampler does must be one ncsn honours -- otherwise one line
names the field. The translated config carries the official sigma schedule, ``step_lr`` as
``sampling.eps = 2 * step_lr`` (the step-size convention of :mod:`ncsn.schedules`),
``n_steps_each``, ``denoise``, the image shape, the width and the training options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn.config import Config, config_from_dict
from ncsn.errors import CheckpointError, ConfigError, NCSNError
from ncsn.io import sha256_file
from ncsn.official_format import (
    OfficialState,
    map_official_state,
    read_official_checkpoint,
    read_official_yaml,
)

__all__ = ["load_official", "import_official", "find_official_files", "official_config"]

_DATASETS = {"MNIST": "mnist", "CIFAR10": "cifar10", "CELEBA": "celeba"}
# v1's test() samples with these (runners/anneal_runner.py): T = 100, step_lr = 2e-5
_V1_SAMPLING = {"n_steps_each": 100, "eps": 4e-5, "denoise": False, "batch_size": 100}
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_CKPT = re.compile(r"checkpoint_(\d+)\.pth")


def find_official_files(
    path: str | Path, config: str | Path | None = None, step: int | None = None
) -> tuple[Path, Path]:
    """Locate the checkpoint and its ``config.yml``.

    Args:
        path: A ``checkpoint*.pth`` file, or the folder holding it and ``config.yml`` (the
            released ``run/logs/<doc>`` of NCSN or ``exp/logs/<doc>`` of NCSNv2).
        config: The ``config.yml`` to use instead of the one beside the checkpoint.
        step: With a folder: take ``checkpoint_<step>.pth`` (default: ``checkpoint.pth``,
            else the highest-numbered ``checkpoint_<N>.pth``).

    Returns:
        ``(checkpoint, config)`` paths.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; give a checkpoint*.pth or its folder")
    if p.is_file():
        if step is not None:
            raise NCSNError(f"--step picks a file in a folder, but {p} is a file; drop --step")
        ckpt = p
    elif step is not None:
        ckpt = p / f"checkpoint_{step}.pth"
        if not ckpt.is_file():
            have = sorted(int(m[1]) for f in p.iterdir() if (m := _CKPT.fullmatch(f.name)))
            raise CheckpointError(
                f"--step {step}: {ckpt} does not exist; steps here: "
                + (", ".join(map(str, have[-8:])) or "none")
            )
    else:
        numbered = sorted((int(m[1]), f) for f in p.iterdir() if (m := _CKPT.fullmatch(f.name)))
        ckpt = p / "checkpoint.pth"
        if not ckpt.is_file():
            if not numbered:
                raise CheckpointError(f"no checkpoint.pth or checkpoint_<N>.pth in {p}")
            ckpt = numbered[-1][1]
    cfg = Path(config) if config is not None else ckpt.parent / "config.yml"
    if not cfg.is_file():
        raise ConfigError(
            f"no config.yml beside {ckpt}" if config is None else f"--config {cfg} does not exist"
        )
    return ckpt, cfg


def _get(raw: dict[str, Any], dotted: str, default: Any = None) -> Any:
    section, key = dotted.split(".")
    values = raw.get(section)
    if values is None:
        return default
    if not isinstance(values, dict):
        raise ConfigError(f"{section} in the official config is {values!r}, not a mapping")
    return values.get(key, default)


def _require(raw: dict[str, Any], dotted: str, kind: type, where: Path) -> Any:
    """A present field of type ``kind`` (``float`` also takes integers; ``1e-3`` is read as a
    float by :mod:`ncsn.yamlio`)."""
    value = _get(raw, dotted)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: {dotted} must be {_KINDS[kind]}, got {value!r}")
    return value


def _optional(raw: dict[str, Any], dotted: str, kind: type, default: Any, where: Path) -> Any:
    return _require(raw, dotted, kind, where) if _get(raw, dotted) is not None else default


def _flag(raw: dict[str, Any], dotted: str, default: bool, where: Path) -> bool:
    return _optional(raw, dotted, bool, default, where)


def _refuse_unsupported(raw: dict[str, Any], where: Path) -> None:
    """One line naming the first official option ncsn cannot honour."""
    checks = [
        ("data.rescaled", False, "ncsn keeps data in [0, 1]"),
        ("data.gaussian_dequantization", False, "ncsn dequantises uniformly only"),
        ("model.sigma_dist", "geometric", "ncsn's noise levels are geometric"),
        ("model.normalization", "InstanceNorm++", "ncsn's NCSNv2 uses InstanceNorm++"),
        ("model.nonlinearity", "elu", "ncsn's RefineNets use ELU"),
        ("model.spec_norm", False, "ncsn has no spectral normalisation"),
        ("optim.optimizer", "Adam", "ncsn trains with Adam"),
        ("optim.amsgrad", False, "ncsn trains with plain Adam"),
        ("sampling.data_init", False, "ncsn starts sampling from uniform noise"),
    ]
    for dotted, ok, why in checks:
        value = _get(raw, dotted, ok)
        if (value.lower() if isinstance(value, str) else value) != (
            ok.lower() if isinstance(ok, str) else ok
        ):
            raise ConfigError(f"{where}: {dotted}: {value!r} is not supported ({why})")
    if "image_mean" in raw:
        raise ConfigError(f"{where}: image_mean is not supported (ncsn does not centre data)")
    algo = _get(raw, "training.algo", "dsm")
    if algo not in ("dsm", "ssm"):
        raise ConfigError(f"{where}: training.algo: {algo!r} is not supported (dsm, ssm)")


def _official_training(raw: dict[str, Any], state: OfficialState, where: Path) -> dict:
    """The ``training`` section: loss, anneal power, EMA and the optimiser fields that are set."""
    ema = state.kind == "ncsnv2" and _flag(raw, "model.ema", False, where)
    training: dict[str, Any] = {
        "loss": "dsm" if _get(raw, "training.algo", "dsm") == "dsm" else "ssm_vr",
        "loss_power": _optional(raw, "training.anneal_power", float, 2.0, where),
        "ema_rate": _optional(raw, "model.ema_rate", float, 0.999, where) if ema else None,
    }
    for ours, theirs, kind in (
        ("batch_size", "training.batch_size", int),
        ("n_iters", "training.n_iters", int),
        ("checkpoint_every", "training.snapshot_freq", int),
        ("n_projections", "training.n_particles", int),
        ("lr", "optim.lr", float),
        ("beta1", "optim.beta1", float),
        ("weight_decay", "optim.weight_decay", float),
        ("adam_eps", "optim.eps", float),
    ):
        if _get(raw, theirs) is not None:
            training[ours] = _require(raw, theirs, kind, where)
    return training


def _official_sampling(raw: dict[str, Any], state: OfficialState, where: Path) -> dict:
    """The annealed Langevin settings: v1's fixed ones, v2's from ``sampling.*``."""
    if state.kind == "ncsn":
        return dict(_V1_SAMPLING)
    return {
        "n_steps_each": _require(raw, "sampling.n_steps_each", int, where),
        "eps": 2 * _require(raw, "sampling.step_lr", float, where),
        "denoise": _flag(raw, "sampling.denoise", True, where),
        "batch_size": _optional(raw, "sampling.batch_size", int, 100, where),
    }


def official_config(raw: dict[str, Any], state: OfficialState, where: Path) -> Config:
    """Translate an official config (plain dicts) into an ncsn :class:`Config`.

    Args:
        raw: The official config as read by :func:`ncsn.official_format.read_official_yaml`.
        state: The checked checkpoint (gives the network kind and variant).
        where: The config's path (for messages).

    Raises:
        ConfigError: One line naming the first missing, mistyped or unsupported field.
    """
    _refuse_unsupported(raw, where)
    dataset = _require(raw, "data.dataset", str, where)
    if dataset not in _DATASETS:
        raise ConfigError(
            f"{where}: data.dataset: {dataset!r} is not supported (ncsn reads "
            f"{', '.join(_DATASETS)})"
        )
    logit = _flag(raw, "data.logit_transform", False, where)
    options: dict[str, Any] = {"ngf": _require(raw, "model.ngf", int, where)}
    if logit:
        options["rescale_input"] = False
    if state.kind == "ncsnv2":
        options["variant"] = state.variant
    training = _official_training(raw, state, where)
    sampling = _official_sampling(raw, state, where)
    d = {
        "name": f"official-{state.kind}-{_DATASETS[dataset]}",
        "data": {
            "dataset": _DATASETS[dataset],
            "image_size": _require(raw, "data.image_size", int, where),
            "channels": _require(raw, "data.channels", int, where),
            "random_flip": _flag(raw, "data.random_flip", False, where),
            # v1 always dequantises while training; v2 when uniform_dequantization is set
            "dequantize": state.kind == "ncsn"
            or _flag(raw, "data.uniform_dequantization", False, where),
            "logit_transform": logit,
        },
        "model": {
            "name": state.kind,
            "sigma_max": _require(raw, "model.sigma_begin", float, where),
            "sigma_min": _require(raw, "model.sigma_end", float, where),
            "num_levels": _require(raw, "model.num_classes", int, where),
            "options": options,
        },
        "training": training,
        "sampling": {"sampler": "ald", "init": "uniform", **sampling},
    }
    return config_from_dict(d, f"the config translated from {where}")


def _check_shapes(state: OfficialState, cfg: Config, where: Path) -> None:
    """Cheap agreement checks between the config and the checkpoint, before building."""
    w = state.model.get("begin_conv.weight")
    ngf, c = cfg.model.options["ngf"], cfg.data.channels
    if w is None or tuple(w.shape) != (ngf, c, 3, 3):
        got = None if w is None else tuple(w.shape)
        raise CheckpointError(
            f"{where}: begin_conv.weight has shape {got}, but config.yml says ngf={ngf}, "
            f"channels={c} ({(ngf, c, 3, 3)}); the config does not belong to this checkpoint"
        )
    levels = cfg.model.num_levels
    if state.kind == "ncsn":
        rows = state.model["normalizer.embed.weight"].shape[0]
    else:
        rows = state.model["sigmas"].shape[0] if "sigmas" in state.model else levels
    if rows != levels:
        raise CheckpointError(
            f"{where}: the network has {rows} noise levels but config.yml's num_classes is "
            f"{levels}; the config does not belong to this checkpoint"
        )


def _check_sigmas(state: OfficialState, model: nn.Module, where: Path) -> None:
    theirs = state.model.get("sigmas")
    if theirs is not None and not torch.allclose(theirs, model.sigmas, rtol=1e-5):
        raise CheckpointError(
            f"{where}: the checkpoint's sigmas ({float(theirs[0]):.4g} to "
            f"{float(theirs[-1]):.4g}) are not config.yml's geometric schedule "
            f"({float(model.sigmas[0]):.4g} to {float(model.sigmas[-1]):.4g})"
        )


def _read(path, config, step) -> tuple[Path, OfficialState, Config, nn.Module]:
    """Read, check and translate; returns ``(checkpoint, state, config, empty model)``."""
    from ncsn.api import build_model

    ckpt, cfg_path = find_official_files(path, config, step)
    raw = read_official_yaml(cfg_path)
    state = read_official_checkpoint(ckpt)
    cfg = official_config(raw, state, cfg_path)
    _check_shapes(state, cfg, ckpt)
    model = build_model(cfg)
    _check_sigmas(state, model, ckpt)
    return ckpt, state, cfg, model


def _weights(state: OfficialState, model: nn.Module, ckpt: Path, ema: bool) -> dict:
    own = model.state_dict()
    if ema and state.ema is not None:
        return map_official_state(state.ema, own, f"{ckpt} (EMA shadow)")
    return map_official_state(state.model, own, f"{ckpt} (model state)")


def load_official(
    path: str | Path,
    config: str | Path | None = None,
    ema: bool = True,
    *,
    step: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, Config]:
    """Load an official NCSN / NCSNv2 checkpoint as an ncsn model, without running code.

    Args:
        path: ``checkpoint*.pth`` or the folder holding it and ``config.yml``.
        config: The official ``config.yml`` (default: beside the checkpoint).
        ema: Use NCSNv2's EMA shadow when the checkpoint has one.
        step: With a folder: load ``checkpoint_<step>.pth``.
        device: Where to put the model.

    Returns:
        ``(model, config)``: the model in eval mode with the ``model(x, sigma)`` contract,
        the ncsn config translated from the official one.

    Raises:
        NCSNError: One line for a missing file, an unsafe or malformed checkpoint, a key
            that does not fit, or an unsupported official option.
    """
    ckpt, state, cfg, model = _read(path, config, step)
    model.load_state_dict(_weights(state, model, ckpt, ema))
    return model.to(device).eval(), cfg


def _create_workdir(out: Path) -> None:
    """Create the run folder; never write into a folder that holds anything."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NCSNError(f"--out {out} exists and is not empty; choose a new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NCSNError(f"cannot create {out} ({e.strerror}); choose another --out") from None
    from ncsn.workdir import mark_run_folder

    mark_run_folder(out)  # ncsn made it: --overwrite may later replace it


def import_official(
    path: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    step: int | None = None,
) -> dict[str, Any]:
    """Write an official checkpoint as an ncsn run folder (config + safetensors checkpoint).

    The checkpoint holds the raw weights as ``model`` and, for NCSNv2 with EMA, the EMA
    weights as ``ema`` (what ``ncsn sample`` uses by default); no optimizer or RNG state, so
    ``ncsn train --resume`` fine-tunes with a fresh optimizer.

    Args:
        path: ``checkpoint*.pth`` or its folder.
        out: The run folder to create; it must not exist or be empty.
        config: The official ``config.yml`` (default: beside the checkpoint).
        step: With a folder: import ``checkpoint_<step>.pth``.

    Returns:
        A summary: ``workdir``, ``checkpoint`` (written), ``source``, ``kind``, ``variant``,
        ``step``, ``ema`` (whether EMA weights were written).
    """
    from ncsn import checkpoint as ck
    from ncsn.config import save_config

    out = Path(out)
    ckpt, state, cfg, model = _read(path, config, step)
    raw = _weights(state, model, ckpt, ema=False)
    ema = _weights(state, model, ckpt, ema=True) if state.ema is not None else None
    if step is None and (m := _CKPT.fullmatch(ckpt.name)):
        step = int(m[1])
    at = state.step if state.step is not None else (step or 0)
    _create_workdir(out)
    save_config(cfg, out / "config.yaml")
    ck.checkpoint_dir(out).mkdir(exist_ok=True)
    record = {
        "config": cfg.to_dict(),
        "step": at,
        "model": raw,
        "ema": ema,
        "imported_from": {"file": str(ckpt.resolve()), "sha256": sha256_file(ckpt)},
    }
    written = ck.save_checkpoint(ck.checkpoint_path(out, at), record)
    ck.write_latest(out, written)
    return {
        "workdir": out,
        "checkpoint": written,
        "source": ckpt,
        "kind": state.kind,
        "variant": state.variant,
        "step": at,
        "ema": ema is not None,
        "config": cfg,
    }
