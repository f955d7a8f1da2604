"""Checkpoints: one safetensors file per checkpoint, no pickle, atomic, checksummed.

A checkpoint holds every tensor of the training state (model and EMA weights, optimizer
moments, RNG states, data order) as safetensors tensors, and everything else (the resolved
config, the step, optimizer hyper-parameters) as JSON in the safetensors metadata. Loading
never executes code. A SHA-256 over the tensor bytes, stored in the metadata, catches a
corrupted file; safetensors' header check catches a truncated one.

Layout of a run folder::

    WORKDIR/config.yaml                     the resolved config
    WORKDIR/checkpoints/step_00001000.safetensors
    WORKDIR/checkpoints/latest              name of the newest complete checkpoint
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ncsn.errors import CheckpointError
from ncsn.io import atomic_write

FORMAT = "ncsn-checkpoint-v1"
LATEST = "latest"

__all__ = [
    "save_checkpoint",
    "read_checkpoint",
    "find_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "checkpoint_dir",
]


def checkpoint_dir(workdir: str | Path) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(workdir) / "checkpoints"


def _pack(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references, collecting them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {
            "__items__": [
                [_pack(k, f"{prefix}.k{i}", tensors), _pack(v, f"{prefix}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, (list, tuple)):
        packed = [_pack(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": packed} if isinstance(obj, tuple) else packed
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
        return {_unpack(k, tensors): _unpack(v, tensors) for k, v in obj["__items__"]}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(
            t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        )
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: The ``.safetensors`` file to write (its folder must exist).
        state: Nested dicts/lists of tensors and JSON values (e.g. ``{"model": sd, "step": 5}``).

    Returns:
        The path written.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _pack(state, "s", tensors)
    metadata = {
        "format": FORMAT,
        "state": json.dumps(skeleton),
        "sha256": _digest(tensors),
    }
    blob = save(tensors, metadata=metadata)
    with atomic_write(path, "wb") as f:
        f.write(blob)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The ``.safetensors`` file.

    Returns:
        The nested state, tensors on the CPU.

    Raises:
        CheckpointError: Missing, truncated, corrupted, or not an ncsn checkpoint (a pickle
            file, for instance, is refused without being unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or --workdir")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            _check_head(path, head)
            f.seek(8)
            _check_length(path, f.read(int.from_bytes(head[:8], "little")))
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({e.strerror or e})") from None
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path} is damaged ({e}); it is not a complete safetensors file: use an "
            "earlier checkpoint of the run"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an ncsn checkpoint")
    if _digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupted (checksum mismatch); use an earlier checkpoint"
        )
    try:
        return _unpack(json.loads(metadata["state"]), tensors)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} has a damaged state record ({e})") from None


def _check_head(path: Path, head: bytes) -> None:
    """Name what a file that is not a safetensors checkpoint is, from its first bytes."""
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path} is a PyTorch/pickle file, not an ncsn checkpoint; ncsn never unpickles "
            "files (they can run code): give a .safetensors checkpoint written by ncsn train"
        )
    if len(head) < 9 or head[8:9] != b"{":
        raise CheckpointError(
            f"{path} is not an ncsn checkpoint (not a safetensors file); give a checkpoint "
            "written by ncsn train"
        )
    size = path.stat().st_size
    if int.from_bytes(head[:8], "little") + 8 > size:
        raise CheckpointError(
            f"checkpoint {path} is truncated ({size} bytes, shorter than its header says); use "
            "an earlier checkpoint of the run"
        )


def _check_length(path: Path, header: bytes) -> None:
    """A file shorter than the tensors its header lists was cut off (a crash, a full disk)."""
    try:
        entries = json.loads(header)
        end = max(
            (int(v["data_offsets"][1]) for k, v in entries.items() if k != "__metadata__"),
            default=0,
        )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return  # a damaged header: safetensors names the problem
    size = path.stat().st_size
    if 8 + len(header) + end > size:
        raise CheckpointError(
            f"checkpoint {path} is truncated ({size} bytes; its header lists "
            f"{8 + len(header) + end}); use an earlier checkpoint of the run"
        )


def list_checkpoints(workdir: str | Path) -> list[Path]:
    """A run's checkpoint files, oldest first."""
    return _step_files(checkpoint_dir(workdir))


def _step_files(folder: Path) -> list[Path]:
    """``step_*.safetensors`` in ``folder``, sorted; an unreadable folder raises (not [])."""
    if not folder.is_dir():
        return []
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise CheckpointError(
            f"cannot list {folder} ({e.strerror}); fix its permissions (nothing was changed)"
        ) from None
    return sorted(folder / n for n in names if fnmatch.fnmatchcase(n, "step_*.safetensors"))


def find_checkpoint(path_or_workdir: str | Path) -> Path:
    """Resolve a checkpoint file, or a run folder to its latest checkpoint.

    Args:
        path_or_workdir: A ``.safetensors`` file, a run folder, or its ``checkpoints`` folder.

    Returns:
        Path of a checkpoint file.

    Raises:
        CheckpointError: If nothing is found.
    """
    p = Path(path_or_workdir)
    try:
        if p.is_file():
            return p
        if not p.exists():
            raise CheckpointError(
                f"checkpoint {p} does not exist; give a checkpoint file or a workdir"
            )
        for folder in (p / "checkpoints", p):
            pointer = folder / LATEST
            if pointer.is_file():
                target = folder / pointer.read_text().strip()
                if target.is_file():
                    return target
            found = _step_files(folder)
            if found:
                return found[-1]
    except (OSError, UnicodeDecodeError) as e:
        where = getattr(e, "filename", None) or p
        why = getattr(e, "strerror", None) or type(e).__name__
        raise CheckpointError(f"cannot read {where} ({why}) looking for a checkpoint") from None
    raise CheckpointError(f"no checkpoint in {p}; train first (ncsn train --workdir {p})")


def remove_stale_temporaries(workdir: str | Path) -> list[Path]:
    """Delete temporary files that a killed writer left in the checkpoint folder.

    Only files of the form ``.step_*.safetensors.*.tmp`` and ``.latest.*.tmp`` (the names
    :func:`ncsn.io.atomic_write` gives its temporaries) are removed.

    Returns:
        The files removed.
    """
    folder = checkpoint_dir(workdir)
    stale = [*folder.glob(".step_*.safetensors.*.tmp"), *folder.glob(f".{LATEST}.*.tmp")]
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def write_latest(workdir: str | Path, checkpoint: Path) -> None:
    """Point ``checkpoints/latest`` at ``checkpoint`` (atomically)."""
    with atomic_write(checkpoint_dir(workdir) / LATEST, "w") as f:
        f.write(checkpoint.name + "\n")


def prune_checkpoints(workdir: str | Path, keep: int, milestone_every: int = 0) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints, sparing milestones and ``latest``.

    Args:
        workdir: The run folder.
        keep: How many recent checkpoints to keep.
        milestone_every: Steps that are multiples of this are kept forever (0: none).

    Returns:
        The files removed.
    """
    files = list_checkpoints(workdir)
    latest = find_checkpoint(workdir) if files else None
    removed = []
    for f in files[: max(len(files) - keep, 0)]:
        step = int(f.stem.split("_")[1])
        if f == latest or (milestone_every and step % milestone_every == 0):
            continue
        f.unlink()
        removed.append(f)
    return removed


def checkpoint_path(workdir: str | Path, step: int) -> Path:
    """The file name of the checkpoint at ``step``."""
    return checkpoint_dir(workdir) / f"step_{step:08d}.safetensors"
