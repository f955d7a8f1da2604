"""Image files out (and samples in): grids as PNG and GIF, sample ``.npz`` files.

Grids are tiled by torchvision's ``make_grid`` and upscaled by one rule (:func:`grid_scale`).
All writers check the output folder first (:func:`ncsn.io.check_output_path`) and write
atomically (:func:`ncsn.io.atomic_write`). Images are float tensors (N, C, H, W) in [0, 1].
Decoding image files is :mod:`ncsn.decode`'s job, inpainting masks :mod:`ncsn.masks`'.
torchvision is imported when a grid is first made (importing it costs most of what importing
``torch`` does), so commands that write no image do not pay for it.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ncsn.errors import ConfigError, DataError
from ncsn.io import atomic_write, check_output_path
from ncsn.memory import available_bytes, format_bytes

__all__ = [
    "make_grid",
    "grid_scale",
    "grid_to_pil",
    "save_image_grid",
    "save_gif",
    "save_npz",
    "load_npz",
]

_GRID_SIDE = 64  # small images are upscaled to about this many pixels a side


def make_grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile a batch of images into one image (torchvision's ``make_grid``, clamped first).

    Args:
        images: (N, C, H, W) or a single (C, H, W) image, values in [0, 1] (clamped).
        nrow: Images per row (default ``ceil(sqrt(N))``).
        padding: Pixels between images and around the border.
        pad_value: Value of the padding.

    Returns:
        Tensor (C, rows * (H + padding) + padding, nrow * (W + padding) + padding) with
        ``rows = ceil(N / nrow)``; a single image gets its border too, and gray stays one
        channel (torchvision returns one image unpadded and gray as RGB).
    """
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"make_grid expects (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    n, c = int(images.shape[0]), int(images.shape[1])
    images = images.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    if n == 1:
        return F.pad(images[0], (padding,) * 4, value=float(pad_value))
    import torchvision.utils

    nrow = max(1, min(n, nrow or math.ceil(math.sqrt(n))))
    grid = torchvision.utils.make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    return grid[:c]


