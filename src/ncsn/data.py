"""Data sets for NCSN: items are ``(image, label)`` with ``image`` float32 (C, H, W) in [0, 1].

Names understood by :func:`get_dataset`: ``digits`` (scikit-learn's bundled 8x8 digits, no
download), ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeba`` (torchvision files under
``root``) and ``folder:PATH`` (or the path of an existing folder) for any image folder. Small
data sets are held in memory as one uint8/float tensor; :func:`as_tensor` hands a whole split
to the trainer without DataLoader overhead.

Image folders are decoded in full when a split is loaded (each file once; the 8-bit pixels are
kept when the split fits in 1 GiB), so a damaged file is reported, naming it, before training
starts. 16-bit images are scaled by 1/65535, float images must lie in [0, 1], transparency is
composited on white and images beyond PIL's decompression-bomb limit are refused
(:func:`ncsn.imaging.to_8bit`, :func:`ncsn.imaging.open_image`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ncsn.errors import ConfigError, DataError
from ncsn.imaging import (
    convert_channels,
    load_image,
    resize_images,
    scan_image_folder,
    to_image_tensor,
)
from ncsn.transforms import postprocess, preprocess, random_hflip  # noqa: F401 (re-exported)

DATASET_NAMES = ("digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder:PATH")
SPLITS = ("train", "val", "test", "all")
_ALIASES = {
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
    "cifar-10": "cifar10",
}
# name -> (torchvision class, folder it reads under root, channels, size, classes, train flips)
_BUILTIN = {
    "digits": (None, "", 1, 8, 10, False),
    "mnist": ("MNIST", "MNIST/raw", 1, 28, 10, False),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", 1, 28, 10, False),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", 3, 32, 10, True),
    "celeba": ("CelebA", "celeba", 3, 32, 0, True),
}
_CACHE_LIMIT_BYTES = 1 << 30
_VAL_DEFAULT = 0.05
_SEED = 0


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


class ImageDataset(Dataset):
    """Base of the library's data sets: ``(image, label)`` items plus metadata attributes.

    Attributes:
        name, channels, image_size, num_classes: As in :class:`DatasetInfo`.
        random_flip: Whether items are flipped left-right at random (augmentation).
        in_memory: Whether the whole split is held as a tensor (cheap :func:`as_tensor`).
    """

    name: str = ""
    channels: int = 1
    image_size: int = 0
    num_classes: int = 0
    random_flip: bool = False
    in_memory: bool = False

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self._load(int(index))
        if self.random_flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return image, label

    def get_batch(
        self, indices: Any, *, augment: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Several items at once.

        Args:
            indices: Sequence or 1-D tensor of item indices.
            augment: Apply random flips when ``random_flip`` is set.
            generator: Optional generator for the flips.

        Returns:
            ``(images (B, C, H, W) float32, labels (B,) int64)``.
        """
        idx = [int(i) for i in indices]
        items = [self._load(i) for i in idx]
        empty = torch.empty(0, self.channels, self.image_size, self.image_size)
        images = torch.stack([x for x, _ in items]) if items else empty
        labels = torch.tensor([y for _, y in items], dtype=torch.int64)
        return self._augment(images, augment, generator), labels

    def _augment(self, x: torch.Tensor, augment: bool, generator: torch.Generator | None):
        return random_hflip(x, generator=generator) if augment and self.random_flip else x


