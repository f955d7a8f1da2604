"""What a metric function sees: the inputs of one :func:`~ncsn.metrics.evaluate.evaluate` call.

:class:`EvalContext` holds the caller's inputs and options and reads (once) what several
metrics share: data set splits, reference images, the Inception network and its one pass over
the samples (``fid``, ``kid``, ``is``), the domain classifier and its pass (``dfid``, ``dkid``,
``dis``, ``classes``). Metrics write what they used into :attr:`EvalContext.protocol`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from ncsn.metrics.inception import InceptionExtractor
from ncsn.metrics.streams import ImageBatches, from_dataset, from_tensor, subset_indices
from ncsn.models.sigma import ScoreFn

__all__ = ["RANDOM_INIT", "EvalContext", "subset_images"]

RANDOM_INIT = "random-init"


def subset_images(ds, n: int | None) -> torch.Tensor:
    """All images of a data set, or its subset of ``n`` fixed by seed 0; (M, C, H, W)."""
    from ncsn.data import as_tensor

    if n is not None and int(n) < len(ds):
        idx = subset_indices(len(ds), n)
        if hasattr(ds, "get_batch"):
            return ds.get_batch(idx)[0]
        return torch.stack([ds[int(i)][0] for i in idx])
    return as_tensor(ds)[0]


@dataclass
class EvalContext:
    """The inputs of one evaluation (see :func:`~ncsn.metrics.evaluate.evaluate`'s arguments)."""

    names: list[str]
    samples: torch.Tensor | ImageBatches | None
    dataset: str | None = None
    data_root: str | os.PathLike | None = None
    score_fn: ScoreFn | None = None
    sigmas: Any = None
    n_ref: int | None = None
    inception_weights: Any = None
    seed: int = 0
    batch_size: int = 100
    out_dir: str | os.PathLike | None = None
    progress: bool = True
    ref_split: str = "train"
    reference: torch.Tensor | ImageBatches | None = None
    dsm_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    nn_k: int = 3
    nn_grid_name: str = "nn_grid"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    device: str | torch.device = "cpu"
    use_cache: bool = True
    bpd_n: int | None = None
    logit_transform: bool = False
    protocol: dict = field(default_factory=dict)
    _splits: dict = field(default_factory=dict, repr=False)
    _images: dict = field(default_factory=dict, repr=False)

    def split(self, split: str):
        """The data set's ``split`` (read once)."""
        from ncsn.data import get_dataset

        if split not in self._splits:
            self._splits[split] = get_dataset(self.dataset, root=self.data_root, split=split)
        return self._splits[split]

    def images(self, split: str, limit: int | None) -> torch.Tensor:
        """A split's images (its seed-0 subset of ``limit``), read once."""
        key = f"{split}:{limit}"
        if key not in self._images:
            self._images[key] = subset_images(self.split(split), limit)
        return self._images[key]

    def asked(self, *names: str) -> list[str]:
        """Those of ``names`` this evaluation computes."""
        return [m for m in names if m in self.names]

    @cached_property
    def extractor(self) -> InceptionExtractor:
        """The FID Inception network (``inception_weights``, or random for ``random-init``)."""
        w = self.inception_weights
        if isinstance(w, InceptionExtractor):
            return w
        if isinstance(w, str) and w == RANDOM_INIT:
            return InceptionExtractor(random_init=True, device=self.device)
        return InceptionExtractor(w, device=self.device)

    @cached_property
    def inception(self) -> dict:
        """FID/KID/IS of the samples in one pass of the Inception network."""
        from ncsn.metrics.inception_metrics import INCEPTION_METRICS, inception_metrics

        names = self.asked(*INCEPTION_METRICS)
        ref = self.reference
        if isinstance(ref, torch.Tensor):
            from ncsn.metrics.evaluate import check_samples

            ref = from_tensor(check_samples(ref), {"kind": "tensor"})
        elif ref is None and ("fid" in names or "kid" in names):
            source = {"dataset": str(self.dataset), "split": self.ref_split}
            ref = from_dataset(self.split(self.ref_split), self.n_ref, source)
        s = self.samples
        stream = s if isinstance(s, ImageBatches) else from_tensor(s)
        opts = {"kid_subsets": self.kid_subsets, "kid_subset_size": self.kid_subset_size}
        scores, self.protocol["inception"] = inception_metrics(
            stream, names, self.extractor, ref, batch_size=self.batch_size, seed=self.seed,
            progress=self.progress, use_cache=self.use_cache, **opts,
        )  # fmt: skip
        if ref is not None:
            where = {k: ref.source[k] for k in ("split", "file") if k in ref.source}
            self.protocol["reference"] = {**where, "n": len(ref)}
        return scores

    @cached_property
    def classifier(self):
        """The shipped domain classifier of the data set."""
        from ncsn.metrics.classifier import load_classifier

        return load_classifier(str(self.dataset).strip().lower(), device=self.device)

    @cached_property
    def domain(self) -> dict:
        """dFID/dKID/dIS/class histogram of the samples in one pass of the classifier."""
        from ncsn.metrics.domain import DOMAIN_METRICS, domain_metrics

        names = self.asked(*DOMAIN_METRICS)
        model = self.classifier
        model.check_input(self.samples)
        ref = None
        if "dfid" in names or "dkid" in names:
            ref = self.images(self.ref_split, self.n_ref)
        opts = {"kid_subsets": self.kid_subsets, "kid_subset_size": self.kid_subset_size}
        out = domain_metrics(
            self.samples, self.dataset, ref, metrics=names, classifier=model, seed=self.seed,
            batch_size=max(self.batch_size, 500), progress=self.progress, **opts,
        )  # fmt: skip
        name = f"classifier_{self.dataset}"
        self.protocol["classifier"] = {"name": name, "test_accuracy": model.test_accuracy}
        if ref is not None:
            self.protocol["reference"] = {"split": self.ref_split, "n": int(ref.shape[0])}
        return out
