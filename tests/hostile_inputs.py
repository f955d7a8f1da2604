"""Hostile files for the input tests: YAML bombs, PNG bombs, odd images, fake checkpoints."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _laughs(levels: int, width: int) -> list[str]:
    items = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for i in range(1, levels):
        items.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return items


def billion_laughs(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """The classic alias bomb: ``width ** levels`` strings from about 530 bytes."""
    return "".join(f"{indent}{line}\n" for line in _laughs(levels, width))


def billion_laughs_flow(levels: int = 9, width: int = 9) -> str:
    """The same bomb as one flow mapping, for ``--set model.options=...``."""
    return "{" + ", ".join(_laughs(levels, width)) + "}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A PNG of a few hundred bytes that declares ``width`` x ``height`` 1-bit pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 1024, 9)  # far fewer rows than declared: never decoded anyway
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
    path.write_bytes(png + _chunk(b"IEND", b""))
    return path


def png16(path: Path, value: int, size: int = 8) -> Path:
    """A 16-bit grayscale PNG with every pixel ``value`` (0..65535)."""
    Image.fromarray(np.full((size, size), value, dtype=np.uint16)).save(path)
    return path


def float_tiff(path: Path, value: float, size: int = 8) -> Path:
    """A 32-bit float TIFF with every pixel ``value``."""
    Image.fromarray(np.full((size, size), value, dtype=np.float32)).save(path)
    return path


def truncated_png(path: Path, size: int = 64, seed: int = 1) -> Path:
    """A PNG whose header is intact and whose pixel data is cut in half."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def gray_png(path: Path, size: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    return path


def npz_declaring(path: Path, shape: tuple[int, ...], key: str = "samples") -> Path:
    """An .npz whose array header declares ``shape`` (float32) but holds almost no data."""
    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{key}.npy", buf.getvalue() + b"\0" * 64)
    return path


def edit_checkpoint(path: Path, edit) -> Path:
    """Rewrite the JSON state in a checkpoint's header with ``edit(state)``; tensors untouched.

    ``edit`` gets the packed state (see :mod:`ncsn.checkpoint_format`) and returns the new one.
    """
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    state = json.loads(header["__metadata__"]["state"])
    new_state = edit(state)
    header["__metadata__"]["state"] = (
        new_state if isinstance(new_state, str) else json.dumps(new_state)
    )
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    return path


def set_packed(state: dict, keys: list[str], value) -> dict:
    """Set ``state[k1][k2]...`` in a packed state (mappings are ``{"__items__": [[k, v]]}``)."""
    node = state
    for k in keys[:-1]:
        node = next(v for key, v in node["__items__"] if key == k)
    for pair in node["__items__"]:
        if pair[0] == keys[-1]:
            pair[1] = value
            return state
    node["__items__"].append([keys[-1], value])
    return state


def drop_packed(state: dict, key: str) -> dict:
    state["__items__"] = [p for p in state["__items__"] if p[0] != key]
    return state