class TensorImageDataset(ImageDataset):
    """An in-memory split: images (N, C, H, W) as uint8 (0..255) or float in [0, 1], labels (N,).

    Args:
        images: Image tensor; uint8 is kept as is (4x less memory) and scaled on access.
        labels: Integer labels (−1 when unknown); ``None`` means all −1.
        name: Data set name.
        num_classes: Number of labels.
        random_flip: Flip items left-right at random on access.

    Attributes:
        indices: Positions of the items in the source split (set by :func:`get_dataset`).
    """

    in_memory = True
    indices: torch.Tensor | None = None

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        name: str = "tensor",
        num_classes: int = 0,
        random_flip: bool = False,
    ) -> None:
        if images.ndim != 4:
            raise DataError(
                f"data set {name}: images must be (N, C, H, W), got {tuple(images.shape)}"
            )
        self.images = images.contiguous()
        n = images.shape[0]
        self.labels = torch.full((n,), -1, dtype=torch.int64) if labels is None else labels.long()
        self.name, self.num_classes, self.random_flip = name, num_classes, random_flip
        self.channels, self.image_size = int(images.shape[1]), int(images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @staticmethod
    def _to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clone()

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        return self._to_float(self.images[index]), int(self.labels[index])

    def get_batch(self, indices: Any, *, augment: bool = True, generator=None):
        idx = torch.as_tensor(indices, dtype=torch.int64)
        x = self._to_float(self.images[idx])
        return self._augment(x, augment, generator), self.labels[idx].clone()


class ImageFileDataset(ImageDataset):
    """Images decoded lazily from files with PIL (and cached when they fit in 1 GiB).

    Args:
        files: Image files.
        labels: One label per file (−1 when unknown).
        channels: 1 (converted to "L") or 3 (converted to "RGB").
        image_size: Output side; non-square images are centre-cropped to a square first.
        name: Data set name.
        num_classes: Number of labels.
        random_flip: Flip items left-right at random on access.
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
        random_flip: bool = False,
        crop: int | None = None,
        cache: bool | None = None,
    ) -> None:
        self.files, self.labels = list(files), list(labels)
        self.channels, self.image_size, self.name = channels, image_size, name
        self.num_classes, self.random_flip, self.crop = num_classes, random_flip, crop
        if cache is None:
            cache = len(files) * channels * image_size**2 <= _CACHE_LIMIT_BYTES
        self._cache: list[torch.Tensor | None] | None = [None] * len(files) if cache else None

    def __len__(self) -> int:
        return len(self.files)

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
            if self._cache is None or self._cache[i] is None:
                image = load_image(
                    self.files[i], channels=self.channels, size=self.image_size, crop=self.crop
                )
                if self._cache is not None:
                    self._cache[i] = image
        return self

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        cached = self._cache[index] if self._cache is not None else None
        if cached is None:
            cached = load_image(
                self.files[index], channels=self.channels, size=self.image_size, crop=self.crop
            )
            if self._cache is not None:
                self._cache[index] = cached
        return cached.float().div_(255.0), self.labels[index]


class WrappedDataset(ImageDataset):
    """Adapts a user data set (see :func:`wrap_dataset`) to the ``(image, label)`` convention."""

    def __init__(self, base: Dataset, channels: int, height: int, width: int) -> None:
        self.base, self.channels, self.image_size = base, channels, height
        self.height, self.width, self.name = height, width, type(base).__name__

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        return _convert_item(self.base[index], index)


def default_data_root() -> Path:
    """Returns:
    ``$NCSN_DATA_ROOT`` when set, else ``./data``.
    """
    return Path(os.environ.get("NCSN_DATA_ROOT") or "data")


def get_dataset(
    name: str = "digits",
    *,
    root: str | Path | None = None,
    split: str = "train",
    image_size: int | None = None,
    random_flip: bool | None = None,
    channels: int | None = None,
    val_size: int | float | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load one split of a named data set or an image folder.

    Args:
        name: ``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeba``, ``folder:PATH``
            or the path of an existing folder (known names win; use ``folder:`` to force).
        root: Folder holding torchvision data sets (default :func:`default_data_root`).
        split: ``train``, ``val``, ``test`` (or ``all`` for digits and folders).
        image_size: Resize images to this side (default: the data set's own size).
        random_flip: Random left-right flips; default on for the cifar10/celeba train split.
        channels: Convert to 1 (gray) or 3 (RGB) channels (default: the data set's own).
        val_size: Validation part of the training data: a whole number of images, a
            fraction in [0, 1) or 0 for none (default 5%).
        download: Let torchvision download missing files (needs internet).

    Returns:
        An :class:`ImageDataset` with ``channels``, ``image_size`` and ``num_classes``.

    Raises:
        DataError: Unknown name or split, missing or unreadable files.
        ConfigError: Invalid ``image_size``, ``channels`` or ``val_size``.
    """
    key, folder = _parse_name(name)
    split = str(split).lower()
    split = {"valid": "val", "validation": "val"}.get(split, split)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for data set {name}; use one of {SPLITS}")
    _check_size_channels(image_size, channels)
    if folder is not None:
        return _folder_dataset(folder, split, image_size, random_flip, channels, val_size)
    tv_name, _, native_c, native_size, num_classes, flips = _BUILTIN[key]
    if split == "all" and key != "digits":
        raise DataError(f"split 'all' is for digits and folders, not {key}; use train/val/test")
    flip = (flips and split == "train") if random_flip is None else bool(random_flip)
    size = image_size or native_size
    if key == "celeba":
        return _celeba(root, split, size, flip, channels or 3, val_size, download)
    if key == "digits":
        images, labels, idx = _digits(split, val_size)
    else:
        images, labels = _torchvision_tensors(tv_name, root, split != "test", download)
        idx = _split_indices(len(images), 0.0, val_size, split) if split != "test" else None
    if idx is not None:
        images, labels = images[torch.as_tensor(idx)], labels[torch.as_tensor(idx)]
    _check_fits_in_memory(key, len(images), channels or native_c, size, images.element_size())
    images = resize_images(convert_channels(images, channels or native_c), size)
    ds = TensorImageDataset(images, labels, name=key, num_classes=num_classes, random_flip=flip)
    ds.indices = torch.as_tensor(idx) if idx is not None else torch.arange(len(ds))
    return ds


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
    key, folder = _parse_name(name)
    _check_size_channels(image_size, channels)
    if folder is not None:
        scan = scan_image_folder(folder, image_size, channels)
        return DatasetInfo(f"folder:{folder}", scan[3], scan[4], len(scan[2]))
    _, _, c, size, k, _ = _BUILTIN[key]
    return DatasetInfo(key, channels or c, image_size or size, k)


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
    return WrappedDataset(ds, int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))


