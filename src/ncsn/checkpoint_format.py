"""The file format of an ncsn checkpoint, apart from reading and writing run folders.

A training state (nested dicts, lists and tuples of tensors and JSON values) is stored as
safetensors tensors plus a JSON skeleton in the metadata (:func:`pack_state`,
:func:`unpack_state`); :func:`state_digest` is the SHA-256 kept in the metadata, over the
tensors and the rest of the metadata (``ncsn-checkpoint-v2``; ``v1`` covered the tensors
only). :func:`check_head` and :func:`check_length` name a file that is not one (a pickle, a
file cut short) before safetensors reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ncsn.errors import CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_V1",
    "MAX_DEPTH",
    "MAX_HEADER",
    "check_head",
    "check_length",
    "pack_state",
    "state_digest",
    "unpack_state",
]

FORMAT = "ncsn-checkpoint-v2"
FORMAT_V1 = "ncsn-checkpoint-v1"  # checksum over the tensors only; still read
MAX_DEPTH = 32  # nesting of the state record (a real one is about 6 deep)
MAX_HEADER = 100_000_000  # bytes; safetensors' own limit


def pack_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references, collecting them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {
            "__items__": [
                [pack_state(k, f"{prefix}.k{i}", tensors), pack_state(v, f"{prefix}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, (list, tuple)):
        packed = [pack_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": packed} if isinstance(obj, tuple) else packed
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unpack_state(obj: Any, tensors: dict[str, torch.Tensor] | None, depth: int = 0) -> Any:
    """Rebuild a packed structure; ``tensors=None`` leaves tensor references as None."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the state is nested more than {MAX_DEPTH} levels deep")
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return None if tensors is None else tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unpack_state(v, tensors, depth + 1) for v in obj["__tuple__"])
        return {
            unpack_state(k, tensors, depth + 1): unpack_state(v, tensors, depth + 1)
            for k, v in obj["__items__"]
        }
    if isinstance(obj, list):
        return [unpack_state(v, tensors, depth + 1) for v in obj]
    return obj


def state_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> str:
    """SHA-256 over the metadata (all but the checksum itself; None: v1) and the tensors."""
    h = hashlib.sha256()
    if metadata is not None:
        rest = {k: v for k, v in metadata.items() if k != "sha256"}
        h.update(json.dumps(rest, sort_keys=True).encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(
            t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        )
    return h.hexdigest()


def check_head(path: Path, head: bytes) -> None:
    """Name what a file that is not a safetensors checkpoint is, from its first bytes.

    A safetensors file is an 8-byte header length and a JSON header (``{`` at byte 8); only a
    file that is not one is looked at for the marks of a zip (``torch.save``) or a pickle.
    """
    if len(head) < 9 or head[8:9] != b"{":
        if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
            raise CheckpointError(
                f"{path} is a PyTorch/pickle file, not an ncsn checkpoint; ncsn never "
                "unpickles files (they can run code): give a .safetensors checkpoint written "
                "by ncsn train"
            )
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


def check_length(path: Path, rest: bytes) -> None:
    """A file shorter than the tensors its header lists was cut off (a crash, a full disk).

    ``rest`` is the header after its first byte ``{`` (which :func:`check_head` read).
    """
    header = b"{" + rest
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
