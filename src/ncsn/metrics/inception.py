"""The FID Inception-v3 network as a feature extractor, loaded from a local weights file.

The architecture and forward pass are torch-fidelity's port of the TensorFlow graph used by
the original FID/IS code (TF1-exact bilinear resize to 299x299, pool features of size 2048,
1008 logits). Weights are never downloaded: they come from a local file given as an argument
or through ``$NCSN_INCEPTION_WEIGHTS``, loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ncsn.errors import DataError, ShapeError

__all__ = [
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_URL",
    "InceptionExtractor",
    "quantize_images",
    "resolve_inception_weights",
]

log = logging.getLogger(__name__)

INCEPTION_WEIGHTS_ENV = "NCSN_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
# pytorch-fid's pt_inception-... and torch-fidelity's weights-inception-... are the same file;
# its SHA-256 starts with the suffix of the file name.
_STANDARD_SHA256_PREFIX = "6726825d"
_HINT = (
    f"download {INCEPTION_WEIGHTS_URL} (the standard FID Inception weights, also published by "
    "torch-fidelity as weights-inception-2015-12-05-6726825d.pth) on a machine with internet, "
    f"then pass --inception-weights PATH (or set {INCEPTION_WEIGHTS_ENV}=PATH)"
)


def resolve_inception_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """Find the Inception weights file: the argument, else ``$NCSN_INCEPTION_WEIGHTS``.

    Args:
        weights_path: Path of the ``.pth`` file, or ``None`` to use the environment variable.

    Returns:
        The path of an existing file.

    Raises:
        DataError: No path given or the file does not exist (the message says where to get it).
    """
    if weights_path is None:
        weights_path = os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if weights_path is None:
        raise DataError(f"Inception metrics need the FID Inception weights: {_HINT}")
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise DataError(f"Inception weights file {path} not found: {_HINT}")
    return path


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Quantise images in [0, 1] to uint8 RGB, as the standard FID protocol does.

    Args:
        images: Float (N, C, H, W) in [0, 1] with C = 1 (repeated to RGB) or 3.

    Returns:
        uint8 tensor (N, 3, H, W) holding ``round(x * 255)``.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(
            f"images must be (N, C, H, W) with 1 or 3 channels, got {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        q = images
    else:
        q = (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return q.expand(-1, 3, -1, -1) if q.shape[1] == 1 else q


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _build_network(state_dict: dict | None) -> nn.Module:
    """torch-fidelity's FID Inception-v3, without its download-on-construct step."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class _FIDInception(tfi.FeatureExtractorInceptionV3):
        def __init__(self) -> None:  # noqa: D401 - builds the same layers as the parent
            FeatureExtractorBase.__init__(self, "ncsn-inception-v3", ["2048", "logits_unbiased"])
            self.feature_extractor_internal_dtype = torch.float32
            conv = tfi.BasicConv2d
            self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
            self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
            self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Mixed_5b = tfi.InceptionA(192, pool_features=32)
            self.Mixed_5c = tfi.InceptionA(256, pool_features=64)
            self.Mixed_5d = tfi.InceptionA(288, pool_features=64)
            self.Mixed_6a = tfi.InceptionB(288)
            self.Mixed_6b = tfi.InceptionC(768, channels_7x7=128)
            self.Mixed_6c = tfi.InceptionC(768, channels_7x7=160)
            self.Mixed_6d = tfi.InceptionC(768, channels_7x7=160)
            self.Mixed_6e = tfi.InceptionC(768, channels_7x7=192)
            self.Mixed_7a = tfi.InceptionD(768)
            self.Mixed_7b = tfi.InceptionE_1(1280)
            self.Mixed_7c = tfi.InceptionE_2(2048)
            self.AvgPool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
            self.fc = nn.Linear(2048, 1008)

    net = _FIDInception()
    if state_dict is None:
        # Random weights that keep activations O(1) through the ~100 layers (fixed seed).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.01)
                    nn.init.zeros_(m.bias)
    else:
        net.load_state_dict(state_dict, strict=True)
    return net.requires_grad_(False).eval()


