"""Run folders: ownership, a fresh start or a resume, ``--overwrite``, disk checks.

A run folder holds ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``samples/`` and
``tb/``, and two small files of ncsn's own: ``.ncsn-run`` (the marker saying that ncsn made
this a run folder) and ``.ncsn-lock`` (see :mod:`ncsn.lock`). Nothing in a run folder is
deleted unless the user passes ``--overwrite``, and even then only files whose names ncsn
writes, only in a folder holding the marker, and never through a symbolic link: a run folder
holding anything else is refused with one line.

A folder with a config but no checkpoint is a run that has not started (it was stopped
before its first checkpoint): running the same command again starts it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ncsn import checkpoint as ckpt
from ncsn.config import Config, config_from_dict, load_config
from ncsn.errors import CheckpointError, ConfigError, NCSNError, NCSNWarning
from ncsn.io import atomic_write
from ncsn.runlog import MetricsLog

__all__ = [
    "MARKER",
    "MetricsLog",
    "check_disk",
    "is_run_folder",
    "mark_run_folder",
    "prepare_workdir",
    "remove_run_files",
    "run_config",
]

RUN_FILES = ("config.yaml", "checkpoints", "metrics.jsonl", "samples", "tb")
MARKER = ".ncsn-run"
_TMP = r"\.[A-Za-z0-9_]+\.tmp"
# the names ncsn writes inside each folder of a run (temporaries of atomic writes included)
_OWNED = {
    ".": re.compile(rf"\.write-test|\.(config\.yaml|metrics\.jsonl){_TMP}"),
    "checkpoints": re.compile(rf"\.?(step_[0-9]{{8,}}\.safetensors|latest)({_TMP})?"),
    "samples": re.compile(rf"\.?step_[0-9]{{8,}}\.png({_TMP})?"),
    "tb": re.compile(r"events\.out\.tfevents\.[^/]+"),
}


def is_run_folder(workdir: str | Path) -> bool:
    """Whether ncsn made ``workdir`` a run folder (it holds the marker file)."""
    marker = Path(workdir) / MARKER
    return marker.is_file() and not marker.is_symlink()


def mark_run_folder(workdir: str | Path) -> None:
    """Mark ``workdir`` as a run folder that ncsn made (call only for folders it created)."""
    workdir = Path(workdir)
    if not is_run_folder(workdir):
        with atomic_write(workdir / MARKER, "w") as f:
            json.dump({"ncsn": "run folder", "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, f)


def _present(workdir: Path) -> list[str]:
    return [p for p in RUN_FILES if (workdir / p).exists() or (workdir / p).is_symlink()]


def _refuse_links(workdir: Path, names: tuple[str, ...], why: str) -> None:
    for name in names:
        if (workdir / name).is_symlink():
            raise NCSNError(
                f"{workdir / name} is a symbolic link; {why}: replace the link by a real "
                "folder or file (or link the whole workdir instead)"
            )


def _is_ncsn_config(path: Path) -> bool:
    try:
        load_config(str(path))
    except (ConfigError, OSError):
        return False
    return True


def _scan(workdir: Path) -> tuple[list[Path], list[Path]]:
    """The files ncsn wrote in a run folder (to delete) and everything else there."""
    owned, foreign = [], []
    for name in ("config.yaml", "metrics.jsonl"):
        p = workdir / name
        if p.exists():
            ok = p.is_file() and (name != "config.yaml" or _is_ncsn_config(p))
            (owned if ok else foreign).append(p)
    for sub, pattern in _OWNED.items():
        folder = workdir / sub
        if sub == ".":  # at the top only ncsn's temporaries; other files there are not touched
            entries = [p for p in folder.iterdir() if pattern.fullmatch(p.name)]
        elif not folder.exists():
            continue
        elif not folder.is_dir():
            foreign.append(folder)
            continue
        else:
            entries = sorted(folder.iterdir())
        for p in entries:
            mine = pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink()
            (owned if mine else foreign).append(p)
    return owned, foreign


def remove_run_files(workdir: str | Path) -> list[Path]:
    """``--overwrite``: delete the files of the run in ``workdir``, and nothing else.

    Returns:
        The files deleted.

    Raises:
        NCSNError: The folder has no marker, a run folder is a symbolic link, or it holds
            files ncsn did not write; then nothing is deleted.
    """
    workdir = Path(workdir)
    if not is_run_folder(workdir):
        raise NCSNError(
            f"--overwrite: {workdir} has no {MARKER} marker, so ncsn cannot tell that the "
            f"files in it ({', '.join(_present(workdir))}) are its own and deletes nothing; "
            "choose another --workdir"
        )
    _refuse_links(workdir, RUN_FILES, "--overwrite never deletes through links")
    owned, foreign = _scan(workdir)
    if foreign:
        names = ", ".join(str(p.relative_to(workdir)) for p in foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise NCSNError(
            f"--overwrite: {workdir} holds files ncsn did not write ({names}{more}); it "
            "deletes nothing there: move them out of the run's folders, or choose another "
            "--workdir"
        )
    for p in owned:
        p.unlink(missing_ok=True)
    for sub in ("checkpoints", "samples", "tb"):
        if (workdir / sub).is_dir():
            (workdir / sub).rmdir()
    return owned


def run_config(workdir: str | Path) -> Config | None:
    """The config of the run in ``workdir``: its ``config.yaml``, else its latest checkpoint's.

    Returns:
        The config, or None when the folder holds neither.
    """
    workdir = Path(workdir)
    saved = workdir / "config.yaml"
    if saved.is_file():
        return load_config(str(saved))
    found = ckpt.list_checkpoints(workdir)
    if not found:
        return None
    from ncsn.api import build_model
    from ncsn.guard import build_for_checkpoint

    path = ckpt.find_checkpoint(workdir)
    cfg = config_from_dict(ckpt.read_checkpoint_config(path), f"config stored in {path}")
    build_for_checkpoint(lambda: build_model(cfg), *ckpt.declared_sizes(path), path)  # untrusted
    return cfg


def _fresh_start(workdir: Path, cfg: Config, resume: bool | None) -> bool:
    saved = workdir / "config.yaml"
    if resume:
        what = "a run that never wrote a checkpoint" if saved.exists() else "no run"
        raise CheckpointError(
            f"--resume: {workdir} holds {what} to resume; drop --resume to start the run"
        )
    present = _present(workdir)
    if (saved.exists() or saved.is_symlink()) and not _is_ncsn_config(saved):
        raise NCSNError(
            f"{saved} is not a readable ncsn config, so ncsn will not write over it: move it "
            "away or choose another --workdir"
        )
    old = load_config(str(saved)) if saved.exists() else None
    if present and not is_run_folder(workdir) and (old is None or _config_diff(old, cfg)):
        raise NCSNError(
            f"{workdir} holds {', '.join(present)} but no {MARKER} marker, so ncsn did not "
            "make it a run folder and will not write over it; choose another --workdir"
        )
    if old is not None and _config_diff(old, cfg):
        warnings.warn(
            f"{workdir}: replacing the config of a run that never wrote a checkpoint "
            f"({_config_diff(old, cfg)})",
            NCSNWarning,
            stacklevel=3,
        )
    mark_run_folder(workdir)
    return False


def prepare_workdir(workdir: Path, cfg: Config, resume: bool | None, overwrite: bool) -> bool:
    """Decide between a fresh start and a resume; returns True to resume.

    Args:
        workdir: The run folder (locked by the caller).
        cfg: The resolved config of the new run.
        resume: True: must resume; None: resume when the configs match; False: never resume.
        overwrite: Remove the run's files first (see :func:`remove_run_files`).

    Returns:
        Whether to resume from the folder's latest checkpoint.
    """
    workdir = Path(workdir)
    _refuse_links(workdir, ("checkpoints",), "ncsn writes and prunes checkpoints only in place")
    for name in ("checkpoints", "samples", "tb"):
        if (workdir / name).exists() and not (workdir / name).is_dir():
            raise NCSNError(
                f"{workdir / name} is not a folder, but a run keeps its {name} there: move it "
                "away or choose another --workdir"
            )
    if overwrite and resume:
        raise NCSNError("--overwrite deletes the run that --resume would continue; pass only one")
    if overwrite and _present(workdir):
        remove_run_files(workdir)
    found = ckpt.list_checkpoints(workdir)
    if not found:
        return _fresh_start(workdir, cfg, resume)
    saved = workdir / "config.yaml"
    old = run_config(workdir)
    diff = _config_diff(old, cfg)
    missing = "" if saved.is_file() else f" (its config.yaml is missing; {found[-1].name} has it)"
    if diff:
        if resume:
            raise CheckpointError(
                f"{workdir} holds a run whose config differs from the one given ({diff}); "
                "resume it with its own config (--resume without --config, and no --set of "
                "these keys) or start a new --workdir"
            )
        raise NCSNError(
            f"{workdir} already holds a run with a different config ({diff}){missing}: "
            "continue it with --resume and no --config or --set of these keys, or choose "
            "another --workdir"
        )
    if resume is False:
        raise NCSNError(
            f"{workdir} already holds a run; pass --resume to continue it, or choose another "
            "--workdir"
        )
    mark_run_folder(workdir)
    return True


# keys that may change between a run and its resumption
_RESUMABLE = {
    "training.n_iters",
    "training.time_limit",
    "training.log_every",
    "training.eval_every",
    "training.sample_every",
    "training.checkpoint_every",
    "training.keep_checkpoints",
    "training.milestone_every",
    "training.tensorboard",
    "training.threads",
    "training.max_bad_steps",
    # how a step is executed, not what it computes (same update up to rounding)
    "training.accumulate",
    "training.activation_checkpointing",
    "training.compile",
    "training.channels_last",
}


def _config_diff(old: Config, new: Config) -> str:
    out = []
    a, b = old.to_dict(), new.to_dict()
    for section in ("data", "model", "training"):
        for k in sorted(set(a[section]) | set(b[section])):
            key = f"{section}.{k}"
            va, vb = a[section].get(k), b[section].get(k)
            if key in _RESUMABLE or va == vb:
                continue
            if section == "data" and k in ("channels", "image_size", "random_flip") and vb is None:
                continue  # the new config leaves it to the data; the old one has it resolved
            out.append(f"{key}: {va!r} in the run, {vb!r} now")
    return "; ".join(out[:3])


def check_disk(workdir: Path, model: nn.Module) -> None:
    """Refuse a workdir that cannot be written or has no room for a few checkpoints."""
    probe = workdir / ".write-test"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise NCSNError(
            f"workdir {workdir} is not writable ({e.strerror}); choose another"
        ) from None
    need = 4 * sum(p.numel() * p.element_size() for p in model.parameters()) * 3
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise NCSNError(
            f"not enough free disk in {workdir}: {free / 1e6:.0f} MB free, a checkpoint needs "
            f"about {need / 3e6:.0f} MB (keep_checkpoints more): free space or use another workdir"
        )


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} cannot resume this run: {what}; it was not written by ncsn train "
        "for this config: use an earlier checkpoint of the run or another --workdir"
    )


def _tensors(obj, path: Path, what: str) -> dict:
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise _fail(path, f"its {what} is not a mapping of names to tensors")
    return obj


def _check_optimizer(st, params: list[torch.Tensor], path: Path) -> None:
    groups = st.get("param_groups") if isinstance(st, dict) else None
    state = st.get("state") if isinstance(st, dict) else None
    if not isinstance(groups, list) or not isinstance(state, dict):
        raise _fail(path, "its optimizer state is malformed")
    ids = [i for g in groups if isinstance(g, dict) for i in g.get("params", [None])]
    if ids != list(range(len(params))):
        raise _fail(path, f"its optimizer has {len(ids)} parameters, the model {len(params)}")
    for i, moments in state.items():
        if not isinstance(i, int) or not 0 <= i < len(params) or not isinstance(moments, dict):
            raise _fail(path, f"its optimizer state has a malformed entry {i!r}")
        for name, t in moments.items():
            if isinstance(t, torch.Tensor) and t.dim() and t.shape != params[i].shape:
                raise _fail(path, f"optimizer {name} of parameter {i} has the wrong shape")


def _check_generator(t, path: Path, what: str) -> None:
    try:
        torch.Generator().set_state(t)
    except (TypeError, RuntimeError):
        raise _fail(path, f"its {what} is not a random generator state") from None


def check_resume_state(st: dict, model: nn.Module, n_train: int, path: Path) -> None:
    """Check a training checkpoint's state against the run before loading any of it.

    Args:
        st: The state :func:`ncsn.checkpoint.read_checkpoint` returned.
        model: The freshly built model of the run.
        n_train: Images in the training split (the saved data order must cover them).
        path: The checkpoint, for messages.

    Raises:
        CheckpointError: Naming the first thing that does not fit, in one line.
    """
    from ncsn.checkpoint import check_state_dict

    step = st.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise _fail(path, f"its step is {step!r}")
    if ckpt.step_of(path) not in (None, step):
        raise _fail(path, f"it records step {step} but its name says {ckpt.step_of(path)}")
    check_state_dict(model, _tensors(st.get("model"), path, "model"), path)
    if st.get("ema") is not None:
        check_state_dict(model, _tensors(st["ema"], path, "EMA"), path)
    if st.get("optimizer") is None:  # weights only (ncsn import-official): nothing more to load
        return
    _check_optimizer(st["optimizer"], list(model.parameters()), path)
    data = st.get("data")
    perm = data.get("perm") if isinstance(data, dict) else None
    pos = data.get("pos") if isinstance(data, dict) else None
    if not isinstance(perm, torch.Tensor) or perm.dim() != 1 or perm.dtype.is_floating_point:
        raise _fail(path, "its data order is malformed")
    if len(perm) != n_train:
        raise _fail(
            path, f"its data order covers {len(perm)} images, the training split now {n_train}"
        )
    if not torch.equal(perm.sort().values, torch.arange(n_train)):
        raise _fail(path, "its data order is not a permutation of the training images")
    if not isinstance(pos, int) or not 0 <= pos <= n_train:
        raise _fail(path, f"its data position is {pos!r}")
    _check_generator(data.get("gen"), path, "data order generator")
    _check_generator(st.get("noise_rng"), path, "noise generator")