def grid_scale(image_size: int) -> int:
    """The nearest-neighbour upscaling of sample grids: ``max(1, 64 // image_size)`` (8 for
    8x8 digits, 2 for 28x28 MNIST and 32x32 CIFAR-10, 1 from 33 pixels up)."""
    return max(1, _GRID_SIDE // int(image_size))


def grid_to_pil(grid: torch.Tensor, *, scale: int = 1) -> Image.Image:
    """Convert a (C, H, W) image in [0, 1] to a PIL image ("L", "RGB" or "RGBA").

    Args:
        grid: Image with 1, 3 or 4 channels; values are rounded to the nearest of 0..255.
        scale: Integer nearest-neighbour upscaling factor.

    Returns:
        The PIL image.
    """
    if grid.ndim != 3 or grid.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected an image (C, H, W) with 1, 3 or 4 channels, got {grid.shape}")
    if int(scale) < 1:
        raise ConfigError(f"image scale must be a positive integer, got {scale!r}")
    from torchvision.transforms.v2.functional import to_pil_image

    im = to_pil_image((grid.detach().cpu().float().clamp(0, 1) * 255.0).round().to(torch.uint8))
    if scale > 1:
        im = im.resize((im.width * int(scale), im.height * int(scale)), Image.Resampling.NEAREST)
    return im


def save_image_grid(
    images: torch.Tensor,
    path: str | Path,
    *,
    nrow: int | None = None,
    padding: int = 2,
    scale: int | None = None,
) -> Path:
    """Save a batch as one PNG grid.

    Args:
        images: (N, C, H, W) or (C, H, W) in [0, 1].
        path: Output PNG file; its folder must exist.
        nrow: Images per row (default ``ceil(sqrt(N))``).
        padding: Pixels between images.
        scale: Nearest-neighbour upscaling (default :func:`grid_scale` of the image side).

    Returns:
        The written path.
    """
    path = check_output_path(path, what="image file")
    scale = grid_scale(images.shape[-1]) if scale is None else scale
    im = grid_to_pil(make_grid(images, nrow=nrow, padding=padding), scale=scale)
    with atomic_write(path, "wb") as f:
        im.save(f, format="PNG")
    return path


def save_gif(
    frames: list[torch.Tensor] | torch.Tensor,
    path: str | Path,
    *,
    nrow: int | None = None,
    duration_ms: int = 100,
    scale: int | None = None,
    final_hold_ms: int = 1000,
) -> Path:
    """Save an animation of image grids (e.g. the course of Langevin sampling) as a GIF.

    Args:
        frames: List of batches (N, C, H, W) or a tensor (T, N, C, H, W), values in [0, 1].
        path: Output GIF file; its folder must exist.
        nrow: Images per row of each grid.
        duration_ms: Display time of each frame.
        scale: Nearest-neighbour upscaling (default :func:`grid_scale` of the image side).
        final_hold_ms: Display time of the last frame (at least ``duration_ms``).

    Returns:
        The written path. GIF writers merge identical consecutive frames.
    """
    path = check_output_path(path, what="GIF file")
    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame")
    scale = grid_scale(frames[0].shape[-1]) if scale is None else scale
    ims = [grid_to_pil(make_grid(f, nrow=nrow), scale=scale) for f in frames]
    durations = [int(duration_ms)] * len(ims)
    durations[-1] = max(int(duration_ms), int(final_hold_ms))
    with atomic_write(path, "wb") as f:
        ims[0].save(
            f,
            format="GIF",
            save_all=True,
            append_images=ims[1:],
            duration=durations if len(ims) > 1 else durations[0],
            loop=0,
            optimize=False,
        )
    return path


def save_npz(path: str | Path, samples: torch.Tensor | np.ndarray, **extra: Any) -> Path:
    """Write samples (N, C, H, W) in [0, 1] as float32 to an ``.npz`` file, key ``samples``.

    Args:
        path: Output file; its folder must exist.
        samples: Images in [0, 1] (clamped).
        **extra: Further arrays to store (e.g. ``labels``).

    Returns:
        The written path.
    """
    path = check_output_path(path, what="samples file")
    arr = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
    arr = np.clip(np.asarray(arr, dtype=np.float32), 0.0, 1.0)
    if arr.ndim != 4:
        raise ValueError(f"samples must be (N, C, H, W), got shape {arr.shape}")
    more = {
        k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
        for k, v in extra.items()
    }
    with atomic_write(path, "wb") as f:
        np.savez(f, samples=arr, **more)
    return path


def load_npz(path: str | Path) -> torch.Tensor:
    """Read samples written by :func:`save_npz` (or any ``.npz`` with a ``samples`` array).

    Args:
        path: The ``.npz`` file. uint8 samples are scaled by 1/255.

    Returns:
        Float32 tensor (N, C, H, W) in [0, 1].

    Raises:
        DataError: Missing or unreadable file, no ``samples`` key, wrong shape or values
            outside [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"samples file {path} not found; give an .npz written by ncsn")
    try:
        _check_npz(path, "samples")
        with np.load(path, allow_pickle=False) as z:
            arr = z["samples"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read samples file {path} ({msg}); give a valid .npz") from None
    if arr.ndim != 4:
        raise DataError(f"{path}: 'samples' has shape {arr.shape}; expected (N, C, H, W)")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{path}: 'samples' has dtype {arr.dtype}; expected float32 in [0, 1]")
    arr = arr.astype(np.float32)
    if np.isnan(arr).any():
        raise DataError(f"{path}: samples contain NaN; regenerate them")
    if arr.size and not (arr.min() >= -1e-3 and arr.max() <= 1 + 1e-3):
        lo, hi = float(arr.min()), float(arr.max())
        raise DataError(f"{path}: samples range over [{lo:.3g}, {hi:.3g}]; expected [0, 1]")
    return torch.from_numpy(np.clip(arr, 0.0, 1.0))


def _check_npz(path: Path, key: str) -> None:
    """Check an ``.npz`` before reading it: a zip archive holding ``key``, of a plain dtype, of
    a size that fits in memory (read from the array's header, not by loading it)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(
            f"{path} is a .npy file (a single array), not an .npz archive; save it with "
            f"numpy.savez(path, {key}=array)"
        )
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz file (not a zip archive); give an .npz")
    with zipfile.ZipFile(path) as z:
        names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
        if key not in names:
            keys = ", ".join(names) or "none"
            raise DataError(f"{path} has no {key!r} array (keys: {keys}); save under {key!r}")
        with z.open(f"{key}.npy") as f:
            fmt = np.lib.format
            v1 = fmt.read_magic(f) == (1, 0)
            shape, _, dtype = (fmt.read_array_header_1_0 if v1 else fmt.read_array_header_2_0)(f)
    if dtype.hasobject:
        raise DataError(f"{path}: {key!r} holds Python objects; give numbers (float32 in [0, 1])")
    need = math.prod(shape) * (dtype.itemsize + 4)  # the array and its float32 copy
    free = available_bytes()
    if free is not None and need > free:
        raise DataError(
            f"{path}: {key!r} is an array of shape {tuple(shape)} ({dtype}); reading it needs "
            f"{format_bytes(need)} but {format_bytes(free)} is free; give fewer samples"
        )
