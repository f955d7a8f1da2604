"""The typed records of the data-set table: what a data set is, and what a loader is asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ncsn.data.datasets import ImageDataset

__all__ = ["DatasetInfo", "DatasetRecord", "LoadRequest", "SPLITS"]

SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set, available without decoding it.

    Attributes:
        name: Canonical data set name (``folder:PATH`` for folders).
        channels: Image channels (1 or 3).
        image_size: Image side in pixels.
        num_classes: Number of labels (0 when unlabelled).
    """

    name: str
    channels: int
    image_size: int
    num_classes: int


@dataclass(frozen=True)
class LoadRequest:
    """What :func:`ncsn.data.get_dataset` asks a loader for (already checked).

    Attributes:
        root: Folder holding torchvision data sets, or ``None`` for the default.
        split: ``train``, ``val``, ``test`` or ``all`` (one of the record's splits).
        image_size: Output image side.
        channels: Output channels (1 or 3).
        val_size: Validation part of the training data (see :func:`ncsn.data.get_dataset`).
        download: Let torchvision download missing files.
    """

    root: str | Path | None
    split: str
    image_size: int
    channels: int
    val_size: int | float | None
    download: bool


@dataclass(frozen=True)
class DatasetRecord:
    """One built-in data set: its shape, labels, splits, default flip and loader.

    Attributes:
        name: Canonical name (lower case).
        channels: Native channels (1 or 3).
        image_size: Native image side (CelebA: the side ncsn resizes its 140 px crop to).
        num_classes: Number of labels (0 when unlabelled).
        splits: The splits :func:`ncsn.data.get_dataset` accepts for it.
        random_flip: Whether training flips its images left-right by default (the paper
            flips CIFAR-10 and CelebA).
        load: ``load(record, request) -> ImageDataset``, the one function that reads it.
        aliases: Other spellings of ``name``.
    """

    name: str
    channels: int
    image_size: int
    num_classes: int
    splits: tuple[str, ...]
    random_flip: bool
    load: Callable[[DatasetRecord, LoadRequest], ImageDataset]
    aliases: tuple[str, ...] = ()

    @property
    def info(self) -> DatasetInfo:
        """The record's :class:`DatasetInfo` at its native shape."""
        return DatasetInfo(self.name, self.channels, self.image_size, self.num_classes)
