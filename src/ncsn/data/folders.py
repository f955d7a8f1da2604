"""Image folders as data sets: flat, or one sub-folder per class (labels in sorted order).

Every file is decoded when a split is loaded (each file once; the 8-bit pixels are kept when
the split fits in 1 GiB), so a damaged file is reported, naming it, before training starts.
"""

from __future__ import annotations

from pathlib import Path

from ncsn.data.datasets import ImageFileDataset
from ncsn.data.records import DatasetInfo
from ncsn.data.splits import split_indices
from ncsn.decode import is_colour, open_image
from ncsn.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "scan_image_folder", "load_folder", "folder_info"]

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
_TEST_FRACTION = 0.1


def _list_images(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )
    if not files:
        raise DataError(
            f"image folder {folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}); "
            "point to a folder of images or of class sub-folders"
        )
    classes = sorted({p.relative_to(folder).parts[0] for p in files if p.parent != folder})
    index = {c: i for i, c in enumerate(classes)}
    labels = [-1 if p.parent == folder else index[p.relative_to(folder).parts[0]] for p in files]
    return files, labels, classes


def _common_side(folder: Path, sizes: dict[tuple[int, int], Path]) -> int:
    """The one square side all images share, or a DataError asking for an image size."""
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise DataError(
            f"images in {folder} differ in size: {f1} is {s1[0]}x{s1[1]}, {f2} is "
            f"{s2[0]}x{s2[1]}; give an image size to resize them (ncsn train --set "
            "data.image_size=N)"
        )
    (w, h), f1 = next(iter(sizes.items()))
    if w != h:
        raise DataError(
            f"images in {folder} are {w}x{h}, not square (e.g. {f1}); pass "
            "an image size to crop and resize them (ncsn train --set data.image_size=N)"
        )
    return w


def scan_image_folder(
    folder: Path, image_size: int | None, channels: int | None
) -> tuple[list[Path], list[int], list[str], int, int]:
    """List an image folder (flat or one sub-folder per class) and check its images' headers.

    Args:
        folder: The folder; files in hidden folders and with unknown extensions are skipped.
        image_size: The requested side; when ``None`` all images must share one square size.
        channels: The requested channels; when ``None``, 3 if any image is colour else 1.

    Returns:
        ``(files, labels, classes, channels, image_size)``; labels index the sorted class
        sub-folders, −1 for files directly in ``folder``.

    Raises:
        DataError: No images, an unreadable file, or differing sizes without ``image_size``.
    """
    files, labels, classes = _list_images(folder)
    sizes: dict[tuple[int, int], Path] = {}
    colour = False
    for path in files:
        with open_image(path) as im:
            sizes.setdefault(im.size, path)
            colour = colour or (channels is None and is_colour(im))
    side = _common_side(folder, sizes) if image_size is None else image_size
    return files, labels, classes, channels or (3 if colour else 1), int(side)


def folder_info(folder: Path, image_size: int | None, channels: int | None) -> DatasetInfo:
    """The :class:`DatasetInfo` of an image folder (file headers only)."""
    _, _, classes, c, size = scan_image_folder(folder, image_size, channels)
    return DatasetInfo(f"folder:{folder}", c, size, len(classes))


def load_folder(
    folder: Path, split: str, image_size: int | None, channels: int | None, val_size
) -> ImageFileDataset:
    """One split of an image folder (test: the last 10% of a fixed permutation; ``all``:
    every file), decoded now so that a damaged file is reported before any training step."""
    files, labels, classes, c, size = scan_image_folder(folder, image_size, channels)
    idx = split_indices(len(files), _TEST_FRACTION, val_size, split)
    return ImageFileDataset(
        [files[i] for i in idx],
        [labels[i] for i in idx],
        channels=c,
        image_size=size,
        name=f"folder:{folder}",
        num_classes=len(classes),
    ).decode_all()
