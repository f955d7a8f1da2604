"""Inpainting masks (1 = observed pixel, 0 = pixel to fill in) from a name or a PNG file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ncsn.decode import open_image, to_8bit
from ncsn.errors import ConfigError, DataError

__all__ = ["MASK_SPECS", "make_mask"]

MASK_SPECS = ("left-half", "right-half", "top-half", "bottom-half", "centre", "random")


def make_mask(
    spec: str | Path,
    *,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    fraction: float = 0.5,
) -> torch.Tensor:
    """Build an inpainting mask with 1 = observed pixel, 0 = pixel to fill in.

    Args:
        spec: ``left-half`` (left half observed, right half occluded), ``right-half``,
            ``top-half``, ``bottom-half``, ``centre``/``center`` (central square of half the
            side occluded), ``random`` (each pixel observed with probability ``fraction``) or
            the path of a PNG (white = observed; converted to gray, resized with nearest
            neighbour, thresholded at 0.5; transparent parts count as white).
        shape: Image shape (C, H, W) (or (H, W)).
        generator: Generator for ``random``.
        fraction: Observed probability for ``random``.

    Returns:
        Float tensor (1, H, W) of 0s and 1s, broadcastable over channels.

    Raises:
        DataError: Unknown spec, or a PNG that is missing or unreadable.
    """
    if len(shape) not in (2, 3) or min(int(s) for s in shape) < 1:
        raise ValueError(f"mask shape must be (C, H, W) or (H, W), got {shape!r}")
    h, w = int(shape[-2]), int(shape[-1])
    key = str(spec).strip().lower().replace("_", "-")
    mask = torch.zeros(1, h, w)
    if key == "left-half":
        mask[..., : w // 2] = 1.0
    elif key == "right-half":
        mask[..., w // 2 :] = 1.0
    elif key == "top-half":
        mask[:, : h // 2, :] = 1.0
    elif key == "bottom-half":
        mask[:, h // 2 :, :] = 1.0
    elif key in ("centre", "center"):
        mask.fill_(1.0)
        sh, sw = max(1, h // 2), max(1, w // 2)
        top, left = (h - sh) // 2, (w - sw) // 2
        mask[:, top : top + sh, left : left + sw] = 0.0
    elif key == "random":
        if not 0.0 <= float(fraction) <= 1.0:
            raise ConfigError(f"mask fraction must be in [0, 1], got {fraction!r}")
        dev = generator.device if generator is not None else None
        u = torch.rand((1, h, w), generator=generator, device=dev).cpu()
        mask = (u < float(fraction)).float()
    elif isinstance(spec, Path) or key.endswith(".png") or Path(str(spec)).is_file():
        mask = _png_mask(Path(spec), h, w)
    else:
        raise DataError(
            f"unknown mask {str(spec)!r}; use one of {', '.join(MASK_SPECS)} "
            "or the path of a PNG (white = observed)"
        )
    return mask


def _png_mask(path: Path, h: int, w: int) -> torch.Tensor:
    if not path.is_file():
        raise DataError(f"mask file {path} not found; give an existing PNG (white = observed)")
    with open_image(path, what="mask file") as im:  # bombs and damaged files: one line
        im = to_8bit(im, path).convert("L")
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.NEAREST)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy((arr >= 0.5).astype(np.float32)).unsqueeze(0)
