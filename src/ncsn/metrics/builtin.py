"""The shipped metrics, one registered function each (see :mod:`ncsn.metrics.registry`).

* ``fid``, ``is``, ``kid``: FID Inception-v3 features (:mod:`ncsn.metrics.inception_metrics`),
  one network pass shared by the three; they stream samples batch by batch;
* ``dfid``, ``dkid``, ``dis``, ``classes``: the shipped digit classifiers (``digits`` and
  ``mnist``; :mod:`ncsn.metrics.domain`), one classifier pass shared by the four;
* ``dsm``: held-out annealed DSM loss on the test split with fixed noise
  (:mod:`ncsn.metrics.heldout`);
* ``nn``: nearest training images of each sample (:mod:`ncsn.metrics.nn_metric`);
* ``bpd``: bits per dimension of the test split through the probability-flow ODE
  (:mod:`ncsn.metrics.likelihood`).

Registration order is the order of :func:`~ncsn.metrics.registry.metric_names`.
"""

from __future__ import annotations

import numpy as np
import torch

from ncsn.metrics.context import EvalContext
from ncsn.metrics.registry import CLASSIFIER, DATA, MODEL, REFERENCE, SAMPLES, register_metric

__all__: list[str] = []


# Checks run before any sample is drawn: each opens what its metric will read (cached in the
# context), so a missing data set, classifier or weights file fails in seconds, not after the
# sampling.


def _require_logits(ctx: EvalContext) -> None:
    ctx.extractor.require_logits()


def _open_inception_reference(ctx: EvalContext) -> None:
    ctx.extractor  # noqa: B018 (loads the weights)
    if ctx.reference is None:
        ctx.split(ctx.ref_split)


def _open_classifier(ctx: EvalContext) -> None:
    ctx.classifier  # noqa: B018


def _open_classifier_reference(ctx: EvalContext) -> None:
    ctx.classifier  # noqa: B018
    ctx.split(ctx.ref_split)


def _open_test(ctx: EvalContext) -> None:
    ctx.split("test")


def _open_train_test(ctx: EvalContext) -> None:
    ctx.split("train")
    ctx.split("test")


@register_metric("fid", needs=(SAMPLES, REFERENCE), streams=True, check=_open_inception_reference)
def fid(ctx: EvalContext) -> float:
    """Fréchet Inception distance to the reference set."""
    return ctx.inception["fid"]


@register_metric("is", needs=(SAMPLES,), streams=True, check=_require_logits)
def inception_score(ctx: EvalContext) -> dict:
    """Inception Score ``{"mean", "std"}`` over 10 splits."""
    return ctx.inception["is"]


@register_metric("kid", needs=(SAMPLES, REFERENCE), streams=True, check=_open_inception_reference)
def kid(ctx: EvalContext) -> dict:
    """Kernel Inception distance ``{"mean", "std"}`` to the reference set."""
    return ctx.inception["kid"]


@register_metric("dfid", needs=(SAMPLES, DATA, CLASSIFIER), check=_open_classifier_reference)
def dfid(ctx: EvalContext) -> float:
    """Fréchet distance in the digit classifier's feature space."""
    return ctx.domain["dfid"]


@register_metric("dkid", needs=(SAMPLES, DATA, CLASSIFIER), check=_open_classifier_reference)
def dkid(ctx: EvalContext) -> dict:
    """KID in the digit classifier's feature space."""
    return ctx.domain["dkid"]


@register_metric("dis", needs=(SAMPLES, DATA, CLASSIFIER), check=_open_classifier)
def dis(ctx: EvalContext) -> dict:
    """Inception Score computed with the digit classifier."""
    return ctx.domain["dis"]


@register_metric("classes", needs=(SAMPLES, DATA, CLASSIFIER), check=_open_classifier)
def classes(ctx: EvalContext) -> dict:
    """Histogram of the classifier's predicted classes."""
    return ctx.domain["classes"]


@register_metric("dsm", needs=(MODEL, DATA), check=_open_test)
def dsm(ctx: EvalContext) -> dict:
    """Held-out annealed DSM loss of the score network on the test split, fixed noise."""
    from ncsn.metrics.heldout import heldout_dsm_loss

    test = ctx.images("test", ctx.n_ref)
    if ctx.dsm_transform is not None:
        test = ctx.dsm_transform(test)
    sigmas = torch.as_tensor(np.asarray(ctx.sigmas, dtype=np.float32))
    out = heldout_dsm_loss(
        ctx.score_fn, test, sigmas, seed=ctx.seed, batch_size=ctx.batch_size,
        device=ctx.device, progress=ctx.progress,
    )  # fmt: skip
    ctx.protocol["dsm"] = {"split": "test", "n": int(test.shape[0]), "seed": int(ctx.seed)}
    return out


@register_metric("nn", needs=(SAMPLES, DATA), check=_open_train_test)
def nn(ctx: EvalContext) -> dict:
    """Nearest training images of each sample, held-out test images as the yardstick."""
    from ncsn.metrics.nn_metric import classifier_features, nn_metric

    features = classifier_features(ctx.dataset, ctx.device, ctx.batch_size)
    train = ctx.images("train", None)
    out = nn_metric(
        ctx.samples, train, ctx.images("test", ctx.n_ref), features, ctx.nn_k,
        ctx.batch_size, ctx.out_dir, ctx.nn_grid_name, ctx.device,
    )  # fmt: skip
    space = "pixel L2" + (", classifier features" if features else "")
    ctx.protocol["nn"] = {"split": "train", "space": space, "n": len(train)}
    return out


@register_metric("bpd", needs=(MODEL, DATA), check=_open_test)
def bpd(ctx: EvalContext) -> dict:
    """Bits per dimension of the test split through the probability-flow ODE."""
    from ncsn.metrics.likelihood import bits_per_dim

    sig = np.asarray(ctx.sigmas, dtype=np.float64)
    test = ctx.images("test", ctx.bpd_n if ctx.bpd_n is not None else ctx.n_ref)
    out = bits_per_dim(
        ctx.score_fn, test, sigma_min=float(sig.min()), sigma_max=float(sig.max()),
        logit=ctx.logit_transform, seed=ctx.seed, batch_size=ctx.batch_size,
        device=ctx.device, progress=ctx.progress,
    )  # fmt: skip
    ctx.protocol["bpd"] = {"split": "test", "n": int(test.shape[0]), "seed": int(ctx.seed)}
    return out
