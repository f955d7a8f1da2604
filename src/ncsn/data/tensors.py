"""In-memory splits: whole data sets as one tensor, converted and resized once."""

from __future__ import annotations

import numpy as np
import torch

from ncsn.data.datasets import TensorImageDataset
from ncsn.data.records import DatasetRecord, LoadRequest
from ncsn.errors import DataError

__all__ = ["convert_channels", "resize_images", "tensor_split"]

# ITU-R 601 luma, as PIL's convert("L") computes it (torchvision's rgb_to_grayscale uses
# 0.2989 for red and truncates uint8 results, so it differs by one level on some pixels)
_LUMA = (0.299, 0.587, 0.114)
_CHUNK = 4096


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a batch (N, C, H, W) between gray and RGB.

    Args:
        x: uint8 or float batch with 1 or 3 channels.
        channels: 1 (ITU-R 601 luma, rounded for uint8) or 3 (gray repeated).

    Returns:
        The batch with ``channels`` channels, same dtype (``x`` itself when unchanged).
    """
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    w = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
    gray = (x.float() * w).sum(1, keepdim=True)
    return gray.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else gray


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch (N, C, H, W) to (N, C, size, size), bilinear with antialiasing.

    uint8 batches are resized in float and rounded (torchvision's own uint8 kernel rounds
    differently by one level), in chunks of 4,096 images to bound the float copy.

    Args:
        x: uint8 (0..255) or float ([0, 1]) batch.
        size: Output side.

    Returns:
        The resized batch, same dtype (``x`` itself when already that size).
    """
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from torchvision.transforms import InterpolationMode  # imported when first used: slow
    from torchvision.transforms.v2 import functional as TF

    out = []
    for chunk in x.split(_CHUNK):
        y = TF.resize(
            chunk.float(), [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True
        )
        out.append(y.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y)
    return torch.cat(out) if x.dtype == torch.uint8 else torch.cat(out).clamp(0.0, 1.0)


def _check_fits_in_memory(name: str, n: int, channels: int, size: int, itemsize: int) -> None:
    """Refuse a resize that cannot fit in memory (the result plus one float chunk)."""
    from ncsn.memory import available_bytes, format_bytes

    pixels = channels * size * size
    need = n * pixels * itemsize + 2 * min(n, _CHUNK) * pixels * 4
    free = available_bytes()
    if free is not None and need > free:
        raise DataError(
            f"data set {name}: {n} images at image_size {size} need {format_bytes(need)} in "
            f"memory, but {format_bytes(free)} is free; use a smaller data.image_size"
        )


def tensor_split(
    record: DatasetRecord,
    request: LoadRequest,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: np.ndarray | None,
) -> TensorImageDataset:
    """The requested split of a whole data set held as tensors.

    Args:
        record: The data set.
        request: The split, size and channels asked for.
        images: All images (N, C, H, W), uint8 or float in [0, 1].
        labels: All labels (N,).
        indices: The split's items, or ``None`` for all of them.

    Returns:
        The :class:`TensorImageDataset`, with ``indices`` set.

    Raises:
        DataError: The converted split would not fit in memory.
    """
    if indices is not None:
        images, labels = images[torch.as_tensor(indices)], labels[torch.as_tensor(indices)]
    size, channels = request.image_size, request.channels
    _check_fits_in_memory(record.name, len(images), channels, size, images.element_size())
    images = resize_images(convert_channels(images, channels), size)
    ds = TensorImageDataset(images, labels, name=record.name, num_classes=record.num_classes)
    ds.indices = torch.as_tensor(indices) if indices is not None else torch.arange(len(ds))
    return ds
