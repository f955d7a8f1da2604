"""Checkpoints: one safetensors file per checkpoint, no pickle, atomic, checksummed whole.

A checkpoint holds every tensor of the training state (model and EMA weights, optimizer
moments, RNG states, data order) as safetensors tensors, and everything else (the resolved
config, the step, optimizer hyper-parameters) as JSON in the safetensors metadata. Loading
never executes code. A SHA-256 stored in the metadata covers the tensors *and* the rest of
the metadata (format ``ncsn-checkpoint-v2``), so a bit flip in the weights and an edited
step or config are both caught; safetensors' header check catches a truncated file. Files of
the first format (``ncsn-checkpoint-v1``, whose checksum covers the tensors only) are still
read; the next checkpoint of a resumed run is written in the new format. The encoding itself
(the state's skeleton, the checksum, the checks on a file's first bytes) is
:mod:`ncsn.checkpoint_format`; this module reads, writes, finds and prunes the files.

Layout of a run folder::

    WORKDIR/config.yaml                     the resolved config
    WORKDIR/checkpoints/step_00001000.safetensors
    WORKDIR/checkpoints/latest              name of the newest complete checkpoint

Only regular files named exactly ``step_<8 or more digits>.safetensors`` are checkpoints of
a run: they are the only files ncsn lists, resumes from, or prunes.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ncsn.checkpoint_format import (
    FORMAT,
    FORMAT_V1,
    MAX_HEADER,
    check_head,
    check_length,
    pack_state,
    state_digest,
    unpack_state,
)
from ncsn.errors import CheckpointError, NCSNWarning
from ncsn.io import WriteError, atomic_write

LATEST = "latest"
STEP_FILE = re.compile(r"step_([0-9]{8,})\.safetensors")
_TEMPORARY = re.compile(r"\.(step_[0-9]{8,}\.safetensors|latest)\.[A-Za-z0-9_]+\.tmp")

__all__ = [
    "save_checkpoint",
    "read_checkpoint",
    "read_checkpoint_config",
    "declared_sizes",
    "find_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "checkpoint_dir",
    "checkpoint_path",
    "step_of",
    "write_run_checkpoint",
    "check_state_dict",
]


def checkpoint_dir(workdir: str | Path) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(workdir) / "checkpoints"


def checkpoint_path(workdir: str | Path, step: int) -> Path:
    """The file name of the checkpoint at ``step``."""
    return checkpoint_dir(workdir) / f"step_{step:08d}.safetensors"


def step_of(path: str | Path) -> int | None:
    """The step in a checkpoint's file name (None: not a name ncsn writes)."""
    m = STEP_FILE.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: The ``.safetensors`` file to write (its folder must exist).
        state: A dict of nested dicts/lists of tensors and JSON values
            (e.g. ``{"model": sd, "step": 5}``).

    Returns:
        The path written.

    Raises:
        CheckpointError: The file cannot be written (full disk, read-only folder); any
            earlier file at ``path`` and all other checkpoints are unchanged.
    """
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint's state must be a dict, got {type(state).__name__}")
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    metadata = {"format": FORMAT, "state": json.dumps(pack_state(state, "s", tensors))}
    metadata["sha256"] = state_digest(tensors, metadata)
    blob = save(tensors, metadata=metadata)
    try:
        with atomic_write(path, "wb") as f:
            f.write(blob)
    except WriteError as e:
        raise CheckpointError(
            f"cannot write checkpoint {path} ({e.reason}); the checkpoints written before it "
            "are intact: free disk space or fix the folder's permissions, then resume with "
            "--resume"
        ) from None
    return path


def _open(path: Path, with_tensors: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors (else their shapes, read from the header) and metadata of a file."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            check_head(path, head)  # a pickle, not safetensors at all, or cut in its header
            header_len = int.from_bytes(head[:8], "little")
            if header_len > MAX_HEADER:
                raise SafetensorError(f"its header claims {header_len} bytes, over {MAX_HEADER}")
            check_length(path, f.read(header_len - 1))  # cut in its tensors
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            get = f.get_tensor if with_tensors else lambda k: f.get_slice(k).get_shape()
            tensors = {k: get(k) for k in f.keys()}  # noqa: SIM118
    except PermissionError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as e:
        raise CheckpointError(
            f"checkpoint {path} is damaged ({e}); it is not a complete safetensors file: use an "
            "earlier checkpoint of the run"
        ) from None
    if metadata.get("format") not in (FORMAT, FORMAT_V1) or "state" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not an ncsn checkpoint")
    return tensors, metadata


def _state_record(path: Path, metadata: dict[str, str], tensors) -> dict[str, Any]:
    try:
        state = unpack_state(json.loads(metadata["state"]), tensors)
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {path} has a damaged state record ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} has a damaged state record (a {type(state).__name__} where "
            "a mapping was expected); it was not written by ncsn"
        )
    return state


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The ``.safetensors`` file.

    Returns:
        The nested state, tensors on the CPU.

    Raises:
        CheckpointError: Missing, truncated, corrupted or edited, or not an ncsn checkpoint
            (a pickle file, for instance, is refused without being unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or --workdir")
    tensors, metadata = _open(path, with_tensors=True)
    covered = metadata if metadata["format"] == FORMAT else None
    if state_digest(tensors, covered) != metadata.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupted or was edited (checksum mismatch over its tensors "
            "and metadata); use an earlier checkpoint of the run"
        )
    return _state_record(path, metadata, tensors)


def read_checkpoint_config(path: str | Path) -> Any:
    """The config stored in a checkpoint, read from its header only (not checksum-verified).

    Cheap enough to decide between starting and resuming a run; the full read that follows
    verifies the whole file.
    """
    path = Path(path)
    _, metadata = _open(path, with_tensors=False)
    return _state_record(path, metadata, None).get("config")


def declared_sizes(path: str | Path) -> tuple[int, int]:
    """How many tensors a checkpoint declares and their total elements (header only)."""
    shapes, _ = _open(Path(path), with_tensors=False)
    return len(shapes), sum(math.prod(s) for s in shapes.values())


def _files(folder: Path) -> list[Path]:
    """Checkpoint files in ``folder`` (exact names, regular files, no links), by step."""
    if not folder.is_dir():
        return []
    try:
        names = os.listdir(folder)
    except OSError as e:  # an unreadable folder is not an empty one: never act on []
        raise CheckpointError(
            f"cannot list {folder} ({e.strerror}); fix its permissions (nothing was changed)"
        ) from None
    paths = [folder / n for n in names if STEP_FILE.fullmatch(n)]
    found = [p for p in paths if p.is_file() and not p.is_symlink()]
    return sorted(found, key=step_of)


def list_checkpoints(workdir: str | Path) -> list[Path]:
    """A run's checkpoint files, oldest (smallest step) first."""
    return _files(checkpoint_dir(workdir))