def as_tensor(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as tensors, without augmentation.

    Args:
        ds: A data set from :func:`get_dataset` or anything :func:`wrap_dataset` accepts.
            In-memory splits are returned directly; others are decoded item by item.

    Returns:
        ``(images (N, C, H, W) float32 in [0, 1], labels (N,) int64)``. Apply flips yourself
        (see :func:`random_hflip`) when ``ds.random_flip`` is set.
    """
    ds = wrap_dataset(ds)
    if isinstance(ds, TensorImageDataset):
        return ds._to_float(ds.images), ds.labels.clone()
    return ds.get_batch(range(len(ds)), augment=False)


# ----------------------------------------------------------------------------- helpers


def _parse_name(name: str) -> tuple[str, Path | None]:
    text = str(name).strip()
    key = _ALIASES.get(text.lower(), text.lower())
    if key in _BUILTIN:
        return key, None
    if text.lower().startswith("folder:"):
        folder = Path(text[len("folder:") :]).expanduser()
        if not folder.is_dir():
            raise DataError(f"image folder {folder} does not exist or is not a folder")
        return "folder", folder
    if Path(text).expanduser().is_dir():
        return "folder", Path(text).expanduser()
    raise DataError(
        f"unknown data set {name!r}; use one of {', '.join(DATASET_NAMES)} "
        "or the path of an existing image folder"
    )


def _check_size_channels(image_size: int | None, channels: int | None) -> None:
    ok = isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool)
    if image_size is not None and not (ok and image_size >= 1):
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}")


def _check_fits_in_memory(name: str, n: int, channels: int, size: int, itemsize: int) -> None:
    """Refuse a resize that cannot fit in memory (the result plus one float chunk)."""
    from ncsn.memory import available_bytes, format_bytes

    pixels = channels * size * size
    need = n * pixels * itemsize + 2 * min(n, 4096) * pixels * 4
    free = available_bytes()
    if free is not None and need > free:
        raise DataError(
            f"data set {name}: {n} images at image_size {size} need {format_bytes(need)} in "
            f"memory, but {format_bytes(free)} is free; use a smaller data.image_size"
        )


def _n_val(val_size: int | float | None, pool: int) -> int:
    v = _VAL_DEFAULT if val_size is None else val_size
    bad = isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v >= 0
    if bad or (float(v) > 1 and not float(v).is_integer()):
        raise ConfigError(
            f"val_size must be a fraction in [0, 1) or a whole number of images, got {v!r}"
        )
    n = int(round(float(v) * pool)) if float(v) < 1 else int(v)
    if n >= pool:
        raise ConfigError(f"val_size={v!r} leaves no training data ({pool} items); use less")
    return n


def _split_indices(n: int, test_frac: float, val_size: Any, split: str) -> np.ndarray:
    """Sorted indices of ``split`` from a fixed permutation: last ``test_frac`` is test, the
    last ``val_size`` of the rest is val."""
    if split == "all":
        return np.arange(n)
    perm = np.random.RandomState(_SEED).permutation(n)
    n_test = int(round(test_frac * n))
    pool = perm[: n - n_test]
    n_val = _n_val(val_size, len(pool))
    parts = {"test": perm[n - n_test :], "val": pool[len(pool) - n_val :]}
    parts["train"] = pool[: len(pool) - n_val]
    if len(parts[split]) == 0:
        if split != "val":
            hint = "use the split 'all'"
        elif float(_VAL_DEFAULT if val_size is None else val_size) == 0:
            hint = "data.val_size is 0, so nothing is held out; use the train or test split"
        else:
            hint = f"data.val_size = {val_size} rounds to no image; use a larger data.val_size"
        raise DataError(f"the {split} split is empty ({n} items in all); {hint}")
    return np.sort(parts[split])


def _digits(split: str, val_size: Any) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return images, labels, _split_indices(len(images), 0.2, val_size, split)


def _missing_hint(tv_name: str, root: Path) -> str:
    sub = next(v[1] for v in _BUILTIN.values() if v[0] == tv_name)
    return (
        f"{tv_name} not found under {root} (looked for {root / sub}). "
        f'Download it on a machine with internet: python -c "import torchvision; '
        f"torchvision.datasets.{tv_name}('{root}', download=True)\", or point --data-root "
        "(or $NCSN_DATA_ROOT) at the folder that holds it"
    )


def _torchvision_base(tv_name: str, root: str | Path | None, download: bool, **kw: Any):
    import torchvision.datasets as tvd

    root = Path(root).expanduser() if root is not None else default_data_root()
    try:
        return getattr(tvd, tv_name)(str(root), download=download, **kw)
    except (RuntimeError, OSError, ValueError, AssertionError, EOFError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, RuntimeError) and "not found" in msg.lower():
            raise DataError(_missing_hint(tv_name, root)) from None
        fix = f"delete the {tv_name} files and download them again"
        raise DataError(f"{tv_name} under {root} could not be read ({msg}); {fix}") from None


def _torchvision_tensors(
    tv_name: str, root: str | Path | None, train: bool, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    ds = _torchvision_base(tv_name, root, download, train=train)
    data = torch.as_tensor(np.asarray(ds.data))
    data = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    return data.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _celeba(root, split, size, flip, channels, val_size, download) -> ImageFileDataset:
    base = _torchvision_base(
        "CelebA", root, download, split="test" if split == "test" else "train", target_type=[]
    )
    folder = Path(base.root) / base.base_folder / "img_align_celeba"
    files = [folder / f for f in base.filename]
    if split != "test":
        files = [files[i] for i in _split_indices(len(files), 0.0, val_size, split)]
    return ImageFileDataset(
        files,
        [-1] * len(files),
        channels=channels,
        image_size=size,
        name="celeba",
        random_flip=flip,
        crop=140,
    )


def _folder_dataset(folder, split, image_size, random_flip, channels, val_size) -> ImageFileDataset:
    files, labels, classes, c, size = scan_image_folder(folder, image_size, channels)
    idx = _split_indices(len(files), 0.1, val_size, split)
    return ImageFileDataset(
        [files[i] for i in idx],
        [labels[i] for i in idx],
        channels=c,
        image_size=size,
        name=f"folder:{folder}",
        num_classes=len(classes),
        random_flip=bool(random_flip),
    ).decode_all()  # a damaged file is reported now, before any training step


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
