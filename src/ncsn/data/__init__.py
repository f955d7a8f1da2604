"""Data sets for NCSN: items are ``(image, label)`` with ``image`` float32 (C, H, W) in [0, 1].

Names understood by :func:`get_dataset` are the records of :data:`DATASETS` (``digits``:
scikit-learn's bundled 8x8 digits, no download; ``mnist``, ``fashion_mnist``, ``cifar10``,
``celeba``: torchvision files under ``root``) and ``folder:PATH`` (or the path of an existing
folder) for any image folder. Small data sets are held in memory as one uint8/float tensor;
:func:`as_tensor` hands a whole split to the trainer without DataLoader overhead.

Image folders are decoded in full when a split is loaded, so a damaged file is reported,
naming it, before training starts. 16-bit images are scaled by 1/65535, float images must lie
in [0, 1], transparency is composited on white and images beyond PIL's decompression-bomb
limit are refused (:func:`ncsn.decode.to_8bit`, :func:`ncsn.decode.open_image`).

Modules: :mod:`~ncsn.data.records` (the typed records), :mod:`~ncsn.data.registry` (the
table, :func:`get_dataset`), :mod:`~ncsn.data.datasets` (the classes, :func:`wrap_dataset`),
:mod:`~ncsn.data.splits`, :mod:`~ncsn.data.tensors` (in-memory splits),
:mod:`~ncsn.data.torchvision_sets`, :mod:`~ncsn.data.celeba`, :mod:`~ncsn.data.folders`.
"""

from ncsn.data.datasets import (
    ImageDataset,
    ImageFileDataset,
    TensorImageDataset,
    WrappedDataset,
    as_tensor,
    wrap_dataset,
)
from ncsn.data.records import SPLITS, DatasetInfo, DatasetRecord, LoadRequest
from ncsn.data.registry import (
    DATASETS,
    dataset_info,
    dataset_names,
    default_random_flip,
    find_dataset,
    get_dataset,
)
from ncsn.data.torchvision_sets import default_data_root

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "DatasetRecord",
    "LoadRequest",
    "ImageDataset",
    "ImageFileDataset",
    "TensorImageDataset",
    "WrappedDataset",
    "as_tensor",
    "dataset_info",
    "dataset_names",
    "default_data_root",
    "default_random_flip",
    "find_dataset",
    "get_dataset",
    "wrap_dataset",
]