def _latest(folder: Path, warn: bool = True) -> Path | None:
    """The checkpoint ``folder/latest`` names, if it names one of the folder's checkpoints."""
    pointer = folder / LATEST
    if not (pointer.exists() or pointer.is_symlink()):
        return None
    try:
        if not pointer.is_file():
            raise OSError(0, "not a regular file")
        with open(pointer, "rb") as f:
            name = f.read(256).decode("utf-8", "replace").strip()
    except OSError as e:
        name = f"<unreadable: {e.strerror}>"
    target = folder / name
    if STEP_FILE.fullmatch(name) and target in _files(folder):
        return target
    if warn:
        newest = _files(folder)
        warnings.warn(
            f"{pointer} names {name[:80]!r}, which is not a checkpoint file in {folder}; "
            + (f"using the newest by step, {newest[-1].name}" if newest else "ignoring it"),
            NCSNWarning,
            stacklevel=3,
        )
    return None


def find_checkpoint(path_or_workdir: str | Path) -> Path:
    """Resolve a checkpoint file, or a run folder to its latest checkpoint.

    A run folder's ``checkpoints/latest`` is followed only when it names a checkpoint file of
    that same folder; otherwise a warning is given and the newest checkpoint by step is used.

    Args:
        path_or_workdir: A ``.safetensors`` file, a run folder, or its ``checkpoints`` folder.

    Returns:
        Path of a checkpoint file.

    Raises:
        CheckpointError: If nothing is found.
    """
    p = Path(path_or_workdir)
    if p.is_file():
        return p
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; give a checkpoint file or a workdir")
    for folder in (checkpoint_dir(p), p):
        found = _latest(folder) or next(reversed(_files(folder)), None)
        if found is not None:
            return found
    raise CheckpointError(f"no checkpoint in {p}; train first (ncsn train --workdir {p})")


