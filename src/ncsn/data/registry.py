"""The one table of built-in data sets, and :func:`get_dataset` / :func:`dataset_info`.

Adding a data set is one :class:`DatasetRecord` in :data:`DATASETS` and its loader function;
the names, shapes and default flips everything else uses (config checks, ``build_model``,
training) are read from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncsn.data.celeba import load_celeba
from ncsn.data.datasets import ImageDataset
from ncsn.data.folders import folder_info, load_folder
from ncsn.data.records import SPLITS, DatasetInfo, DatasetRecord, LoadRequest
from ncsn.data.splits import canonical_split
from ncsn.data.torchvision_sets import load_digits, torchvision_loader
from ncsn.errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "dataset_names",
    "find_dataset",
    "default_random_flip",
    "get_dataset",
    "dataset_info",
]

_TENSOR_SPLITS = ("train", "val", "test")

DATASETS: dict[str, DatasetRecord] = {
    r.name: r
    for r in (
        DatasetRecord("digits", 1, 8, 10, SPLITS, False, load_digits),
        DatasetRecord(
            "mnist", 1, 28, 10, _TENSOR_SPLITS, False, torchvision_loader("MNIST", "MNIST/raw")
        ),
        DatasetRecord(
            "fashion_mnist",
            1,
            28,
            10,
            _TENSOR_SPLITS,
            False,
            torchvision_loader("FashionMNIST", "FashionMNIST/raw"),
            aliases=("fashion-mnist", "fashionmnist"),
        ),
        DatasetRecord(
            "cifar10",
            3,
            32,
            10,
            _TENSOR_SPLITS,
            True,
            torchvision_loader("CIFAR10", "cifar-10-batches-py"),
            aliases=("cifar-10",),
        ),
        DatasetRecord("celeba", 3, 32, 0, _TENSOR_SPLITS, True, load_celeba),
    )
}


def dataset_names() -> tuple[str, ...]:
    """The names :func:`get_dataset` understands: the records' and ``folder:PATH``."""
    return (*DATASETS, "folder:PATH")


def find_dataset(name: str | None) -> DatasetRecord | None:
    """The record of a built-in data set (any case, aliases such as ``cifar-10`` too), or
    ``None`` for folders and unknown names. Reads no data."""
    key = str(name).strip().lower()
    return next((r for r in DATASETS.values() if key == r.name or key in r.aliases), None)


def default_random_flip(name: str | None) -> bool:
    """Whether training flips a data set left-right when ``data.random_flip`` is unset (the
    record's flag; never for folders and user data sets)."""
    record = find_dataset(name)
    return record is not None and record.random_flip


def _parse_name(name: str) -> tuple[DatasetRecord | None, Path | None]:
    record = find_dataset(name)
    if record is not None:
        return record, None
    text = str(name).strip()
    if text.lower().startswith("folder:"):
        folder = Path(text[len("folder:") :]).expanduser()
        if not folder.is_dir():
            raise DataError(f"image folder {folder} does not exist or is not a folder")
        return None, folder
    if Path(text).expanduser().is_dir():
        return None, Path(text).expanduser()
    raise DataError(
        f"unknown data set {name!r}; use one of {', '.join(dataset_names())} "
        "or the path of an existing image folder"
    )


def _check_size_channels(image_size: int | None, channels: int | None) -> None:
    ok = isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool)
    if image_size is not None and not (ok and image_size >= 1):
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}")


def get_dataset(
    name: str = "digits",
    *,
    root: str | Path | None = None,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    val_size: int | float | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load one split of a named data set or an image folder.

    Args:
        name: A name of :func:`dataset_names` (``digits``, ``mnist``, ``fashion_mnist``,
            ``cifar10``, ``celeba``), ``folder:PATH`` or the path of an existing folder
            (known names win; use ``folder:`` to force).
        root: Folder holding torchvision data sets (default
            :func:`ncsn.data.default_data_root`).
        split: ``train``, ``val``, ``test`` (or ``all`` for digits and folders).
        image_size: Resize images to this side (default: the data set's own size).
        channels: Convert to 1 (gray) or 3 (RGB) channels (default: the data set's own).
        val_size: Validation part of the training data: a whole number of images, a
            fraction in [0, 1) or 0 for none (default 5%).
        download: Let torchvision download missing files (needs internet).

    Returns:
        An :class:`ImageDataset` with ``channels``, ``image_size`` and ``num_classes``. Its
        items are never flipped: training draws its flips itself (see
        :func:`default_random_flip`).

    Raises:
        DataError: Unknown name or split, missing or unreadable files.
        ConfigError: Invalid ``image_size``, ``channels`` or ``val_size``.
    """
    record, folder = _parse_name(name)
    split = canonical_split(split, name)
    _check_size_channels(image_size, channels)
    if record is None:
        return load_folder(folder, split, image_size, channels, val_size)
    if split not in record.splits:
        raise DataError(
            f"data set {record.name} has no split {split!r}; use one of {record.splits} "
            "('all' is for digits and image folders)"
        )
    size, c = image_size or record.image_size, channels or record.channels
    return record.load(record, LoadRequest(root, split, size, c, val_size, download))


def dataset_info(
    name: str = "digits",
    *,
    root: str | Path | None = None,
    image_size: int | None = None,
    channels: int | None = None,
) -> DatasetInfo:
    """Channels, image size and label count of a data set without decoding its images.

    Args:
        name: As in :func:`get_dataset`.
        root: Unused for built-in names (kept for symmetry with :func:`get_dataset`).
        image_size: Requested image side, if any.
        channels: Requested channels, if any.

    Returns:
        The :class:`DatasetInfo`. Folders are scanned (file headers only).
    """
    record, folder = _parse_name(name)
    _check_size_channels(image_size, channels)
    if record is None:
        return folder_info(folder, image_size, channels)
    c, size = channels or record.channels, image_size or record.image_size
    return DatasetInfo(record.name, c, size, record.num_classes)
