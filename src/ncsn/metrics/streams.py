"""Image sets as streams of batches, so metrics over 50,000 images hold one batch at a time.

An :class:`ImageBatches` knows its size and image shape up front and yields float32 batches
in [0, 1] on demand. Sources: a tensor, an ``.npz`` file (read incrementally from the zip, its
header and value range checked before any work), a data set split (a fixed random subset),
or a sampler. :func:`content_digest` hashes the uint8 images, which is what the Inception
network sees, so cached statistics follow the content rather than a path or a name.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ncsn.errors import DataError

__all__ = ["ImageBatches", "content_digest", "from_dataset", "from_npz", "from_tensor"]

_RANGE_TOL = 1e-3


class ImageBatches:
    """A re-iterable set of ``n`` images of shape ``(C, H, W)``, produced batch by batch.

    Args:
        n: Number of images.
        shape: ``(C, H, W)``.
        make: ``make(batch_size)`` returns an iterator of float32 (B, C, H, W) in [0, 1].
        source: What the images are (recorded in reports).
        once: The source can be iterated only once (a sampler).
    """

    def __init__(
        self,
        n: int,
        shape: tuple[int, int, int],
        make: Callable[[int], Iterator[torch.Tensor]],
        source: dict,
        once: bool = False,
    ) -> None:
        self.n, self.shape, self._make, self.source, self.once = int(n), shape, make, source, once
        self._used = False

    def __len__(self) -> int:
        return self.n

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Iterate over the images in batches of at most ``batch_size``."""
        if self.once and self._used:
            raise RuntimeError("this image stream can be read only once")
        self._used = True
        return self._make(int(batch_size))

    def head(self, n: int) -> ImageBatches:
        """The first ``n`` images (all when ``n`` is not smaller)."""
        n = min(int(n), self.n)

        def make(bs: int) -> Iterator[torch.Tensor]:
            left = n
            for batch in self.batches(bs):
                if left <= 0:
                    break
                yield batch[:left]
                left -= len(batch)

        return ImageBatches(n, self.shape, make, self.source, self.once)

    def tensor(self, batch_size: int = 1000) -> torch.Tensor:
        """All images as one tensor (N, C, H, W) (for metrics that need them all at once)."""
        parts = list(self.batches(batch_size))
        return torch.cat(parts) if parts else torch.empty(0, *self.shape)


def from_tensor(images: torch.Tensor, source: dict | None = None) -> ImageBatches:
    """Wrap a tensor (N, C, H, W) in [0, 1]."""

    def make(bs: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(images), bs):
            yield images[start : start + bs]

    return ImageBatches(len(images), tuple(images.shape[1:]), make, source or {"kind": "tensor"})


def _npz_member(path: Path, key: str) -> tuple[zipfile.ZipFile, str]:
    if not path.is_file():
        raise DataError(f"samples file {path} not found; give an .npz with a '{key}' array")
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise DataError(
                    f"{path} is a .npy file (a single array), not an .npz archive; save it with "
                    f"numpy.savez(path, {key}=array)"
                )
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} ({e}); give an .npz written by ncsn") from None
    names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    if key not in names:
        archive.close()
        raise DataError(
            f"{path} has no '{key}' array (keys: {', '.join(names) or 'none'}); "
            f"save images under the key '{key}'"
        )
    return archive, f"{key}.npy"


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from an open ``.npy`` stream (left after the header)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    return read(f)


def _npz_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    archive, member = _npz_member(path, key)
    with archive, archive.open(member) as f:
        try:
            shape, fortran, dtype = _read_header(f)
        except ValueError as e:
            raise DataError(f"{path}: cannot read '{key}' ({e}); give a valid .npz") from None
    return shape, dtype, fortran


def _npz_chunks(path: Path, key: str, shape, dtype, bs: int) -> Iterator[np.ndarray]:
    """Raw rows of the array, ``bs`` at a time, read sequentially from the zip member."""
    archive, member = _npz_member(path, key)
    row = int(np.prod(shape[1:])) * dtype.itemsize
    with archive, archive.open(member) as f:
        _read_header(f)
        for start in range(0, shape[0], bs):
            count = min(bs, shape[0] - start)
            raw = f.read(count * row)
            if len(raw) != count * row:
                raise DataError(f"{path}: '{key}' is truncated; rewrite the file")
            yield np.frombuffer(raw, dtype=dtype).reshape(count, *shape[1:])


