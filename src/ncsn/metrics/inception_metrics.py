"""FID, KID and Inception Score of a streamed image set against a streamed reference set.

Both sets pass through the FID Inception network one batch at a time; only the 2048-d
features (and class probabilities for IS) are kept. Reference statistics are cached under the
SHA-256 of the reference images (:mod:`ncsn.metrics.cache`). Published FIDs use 50,000
samples; below that the report says so (FID is biased upwards at small N).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

from ncsn.metrics.cache import cached_reference_stats
from ncsn.metrics.fid import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from ncsn.metrics.inception import InceptionExtractor
from ncsn.metrics.streams import ImageBatches, content_digest

__all__ = ["INCEPTION_METRICS", "PUBLISHED_N", "SmallSampleWarning", "inception_metrics"]

log = logging.getLogger(__name__)

INCEPTION_METRICS = ("fid", "is", "kid")
PUBLISHED_N = 50_000


class SmallSampleWarning(UserWarning):
    """Inception metrics from fewer than 50,000 samples: not comparable to published numbers."""


def small_sample_note(n: int) -> str | None:
    """The label of Inception metrics computed from ``n`` samples (None at 50,000 or more)."""
    if n >= PUBLISHED_N:
        return None
    return (
        f"N = {n:,} < {PUBLISHED_N:,}: FID/KID/IS from fewer samples are biased (FID upwards) "
        f"and NOT comparable to published numbers, which use {PUBLISHED_N:,} samples"
    )


def _reference_stats(
    extractor: InceptionExtractor,
    reference: ImageBatches,
    batch_size: int,
    progress: bool,
    use_cache: bool,
) -> tuple[dict, dict]:
    """Cached (or computed) mu, sigma and KID features of the reference set, and its record."""
    digest = content_digest(reference)

    def compute():
        batches = reference.batches(batch_size)
        desc = "inception: reference"
        return extractor.extract(
            batches, total=len(reference), progress=progress, desc=desc, probs=False
        )[0]

    stats, path = cached_reference_stats(
        digest, len(reference), extractor.extractor_id, compute, use_cache=use_cache
    )
    record = {**reference.source, "n": len(reference), "content_sha256": digest}
    record["stats_cache"] = str(path) if path else None
    return stats, record


def inception_metrics(
    samples: ImageBatches,
    names: Sequence[str],
    extractor: InceptionExtractor,
    reference: ImageBatches | None,
    *,
    batch_size: int = 100,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = True,
    use_cache: bool = True,
) -> tuple[dict, dict]:
    """FID / KID / IS of ``samples``.

    Args:
        samples: The images to score.
        names: Subset of :data:`INCEPTION_METRICS`.
        extractor: The Inception network (with its classifier layer when ``is`` is asked).
        reference: The reference images (needed for ``fid`` and ``kid``).
        batch_size: Images per forward pass.
        seed: Seed of the KID subsets.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size.
        progress: Show progress bars.
        use_cache: Read/write cached reference statistics.

    Returns:
        ``(result, protocol)``: ``result`` has ``fid`` (float), ``kid`` and ``is``
        (``{"mean", "std"}``) as asked; ``protocol`` describes the weights (hash), N, the
        reference set (source, size, content hash, cache file) and the small-N label.
    """
    if "is" in names:
        extractor.require_logits()
    n = len(samples)
    note = small_sample_note(n)
    if note:
        warnings.warn(note, SmallSampleWarning, stacklevel=3)
    feats, probs = extractor.extract(
        samples.batches(batch_size),
        total=n,
        progress=progress,
        desc="inception: samples",
        probs="is" in names,
    )
    result: dict = {}
    protocol = {**extractor.info, "extractor_id": extractor.extractor_id, "n": n}
    comparable = note is None and bool(extractor.info.get("standard"))
    protocol |= {"published_n": PUBLISHED_N, "comparable_to_published": comparable}
    protocol["note"] = note
    if "fid" in names or "kid" in names:
        stats, protocol["reference"] = _reference_stats(
            extractor, reference, batch_size, progress, use_cache
        )
        if "fid" in names:
            result["fid"] = frechet_distance(
                *feature_statistics(feats), stats["mu"], stats["sigma"]
            )
        if "kid" in names:
            mean, std = kernel_inception_distance(
                feats, stats["features"], kid_subsets, kid_subset_size, generator=seed
            )
            result["kid"] = {"mean": mean, "std": std}
    if "is" in names:
        mean, std = inception_score(probs, splits=10)
        result["is"] = {"mean": mean, "std": std}
    return result, protocol
