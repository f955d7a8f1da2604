"""Loaders of the built-in tensor data sets: scikit-learn's digits and torchvision's files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncsn.data.datasets import TensorImageDataset
from ncsn.data.records import DatasetRecord, LoadRequest
from ncsn.data.splits import split_indices
from ncsn.data.tensors import tensor_split
from ncsn.errors import DataError

__all__ = ["default_data_root", "load_digits", "torchvision_loader", "torchvision_dataset"]

_TV_ERRORS = (RuntimeError, OSError, ValueError, AssertionError, EOFError, IndexError)


def default_data_root() -> Path:
    """Returns:
    ``$NCSN_DATA_ROOT`` when set, else ``./data``.
    """
    return Path(os.environ.get("NCSN_DATA_ROOT") or "data")


def load_digits(record: DatasetRecord, request: LoadRequest) -> TensorImageDataset:
    """scikit-learn's bundled 8x8 digits (values 0..16 scaled to [0, 1]); the last 20% of a
    fixed permutation is the test split. Nothing is downloaded."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    idx = split_indices(len(images), 0.2, request.val_size, request.split)
    return tensor_split(record, request, images, labels, idx)


def _missing_hint(tv_name: str, root: Path, folder: str) -> str:
    return (
        f"{tv_name} not found under {root} (looked for {root / folder}). "
        f'Download it on a machine with internet: python -c "import torchvision; '
        f"torchvision.datasets.{tv_name}('{root}', download=True)\", or point --data-root "
        "(or $NCSN_DATA_ROOT) at the folder that holds it"
    )


def torchvision_dataset(
    tv_name: str, folder: str, root: str | Path | None, download: bool, **kw: Any
) -> Any:
    """Open ``torchvision.datasets.<tv_name>`` under ``root`` (default
    :func:`default_data_root`), whose files lie in ``root/folder``.

    Raises:
        DataError: Missing files (with the download command) or unreadable ones.
    """
    import torchvision.datasets as tvd

    root = Path(root).expanduser() if root is not None else default_data_root()
    try:
        return getattr(tvd, tv_name)(str(root), download=download, **kw)
    except _TV_ERRORS as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, RuntimeError) and "not found" in msg.lower():
            raise DataError(_missing_hint(tv_name, root, folder)) from None
        fix = f"delete the {tv_name} files and download them again"
        raise DataError(f"{tv_name} under {root} could not be read ({msg}); {fix}") from None


def torchvision_loader(
    tv_name: str, folder: str
) -> Callable[[DatasetRecord, LoadRequest], TensorImageDataset]:
    """The loader of a torchvision data set whose ``data`` and ``targets`` fit in memory.

    Args:
        tv_name: The class in ``torchvision.datasets`` (``MNIST``, ``CIFAR10``, ...).
        folder: Where its files lie under the data root (named when they are missing).

    Returns:
        ``load(record, request)``: torchvision's train file holds train and val (the last
        ``val_size`` of a fixed permutation), its test file the test split.
    """

    def load(record: DatasetRecord, request: LoadRequest) -> TensorImageDataset:
        train = request.split != "test"
        ds = torchvision_dataset(tv_name, folder, request.root, request.download, train=train)
        data = torch.as_tensor(np.asarray(ds.data))
        images = (data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)).contiguous()
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        idx = split_indices(len(images), 0.0, request.val_size, request.split) if train else None
        return tensor_split(record, request, images, labels, idx)

    load.__doc__ = f"torchvision's {tv_name} (files under ``root/{folder}``)."
    return load