class InceptionExtractor(nn.Module):
    """FID Inception-v3: 2048-d pool features and class logits for FID, KID and IS.

    Args:
        weights_path: Local ``.pth`` file of the FID Inception weights; ``None`` reads
            ``$NCSN_INCEPTION_WEIGHTS``. Ignored when ``random_init`` is set.
        random_init: Build the same network with random weights (fixed seed) instead: the
            code path is identical, the numbers are meaningless (for tests).
        device: Where to run the network (default: CUDA when available, else CPU).

    Attributes:
        extractor_id: Short identifier for cache keys and reports: ``random-init`` or
            ``<file stem>-<first 12 hex digits of its SHA-256>``.
        info: Dict describing the weights (``weights``, ``sha256``, ``standard``).

    Raises:
        DataError: Missing or unreadable weights file (with instructions to obtain it).
    """

    feature_dim = 2048
    num_logits = 1008

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        random_init: bool = False,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if random_init:
            state = None
            self.extractor_id = "random-init"
            self.info = {"weights": "random-init", "sha256": None, "standard": False}
        else:
            path = resolve_inception_weights(weights_path)
            state = self._load_state(path)
            digest = _sha256(path)
            standard = digest.startswith(_STANDARD_SHA256_PREFIX)
            if not standard:
                warnings.warn(
                    f"Inception weights {path.name} (sha256 {digest[:12]}) are not the standard "
                    f"FID weights ({INCEPTION_WEIGHTS_URL}); scores are not comparable to "
                    "published numbers",
                    stacklevel=2,
                )
            self.extractor_id = f"{path.stem}-{digest[:12]}"
            self.info = {"weights": path.name, "sha256": digest, "standard": standard}
        try:
            self.net = _build_network(state)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise DataError(
                f"{self.info['weights']} does not fit the FID Inception network ({first}); {_HINT}"
            ) from None
        dev = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(dev)
        self.net.to(self.device)

    @staticmethod
    def _load_state(path: Path) -> dict:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure means an unusable file
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(
                f"cannot load Inception weights {path} ({msg[:120]}); {_HINT}"
            ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict) or "fc.weight" not in state:
            raise DataError(f"{path} is not an Inception state dict (no fc.weight); {_HINT}")
        return state

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of a batch.

        Args:
            images: Float (N, C, H, W) in [0, 1] (C = 1 or 3, any size; quantised to uint8,
                gray repeated to RGB, resized to 299x299 bilinearly inside the network), or
                uint8 (N, 3, H, W).

        Returns:
            ``(features (N, 2048), logits (N, 1008))`` float32 on the extractor's device; the
            logits omit the final bias, as in the reference Inception Score code.
        """
        q = quantize_images(images.to(self.device))
        feats, logits = self.net(q)
        return feats, logits

    def extract(
        self,
        images: torch.Tensor,
        *,
        batch_size: int = 50,
        progress: bool = False,
        desc: str = "inception",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run the network over many images in batches.

        Args:
            images: (N, C, H, W) in [0, 1] (may live on the CPU; batches move to the device).
            batch_size: Images per forward pass.
            progress: Show a tqdm progress bar.
            desc: Progress bar label.

        Returns:
            ``(features (N, 2048) float32, probs (N, 1008) float32)``: pool features and the
            softmax of the logits, as numpy arrays.
        """
        n = int(images.shape[0])
        feats = np.empty((n, self.feature_dim), dtype=np.float32)
        probs = np.empty((n, self.num_logits), dtype=np.float32)
        with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for start in range(0, n, batch_size):
                f, logits = self(images[start : start + batch_size])
                stop = start + f.shape[0]
                feats[start:stop] = f.cpu().numpy()
                probs[start:stop] = torch.softmax(logits.double(), dim=1).cpu().numpy()
                bar.update(f.shape[0])
        return feats, probs
