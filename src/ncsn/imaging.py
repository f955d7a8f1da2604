"""Image files in and out: grids, PNG and GIF output, sample ``.npz`` files, image folders.

Inpainting masks live in :mod:`ncsn.masks` (re-exported here).

All writers check the output folder first (:func:`ncsn.io.check_output_path`) and write
atomically (:func:`ncsn.io.atomic_write`). Images are float tensors (N, C, H, W) in [0, 1].
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

from ncsn.decode import is_colour, open_image, to_8bit
from ncsn.errors import ConfigError, DataError
from ncsn.io import atomic_write, check_output_path
from ncsn.masks import MASK_SPECS, make_mask
from ncsn.memory import available_bytes, format_bytes

__all__ = [
    "MASK_SPECS",
    "make_grid",
    "grid_to_pil",
    "save_image_grid",
    "save_gif",
    "make_mask",
    "save_npz",
    "load_npz",
    "load_image",
    "open_image",
    "to_8bit",
    "to_image_tensor",
    "is_colour",
    "convert_channels",
    "resize_images",
    "scan_image_folder",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


def make_grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile a batch of images into one image.

    Args:
        images: (N, C, H, W) or a single (C, H, W) image, values in [0, 1] (clamped).
        nrow: Images per row (default ``ceil(sqrt(N))``).
        padding: Pixels between images and around the border.
        pad_value: Value of the padding.

    Returns:
        Tensor (C, rows * (H + padding) + padding, nrow * (W + padding) + padding) with
        ``rows = ceil(N / nrow)``.
    """
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"make_grid expects (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = max(1, min(n, nrow or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / nrow)
    grid = torch.full(
        (c, rows * (h + padding) + padding, nrow * (w + padding) + padding),
        float(pad_value),
        dtype=torch.float32,
    )
    images = images.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    for k in range(n):
        top, left = padding + (k // nrow) * (h + padding), padding + (k % nrow) * (w + padding)
        grid[:, top : top + h, left : left + w] = images[k]
    return grid.clamp(0.0, 1.0)


def grid_to_pil(grid: torch.Tensor, *, scale: int = 1) -> Image.Image:
    """Convert a (C, H, W) image in [0, 1] to a PIL image ("L", "RGB" or "RGBA").

    Args:
        grid: Image with 1, 3 or 4 channels.
        scale: Integer nearest-neighbour upscaling factor.

    Returns:
        The PIL image.
    """
    if grid.ndim != 3 or grid.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected an image (C, H, W) with 1, 3 or 4 channels, got {grid.shape}")
    if int(scale) < 1:
        raise ConfigError(f"image scale must be a positive integer, got {scale!r}")
    arr = (grid.detach().cpu().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    arr_np = arr.permute(1, 2, 0).numpy()
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr_np.shape[2]]
    im = Image.fromarray(arr_np[:, :, 0] if mode == "L" else arr_np, mode=mode)
    if scale > 1:
        im = im.resize((im.width * int(scale), im.height * int(scale)), Image.Resampling.NEAREST)
    return im


def save_image_grid(
    images: torch.Tensor,
    path: str | Path,
    *,
    nrow: int | None = None,
    padding: int = 2,
    scale: int = 1,
) -> Path:
    """Save a batch as one PNG grid.

    Args:
        images: (N, C, H, W) or (C, H, W) in [0, 1].
        path: Output PNG file; its folder must exist.
        nrow: Images per row (default ``ceil(sqrt(N))``).
        padding: Pixels between images.
        scale: Nearest-neighbour upscaling (e.g. 4 for 8x8 digits).

    Returns:
        The written path.
    """
    path = check_output_path(path, what="image file")
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
    scale: int = 1,
    final_hold_ms: int = 1000,
) -> Path:
    """Save an animation of image grids (e.g. the course of Langevin sampling) as a GIF.

    Args:
        frames: List of batches (N, C, H, W) or a tensor (T, N, C, H, W), values in [0, 1].
        path: Output GIF file; its folder must exist.
        nrow: Images per row of each grid.
        duration_ms: Display time of each frame.
        scale: Nearest-neighbour upscaling.
        final_hold_ms: Display time of the last frame (at least ``duration_ms``).

    Returns:
        The written path. GIF writers merge identical consecutive frames.
    """
    path = check_output_path(path, what="GIF file")
    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame")
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


