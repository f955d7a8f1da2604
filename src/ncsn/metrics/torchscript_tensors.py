"""Read the tensors of a TorchScript archive without running or compiling any of its code.

A TorchScript file is a zip holding ``code/`` (the module's TorchScript source), ``data.pkl``
(a pickle of the module tree: attribute dicts whose leaves are tensors) and ``data/<key>``
(raw tensor storages). ``torch.jit.load`` compiles the code; this reader only unpickles
``data.pkl`` with an unpickler that knows five harmless names (tensor rebuilding, storage
types, ``OrderedDict`` and TorchScript's int-list helper) and turns every ``__torch__``
module class into a plain attribute holder, so nothing from the file is ever executed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

__all__ = ["is_torchscript_archive", "read_torchscript_tensors"]

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for any ``__torch__`` class: keeps the unpickled attribute dict, no code."""

    def __setstate__(self, state) -> None:
        self.state = state


def _rebuild_tensor(storage, offset, size, stride, *_):
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class _TensorUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _ScriptObject
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch.jit._pickle" and name.startswith("build_") and name.endswith("list"):
            return list
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing {module}.{name}: not part of a tensor archive")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = bytearray(self._archive.read(f"{self._prefix}data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat[: int(numel)]


def _archive_prefix(archive: zipfile.ZipFile) -> str | None:
    """The folder holding ``data.pkl`` and ``code/``, or None when this is no TorchScript file."""
    names = archive.namelist()
    for name in names:
        if name.endswith("data.pkl"):
            prefix = name[: -len("data.pkl")]
            if any(n.startswith(f"{prefix}code/") for n in names):
                return prefix
    return None


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a zip with TorchScript's ``data.pkl`` + ``code/`` layout."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _archive_prefix(archive) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def _collect(obj, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, _ScriptObject) and isinstance(obj.state, dict):
        for key, value in obj.state.items():
            _collect(value, f"{prefix}{key}.", out)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a TorchScript module, by dotted attribute name (``net.layers.conv.weight``).

    Args:
        path: The TorchScript ``.pt`` file.

    Returns:
        Name -> tensor (contiguous copies, CPU).

    Raises:
        ValueError: Not a TorchScript archive, or its pickle names anything beyond tensors.
    """
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive)
        if prefix is None:
            raise ValueError(f"{path} is not a TorchScript archive (no data.pkl beside code/)")
        root = _TensorUnpickler(archive.read(f"{prefix}data.pkl"), archive, prefix).load()
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    return {k: v.contiguous().clone() for k, v in out.items()}
