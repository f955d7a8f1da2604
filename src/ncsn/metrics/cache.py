"""On-disk cache of reference feature statistics (mu, sigma and a feature sample for KID).

Reference statistics of an image set cost one pass of the feature extractor over it
(minutes to hours for Inception on a CPU), so they are stored as ``.npz`` files in
``$NCSN_CACHE/fid_stats/`` (default ``~/.cache/ncsn/fid_stats/``), keyed by the SHA-256 of the
images' content (see :func:`ncsn.metrics.streams.content_digest`; not a path or a name, so a
changed folder or a different subset never reuses stale statistics), their number and the
extractor id, and written atomically.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ncsn.io import atomic_write

__all__ = [
    "KID_REFERENCE_MAX",
    "ReferenceStats",
    "cache_dir",
    "cache_key",
    "load_reference_stats",
    "save_reference_stats",
    "cached_reference_stats",
]

log = logging.getLogger(__name__)

CACHE_ENV = "NCSN_CACHE"
# At most this many reference feature vectors are kept for KID (a fixed random subset).
KID_REFERENCE_MAX = 10_000

ReferenceStats = dict[str, np.ndarray]


def cache_dir(create: bool = True) -> Path:
    """The folder of cached reference statistics.

    Args:
        create: Create it when missing.

    Returns:
        ``$NCSN_CACHE/fid_stats`` when the variable is set, else ``~/.cache/ncsn/fid_stats``.
    """
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "ncsn"
    folder = root / "fid_stats"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_key(content: str, n: int, extractor_id: str) -> str:
    """File name for one set of reference statistics.

    Args:
        content: SHA-256 (hex) of the reference images' content.
        n: Number of reference images.
        extractor_id: Identifier of the feature extractor (digest of its weights).

    Returns:
        A file name made of safe characters, ending in ``.npz``.
    """
    raw = f"ref-{content[:20]}-n{int(n)}-{extractor_id}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw) + ".npz"


def save_reference_stats(path: Path, stats: ReferenceStats) -> Path:
    """Write statistics atomically with ``np.savez``.

    Args:
        path: Output ``.npz`` file.
        stats: Arrays to store (``mu``, ``sigma``, ``features``, ...).

    Returns:
        The path written.
    """
    with atomic_write(path, "wb") as f:
        np.savez(f, **stats)
    return path


def load_reference_stats(path: Path) -> ReferenceStats | None:
    """Read statistics written by :func:`save_reference_stats`.

    Args:
        path: The ``.npz`` file.

    Returns:
        The arrays, or ``None`` when the file is missing or unreadable (it is then rebuilt).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stats = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        log.warning("ignoring unreadable statistics cache %s (%s)", path, e)
        return None
    if "mu" not in stats or "sigma" not in stats:
        return None
    return stats


def cached_reference_stats(
    content: str,
    n: int,
    extractor_id: str,
    compute: Callable[[], np.ndarray],
    *,
    use_cache: bool = True,
) -> tuple[ReferenceStats, Path | None]:
    """Load reference statistics from the cache or compute and store them.

    Args:
        content: SHA-256 of the reference images (part of the key).
        n: Number of reference images (part of the key).
        extractor_id: Extractor identifier (part of the key).
        compute: Returns the features (n, D) of the reference images.
        use_cache: Read and write the cache (``False``: always compute, write nothing).

    Returns:
        ``(stats, path)``: ``stats`` holds ``mu``, ``sigma``, ``features`` (at most
        :data:`KID_REFERENCE_MAX` rows, float32); ``path`` is the cache file (``None``
        when not cached).
    """
    from ncsn.metrics.fid import feature_statistics

    path = None
    if use_cache:
        try:
            path = cache_dir() / cache_key(content, n, extractor_id)
        except OSError as e:
            log.warning("statistics cache unavailable (%s); computing without it", e)
        if path is not None:
            stats = load_reference_stats(path)
            if stats is not None:
                log.info("reference statistics from cache %s", path)
                return stats, path
    features = compute()
    mu, sigma = feature_statistics(features)
    keep = features
    if features.shape[0] > KID_REFERENCE_MAX:
        idx = np.sort(np.random.default_rng(0).choice(features.shape[0], KID_REFERENCE_MAX, False))
        keep = features[idx]
    stats = {"mu": mu, "sigma": sigma, "features": np.asarray(keep, dtype=np.float32)}
    if path is not None:
        try:
            save_reference_stats(path, stats)
            log.info("reference statistics cached in %s", path)
        except OSError as e:
            log.warning("could not write statistics cache %s (%s)", path, e)
            path = None
    return stats, path
