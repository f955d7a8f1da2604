"""Decoding image files safely: bombs refused, 16-bit and float scaled, alpha composited.

Every image file ncsn reads (image folders, CelebA, inpainting masks) is opened with
:func:`open_image` and brought to 8 bits per channel with :func:`to_8bit`; data sets decode
files to tensors with :func:`load_image`. :data:`READ_ERRORS` is the one tuple of errors that
mean "this file is not a readable image".
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ncsn.errors import DataError

__all__ = ["open_image", "to_8bit", "is_colour", "load_image", "READ_ERRORS"]

READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@contextlib.contextmanager
def open_image(path: str | Path, what: str = "image") -> Iterator[Image.Image]:
    """Open an image file with PIL, refusing decompression bombs in one line.

    Images above PIL's ``Image.MAX_IMAGE_PIXELS`` (89.5 million pixels by default), which PIL
    only warns about, are refused like those above twice that, which it refuses itself.

    Args:
        path: The file.
        what: How the file is named in error messages.

    Yields:
        The opened (lazily decoded) PIL image; decoding errors raised while it is used are
        reported in the same way.

    Raises:
        DataError: Unreadable file or too many pixels, naming the file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                yield im
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            limit = Image.MAX_IMAGE_PIXELS
            raise DataError(
                f"{what} {path} has more pixels than PIL's decompression-bomb limit "
                f"({limit:,}); shrink the image or remove it"
            ) from None
        except READ_ERRORS as e:
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            fix = "fix or remove the file"
            raise DataError(f"cannot decode {what} {path} ({why}); {fix}") from None


def to_8bit(im: Image.Image, path: str | Path = "image") -> Image.Image:
    """An image in mode "L" or "RGB" with 8 bits per channel, decoded.

    - 16-bit images (PIL modes ``I;16*``, and ``I`` holding values 0..65535) are scaled by
      255/65535: a 16-bit value v becomes v/65535 of full scale, as an 8-bit one v/255 does;
    - floating-point images (mode ``F``) must hold values in [0, 1]; others are refused;
    - transparency (an alpha channel, or a palette/gray transparency entry) is composited on
      **white**: a fully transparent pixel becomes white, a half-transparent one half-way;
    - other modes (palette, CMYK, YCbCr, 1-bit) are converted by PIL.

    Args:
        im: An opened PIL image.
        path: The file, named in error messages.

    Returns:
        A decoded PIL image in mode "L" (gray sources) or "RGB".

    Raises:
        DataError: 32-bit integer values above 65535 or below 0, or float values outside
            [0, 1], naming the file and the range found.
    """
    if im.mode in _WIDE_INT_MODES or im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode == "F" and not (np.isfinite(a).all() and lo >= 0.0 and hi <= 1.0):
            raise DataError(
                f"image {path} holds floating-point values from {lo:.4g} to {hi:.4g}; float "
                "images must hold values in [0, 1] (scale them, or save as 8/16-bit PNG)"
            )
        if im.mode == "I" and (lo < 0 or hi > 65535):
            raise DataError(
                f"image {path} holds 32-bit integer values from {lo:.0f} to {hi:.0f}; ncsn reads "
                "integer images as 8 or 16 bits (0..65535): save it as an 8- or 16-bit PNG"
            )
        scale = 255.0 if im.mode == "F" else 255.0 / 65535.0
        return Image.fromarray(np.round(a * scale).astype(np.uint8), mode="L")
    if "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba).convert("RGB")
        return flat if is_colour(im) else flat.convert("L")
    return im.convert("RGB" if is_colour(im) else "L")


def is_colour(im: Image.Image) -> bool:
    """Whether a PIL image is colour, judged from its mode (and palette for "P" images).

    Args:
        im: An opened PIL image (pixel data need not be loaded).

    Returns:
        True for colour modes and palettes with non-gray entries.
    """
    if im.mode == "P":
        pal = np.asarray(im.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        return bool((pal != pal[:, :1]).any())
    return im.mode in _COLOUR_MODES


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
        transparency is composited on white (see :func:`to_8bit`); crop and resize are
        torchvision's on the PIL image (PIL's bilinear filter).

    Raises:
        DataError: Unreadable or truncated file, a decompression bomb, or pixel values out of
            range, naming the file.
    """
    from torchvision.transforms import InterpolationMode  # imported when first used: slow
    from torchvision.transforms.v2 import functional as TF

    with open_image(path) as im:  # decoding errors inside are reported naming the file
        im = to_8bit(im, path).convert("RGB" if channels == 3 else "L")
        w, h = im.size
        side = min(crop or min(w, h), w, h)
        if (crop or size is not None) and (side != w or side != h):
            im = TF.center_crop(im, [side, side])
        if size is not None and im.size != (size, size):
            im = TF.resize(im, [size, size], interpolation=InterpolationMode.BILINEAR)
        return TF.pil_to_tensor(im).contiguous()
