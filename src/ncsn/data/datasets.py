"""The data set classes: ``(image, label)`` items, ``image`` float32 (C, H, W) in [0, 1].

Data sets never augment: the one random left-right flip is drawn by training from the run's
generator (:func:`ncsn.train_step.draw`), so a resumed run flips exactly as an uninterrupted
one. Apply :func:`ncsn.transforms.random_hflip` yourself when you want flips elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ncsn.decode import load_image, to_8bit
from ncsn.errors import DataError

__all__ = [
    "ImageDataset",
    "TensorImageDataset",
    "ImageFileDataset",
    "WrappedDataset",
    "wrap_dataset",
    "as_tensor",
    "to_image_tensor",
]

_CACHE_LIMIT_BYTES = 1 << 30


class ImageDataset(Dataset):
    """Base of the library's data sets: ``(image, label)`` items plus metadata attributes.

    Attributes:
        name, channels, image_size, num_classes: As in :class:`ncsn.data.DatasetInfo`.
    """

    name: str = ""
    channels: int = 1
    image_size: int = 0
    num_classes: int = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Several items at once.

        Args:
            indices: Sequence or 1-D tensor of item indices.

        Returns:
            ``(images (B, C, H, W) float32, labels (B,) int64)``.
        """
        items = [self[int(i)] for i in indices]
        empty = torch.empty(0, self.channels, self.image_size, self.image_size)
        images = torch.stack([x for x, _ in items]) if items else empty
        return images, torch.tensor([y for _, y in items], dtype=torch.int64)


class TensorImageDataset(ImageDataset):
    """An in-memory split: images (N, C, H, W) as uint8 (0..255) or float in [0, 1], labels (N,).

    Args:
        images: Image tensor; uint8 is kept as is (4x less memory) and scaled on access.
        labels: Integer labels (−1 when unknown); ``None`` means all −1.
        name: Data set name.
        num_classes: Number of labels.

    Attributes:
        indices: Positions of the items in the source split (set by :func:`get_dataset`).
    """

    indices: torch.Tensor | None = None

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        name: str = "tensor",
        num_classes: int = 0,
    ) -> None:
        if images.ndim != 4:
            raise DataError(
                f"data set {name}: images must be (N, C, H, W), got {tuple(images.shape)}"
            )
        self.images = images.contiguous()
        n = images.shape[0]
        self.labels = torch.full((n,), -1, dtype=torch.int64) if labels is None else labels.long()
        self.name, self.num_classes = name, num_classes
        self.channels, self.image_size = int(images.shape[1]), int(images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @staticmethod
    def _to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clone()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._to_float(self.images[int(index)]), int(self.labels[int(index)])

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Several items at once, indexed as tensors (see :meth:`ImageDataset.get_batch`)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self._to_float(self.images[idx]), self.labels[idx].clone()


class ImageFileDataset(ImageDataset):
    """Images decoded from files with PIL (and cached when they fit in 1 GiB).

    Args:
        files: Image files.
        labels: One label per file (−1 when unknown).
        channels: 1 (converted to "L") or 3 (converted to "RGB").
        image_size: Output side; non-square images are centre-cropped to a square first.
        name: Data set name.
        num_classes: Number of labels.
        crop: Centre-crop side applied before resizing (CelebA uses 140), or ``None``.
        cache: Keep decoded images; ``None`` caches when the split fits in 1 GiB.
    """

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        *,
        channels: int,
        image_size: int,
        name: str,
        num_classes: int = 0,
        crop: int | None = None,
        cache: bool | None = None,
    ) -> None:
        self.files, self.labels = list(files), list(labels)
        self.channels, self.image_size, self.name = channels, image_size, name
        self.num_classes, self.crop = num_classes, crop
        if cache is None:
            cache = len(files) * channels * image_size**2 <= _CACHE_LIMIT_BYTES
        self._cache: list[torch.Tensor | None] | None = [None] * len(files) if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, index: int) -> torch.Tensor:
        cached = self._cache[index] if self._cache is not None else None
        if cached is None:
            cached = load_image(
                self.files[index], channels=self.channels, size=self.image_size, crop=self.crop
            )
            if self._cache is not None:
                self._cache[index] = cached
        return cached

    def decode_all(self) -> ImageFileDataset:
        """Decode every file once now (keeping the pixels when the split is cached).

        A truncated or otherwise undecodable file is reported here, naming it, instead of in
        the middle of training. Without a cache the pixels are decoded again when used.

        Returns:
            ``self``.

        Raises:
            DataError: The first file that cannot be decoded.
        """
        for i in range(len(self.files)):
            self._decode(i)
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._decode(int(index)).float().div_(255.0), self.labels[int(index)]


class WrappedDataset(ImageDataset):
    """Adapts a user data set (see :func:`wrap_dataset`) to the ``(image, label)`` convention."""

    def __init__(self, base: Dataset, channels: int, image_size: int) -> None:
        self.base, self.channels, self.image_size = base, channels, image_size
        self.name = type(base).__name__

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _convert_item(self.base[int(index)], int(index))


def wrap_dataset(ds: Dataset) -> ImageDataset:
    """Adapt a user data set to ``(image float32 (C, H, W) in [0, 1], label int)`` items.

    Items may be tensors, numpy arrays or PIL images, alone or as ``(x, label, ...)``
    tuples. uint8 data is scaled by 1/255; 2-D images get one channel; numpy arrays shaped
    (H, W, C) are transposed. The first item is checked.

    Args:
        ds: Any map-style data set.

    Returns:
        ``ds`` itself when it is already an :class:`ImageDataset`, else a wrapper.

    Raises:
        DataError: Empty data set, or a first item that is not an image in [0, 1].
    """
    if isinstance(ds, ImageDataset):
        return ds
    try:
        n = len(ds)  # type: ignore[arg-type]
    except TypeError as e:
        raise DataError(
            f"data set {type(ds).__name__} has no len(); wrap a map-style data set"
        ) from e
    if n == 0:
        raise DataError(f"data set {type(ds).__name__} is empty; it needs at least one image")
    image, _ = _convert_item(ds[0], 0)
    lo, hi = float(image.min()), float(image.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise DataError(
            f"data set {type(ds).__name__}: item 0 has values in [{lo:.3g}, {hi:.3g}]; "
            "images must be in [0, 1] (undo any normalisation)"
        )
    return WrappedDataset(ds, int(image.shape[0]), int(image.shape[1]))


def as_tensor(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as tensors.

    Args:
        ds: A data set from :func:`get_dataset` or anything :func:`wrap_dataset` accepts.
            In-memory splits are returned directly; others are decoded item by item.

    Returns:
        ``(images (N, C, H, W) float32 in [0, 1], labels (N,) int64)``.
    """
    ds = wrap_dataset(ds)
    if isinstance(ds, TensorImageDataset):
        return ds._to_float(ds.images), ds.labels.clone()
    return ds.get_batch(range(len(ds)))


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


def _convert_item(item: Any, index: int) -> tuple[torch.Tensor, int]:
    label: Any = -1
    if isinstance(item, (tuple, list)):
        if not item:
            raise DataError(f"data set item {index} is an empty {type(item).__name__}")
        item, label = item[0], (item[1] if len(item) > 1 else -1)
    try:
        label = int(label)
    except (TypeError, ValueError, RuntimeError):
        label = -1
    return to_image_tensor(item, what=f"data set item {index}"), label
