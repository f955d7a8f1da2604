"""CelebA: torchvision's aligned faces, centre-cropped to 140 px and resized when read."""

from __future__ import annotations

from pathlib import Path

from ncsn.data.datasets import ImageFileDataset
from ncsn.data.records import DatasetRecord, LoadRequest
from ncsn.data.splits import split_indices
from ncsn.data.torchvision_sets import torchvision_dataset

__all__ = ["CROP", "load_celeba"]

CROP = 140  # the central square the NCSN papers keep of the 178x218 aligned faces


def load_celeba(record: DatasetRecord, request: LoadRequest) -> ImageFileDataset:
    """CelebA's files (unlabelled) under ``root/celeba``: its train partition holds train and
    val (the last ``val_size`` of a fixed permutation), its test partition the test split."""
    part = "test" if request.split == "test" else "train"
    base = torchvision_dataset(
        "CelebA", "celeba", request.root, request.download, split=part, target_type=[]
    )
    folder = Path(base.root) / base.base_folder / "img_align_celeba"
    files = [folder / f for f in base.filename]
    if request.split != "test":
        files = [files[i] for i in split_indices(len(files), 0.0, request.val_size, request.split)]
    return ImageFileDataset(
        files,
        [-1] * len(files),
        channels=request.channels,
        image_size=request.image_size,
        name=record.name,
        crop=CROP,
    )