def _as_unit_float(chunk: np.ndarray) -> torch.Tensor:
    if chunk.dtype == np.uint8:
        return torch.from_numpy(chunk.astype(np.float32) / 255.0)
    return torch.from_numpy(np.clip(chunk.astype(np.float32), 0.0, 1.0))


def _check_npz_values(path: Path, key: str, shape, dtype, bs: int) -> None:
    """One pass over a float array: no NaN/inf, values in [0, 1] (up to rounding)."""
    lo, hi = np.inf, -np.inf
    for chunk in _npz_chunks(path, key, shape, dtype, bs):
        if not np.isfinite(chunk).all():
            raise DataError(f"{path}: '{key}' contains NaN or infinite values; regenerate it")
        if chunk.size:
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise DataError(f"{path}: '{key}' ranges over [{lo:.3g}, {hi:.3g}]; expected [0, 1]")


def from_npz(path: str | Path, key: str = "samples", check_batch: int = 1000) -> ImageBatches:
    """Stream the images of an ``.npz`` file (as written by ``ncsn sample --save-npz``).

    The array must be (N, C, H, W) with N >= 2 and C in {1, 3}, uint8 (0..255) or float in
    [0, 1]; all of that is checked here, before any metric runs (float values in one
    streamed pass).

    Raises:
        DataError: Missing or unreadable file, missing key, wrong shape, dtype or range.
    """
    path = Path(path)
    shape, dtype, fortran = _npz_header(path, key)
    if len(shape) != 4 or shape[1] not in (1, 3) or shape[0] < 2 or min(shape[2:]) < 1:
        raise DataError(
            f"{path}: '{key}' has shape {shape}; expected (N, C, H, W) with N >= 2 and C = 1 or 3"
        )
    if dtype != np.uint8 and dtype.kind != "f":
        raise DataError(f"{path}: '{key}' has dtype {dtype}; expected uint8 or float in [0, 1]")
    if fortran:
        raise DataError(f"{path}: '{key}' is stored in Fortran order; save a C-order array")
    if dtype.kind == "f":
        _check_npz_values(path, key, shape, dtype, check_batch)

    def make(bs: int) -> Iterator[torch.Tensor]:
        for chunk in _npz_chunks(path, key, shape, dtype, bs):
            yield _as_unit_float(chunk)

    return ImageBatches(shape[0], tuple(shape[1:]), make, {"file": str(path), "key": key})


def subset_indices(total: int, n: int | None) -> np.ndarray:
    """The reference subset: all indices, or ``n`` of them fixed by seed 0 (sorted)."""
    if n is None or int(n) >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).choice(total, int(n), replace=False))


def from_dataset(ds, n: int | None = None, source: dict | None = None) -> ImageBatches:
    """Stream a data set split (or a fixed random subset of ``n`` of its images).

    Args:
        ds: A data set from :func:`ncsn.data.get_dataset` (or anything ``wrap_dataset`` takes).
        n: Subset size (seed 0, the same subset as :func:`ncsn.metrics.evaluate`'s), or all.
        source: Description for reports.
    """
    from ncsn.data import wrap_dataset

    ds = wrap_dataset(ds)
    idx = subset_indices(len(ds), n)
    shape = tuple(int(s) for s in ds[0][0].shape)

    def make(bs: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(idx), bs):
            yield ds.get_batch(idx[start : start + bs])[0]

    return ImageBatches(len(idx), shape, make, source or {"kind": type(ds).__name__})


def content_digest(images: ImageBatches, batch_size: int = 1000) -> str:
    """SHA-256 of the images as the FID network sees them (uint8, in order) and their shape."""
    from ncsn.metrics.inception_net import quantize_images

    h = hashlib.sha256(f"{images.n}x{'x'.join(map(str, images.shape))}|".encode())
    for batch in images.batches(batch_size):
        h.update(quantize_images(batch, rgb=False).contiguous().numpy().tobytes())
    return h.hexdigest()