def remove_stale_temporaries(workdir: str | Path) -> list[Path]:
    """Delete temporary files that a killed writer left in the checkpoint folder.

    Only files named like the temporaries of :func:`ncsn.io.atomic_write` for checkpoints
    and ``latest`` (``.step_*.safetensors.XXXX.tmp``, ``.latest.XXXX.tmp``) are removed.

    Returns:
        The files removed.
    """
    folder = checkpoint_dir(workdir)
    if not folder.is_dir() or folder.is_symlink():
        return []
    stale = sorted(p for p in folder.iterdir() if _TEMPORARY.fullmatch(p.name) and p.is_file())
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def write_latest(workdir: str | Path, checkpoint: Path) -> None:
    """Point ``checkpoints/latest`` at ``checkpoint`` (atomically)."""
    try:
        with atomic_write(checkpoint_dir(workdir) / LATEST, "w") as f:
            f.write(checkpoint.name + "\n")
    except WriteError as e:
        raise CheckpointError(
            f"cannot write {e.path} ({e.reason}); {checkpoint.name} itself is complete: free "
            "disk space or fix the folder's permissions, then resume with --resume"
        ) from None


def prune_checkpoints(
    workdir: str | Path, keep: int, milestone_every: int = 0, current: Path | None = None
) -> list[Path]:
    """Delete older checkpoints, keeping ``keep`` in all (``current`` among them).

    Only checkpoints older (by step) than ``current`` are candidates, so a newer checkpoint
    is never deleted for an older one; milestones and the one ``latest`` names are kept, and
    files whose names ncsn does not write (``step_..._keep.safetensors``, links) are never
    touched.

    Args:
        workdir: The run folder.
        keep: How many recent checkpoints to keep, ``current`` included.
        milestone_every: Steps that are multiples of this are kept forever (0: none).
        current: The checkpoint just written (default: the one ``latest`` names).

    Returns:
        The files removed.
    """
    folder = checkpoint_dir(workdir)
    if folder.is_symlink():
        return []
    latest = _latest(folder, warn=False)
    current = current or latest
    if current is None or step_of(current) is None:
        return []
    older = [f for f in _files(folder) if step_of(f) < step_of(current)]
    removed = []
    for f in older[: max(len(older) - (keep - 1), 0)]:
        step = step_of(f)
        if f == latest or (milestone_every and step % milestone_every == 0):
            continue
        try:
            f.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise CheckpointError(
                f"cannot delete the old checkpoint {f} ({e.strerror}); {current.name} is "
                "written: fix the folder's permissions, then resume with --resume"
            ) from None
        removed.append(f)
    return removed


def write_run_checkpoint(
    workdir: str | Path, step: int, state: dict[str, Any], keep: int, milestone_every: int = 0
) -> Path:
    """Save a run's checkpoint at ``step``, point ``latest`` at it and prune older ones."""
    folder = checkpoint_dir(workdir)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as e:
        raise CheckpointError(
            f"cannot create {folder} ({e.strerror}); fix the workdir or choose another"
        ) from None
    path = save_checkpoint(checkpoint_path(workdir, step), state)
    write_latest(workdir, path)
    prune_checkpoints(workdir, keep, milestone_every, current=path)
    return path


def check_state_dict(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: Any) -> None:
    """Refuse weights that do not fit ``model``, naming the first mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {where} does not fit this model: "
            + (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
            + f" ({len(missing)} missing, {len(extra)} unexpected); it was written for a "
            "different model kind or config"
        )
    for k, v in own.items():
        if (
            k.endswith("sigmas")
            and weights[k].shape == v.shape
            and not torch.allclose(weights[k].to(v), v, rtol=1e-5)
        ):
            raise CheckpointError(
                f"checkpoint {where} was trained with other noise levels (sigma from "
                f"{float(weights[k][0]):.4g} to {float(weights[k][-1]):.4g}, the config has "
                f"{float(v[0]):.4g} to {float(v[-1]):.4g}); use the config saved with it"
            )
        if tuple(weights[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"checkpoint {where} does not fit this model: {k} has shape "
                f"{tuple(weights[k].shape)} in the file but {tuple(v.shape)} in the model "
                "(different width, channels or number of noise levels)"
            )