def load_image(
    path: str | Path, *, channels: int, size: int | None = None, crop: int | None = None
) -> torch.Tensor:
    """Decode an image file to uint8 (C, H, W).

    Args:
        path: Image file.
        channels: 1 (converted to "L") or 3 (converted to "RGB").
        size: Output side; a non-square image is centre-cropped to a square first.
        crop: Centre-crop to this side before resizing (CelebA: 140).

    Returns:
        uint8 tensor (channels, H, W). 16-bit and float images are scaled by their range and
        transparency is composited on white (see :func:`to_8bit`).

    Raises:
        DataError: Unreadable or truncated file, a decompression bomb, or pixel values out of
            range, naming the file.
    """
    with open_image(path) as im:  # decoding errors inside are reported naming the file
        im = to_8bit(im, path).convert("RGB" if channels == 3 else "L")
        w, h = im.size
        side = min(crop or min(w, h), w, h)
        if (crop or size is not None) and (side != w or side != h):
            left, top = int(round((w - side) / 2.0)), int(round((h - side) / 2.0))
            im = im.crop((left, top, left + side, top + side))
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.array(im, dtype=np.uint8)
    t = torch.from_numpy(arr)
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def to_image_tensor(x: Any, *, what: str = "image") -> torch.Tensor:
    """Convert a PIL image, numpy array or tensor to float32 (C, H, W).

    uint8 data is scaled by 1/255; (H, W) gets one channel; numpy (H, W, C) is transposed.

    Args:
        x: The image.
        what: How the image is named in error messages.

    Returns:
        Float32 tensor (C, H, W) with 1 to 4 channels (values not checked).

    Raises:
        DataError: Unsupported type or a shape that is not image-like.
    """
    if isinstance(x, Image.Image):
        x = np.asarray(to_8bit(x, what))
    if isinstance(x, np.ndarray):
        if x.ndim == 3 and x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3, 4):
            x = x.transpose(2, 0, 1)
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise DataError(
            f"{what} is a {type(x).__name__}; expected a tensor, numpy array or PIL image"
        )
    x = x.unsqueeze(0) if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] > 4 or min(x.shape) < 1:
        raise DataError(
            f"{what} has shape {tuple(x.shape)}; expected an image (C, H, W) with 1 or 3 "
            "channels, or (H, W)"
        )
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _list_images(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )
    if not files:
        raise DataError(
            f"image folder {folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}); "
            "point to a folder of images or of class sub-folders"
        )
    classes = sorted({p.relative_to(folder).parts[0] for p in files if p.parent != folder})
    index = {c: i for i, c in enumerate(classes)}
    labels = [-1 if p.parent == folder else index[p.relative_to(folder).parts[0]] for p in files]
    return files, labels, classes


def scan_image_folder(
    folder: Path, image_size: int | None, channels: int | None
) -> tuple[list[Path], list[int], list[str], int, int]:
    """List an image folder (flat or one sub-folder per class) and check its images' headers.

    Args:
        folder: The folder; files in hidden folders and with unknown extensions are skipped.
        image_size: The requested side; when ``None`` all images must share one square size.
        channels: The requested channels; when ``None``, 3 if any image is colour else 1.

    Returns:
        ``(files, labels, classes, channels, image_size)``; labels index the sorted class
        sub-folders, −1 for files directly in ``folder``.

    Raises:
        DataError: No images, an unreadable file, or differing sizes without ``image_size``.
    """
    files, labels, classes = _list_images(folder)
    sizes: dict[tuple[int, int], Path] = {}
    colour = False
    for path in files:
        with open_image(path) as im:
            sizes.setdefault(im.size, path)
            colour = colour or (channels is None and is_colour(im))
    if image_size is None:
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise DataError(
                f"images in {folder} differ in size: {f1} is {s1[0]}x{s1[1]}, {f2} is "
                f"{s2[0]}x{s2[1]}; give an image size to resize them (ncsn train --set "
                "data.image_size=N)"
            )
        (w, h), f1 = next(iter(sizes.items()))
        if w != h:
            raise DataError(
                f"images in {folder} are {w}x{h}, not square (e.g. {f1}); pass "
                "an image size to crop and resize them (ncsn train --set data.image_size=N)"
            )
        image_size = w
    return files, labels, classes, channels or (3 if colour else 1), int(image_size)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a batch (N, C, H, W) between gray and RGB.

    Args:
        x: uint8 or float batch with 1 or 3 channels.
        channels: 1 (ITU-R 601 luma) or 3 (gray repeated).

    Returns:
        The batch with ``channels`` channels, same dtype (``x`` itself when unchanged).
    """
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    gray = (x.float() * w).sum(1, keepdim=True)
    return gray.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else gray


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch (N, C, H, W) to (N, C, size, size), bilinear with antialiasing.

    Args:
        x: uint8 (0..255) or float ([0, 1]) batch.
        size: Output side.

    Returns:
        The resized batch, same dtype (``x`` itself when already that size).
    """
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        out.append(y.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y)
    return torch.cat(out) if x.dtype == torch.uint8 else torch.cat(out).clamp(0.0, 1.0)
