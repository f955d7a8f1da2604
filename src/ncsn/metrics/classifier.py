"""Small CNN digit classifiers for domain metrics on ``digits`` (8x8) and ``mnist`` (28x28).

The trained weights ship with the package (``ncsn/assets/classifier_<name>.safetensors``,
with the test accuracy in the file's metadata). They are trained on the train split only and
evaluated on the test split; :func:`ncsn.metrics.classifier_training.train_classifier` and
:func:`save_classifier` rebuild them (``ncsn eval --retrain-classifier digits|mnist``).
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ncsn.errors import DataError, ShapeError
from ncsn.io import atomic_write, check_output_path

__all__ = [
    "CLASSIFIER_CONFIGS",
    "DigitClassifier",
    "classifier_asset_path",
    "classifier_outputs",
    "classifier_accuracy",
    "load_classifier",
    "retrained_classifier_path",
    "save_classifier",
]

log = logging.getLogger(__name__)

# name -> architecture; trained with ncsn.metrics.classifier_training.TRAINING[name].
CLASSIFIER_CONFIGS: dict[str, dict] = {
    "digits": {"image_size": 8, "channels": [16, 32], "pool": 2, "hidden": 64, "classes": 10},
    "mnist": {"image_size": 28, "channels": [32, 64], "pool": 3, "hidden": 128, "classes": 10},
}
_RETRAIN_HINT = "ncsn eval --retrain-classifier {name}"


class DigitClassifier(nn.Module):
    """Two conv blocks and two fully connected layers.

    ``conv3x3 -> BN -> ReLU -> maxpool 2 -> conv3x3 -> BN -> ReLU -> adaptive maxpool ->
    fc(hidden) -> ReLU -> dropout -> fc(classes)``. About 14k parameters for digits, 94k for
    MNIST.

    Args:
        image_size: Input side (inputs are (N, 1, image_size, image_size) in [0, 1]).
        channels: Output channels of the two conv layers.
        pool: Side of the adaptive max pool after the second conv block.
        hidden: Width of the penultimate layer (the feature dimension).
        classes: Number of classes.
        name: Data set the classifier is for.

    Attributes:
        test_accuracy: Test-split accuracy recorded when the weights were trained (or NaN).
    """

    def __init__(
        self,
        image_size: int,
        channels: list[int] | tuple[int, int] = (32, 64),
        pool: int = 3,
        hidden: int = 128,
        classes: int = 10,
        name: str = "",
    ) -> None:
        super().__init__()
        c1, c2 = int(channels[0]), int(channels[1])
        self.config = {
            "image_size": int(image_size),
            "channels": [c1, c2],
            "pool": int(pool),
            "hidden": int(hidden),
            "classes": int(classes),
        }
        self.name = name
        self.test_accuracy = float("nan")
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(int(pool)),
            nn.Flatten(),
            nn.Linear(c2 * int(pool) ** 2, int(hidden)),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(int(hidden), int(classes))

    @property
    def feature_dim(self) -> int:
        """Size of the penultimate features."""
        return self.config["hidden"]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ShapeError` unless ``x`` is (N, 1, S, S) with S the expected side."""
        s = self.config["image_size"]
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, s, s):
            raise ShapeError(
                f"the {self.name or 'digit'} classifier expects images (N, 1, {s}, {s}), got "
                f"{tuple(x.shape)}; evaluate samples of the data set it was trained on"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features.

        Args:
            x: Images (N, 1, S, S) in [0, 1].

        Returns:
            (N, hidden) features (after the ReLU).
        """
        return self.body(x - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            x: Images (N, 1, S, S) in [0, 1].

        Returns:
            (N, classes) logits.
        """
        return self.head(self.dropout(self.features(x)))


@torch.no_grad()
def classifier_outputs(
    model: DigitClassifier,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    progress: bool = False,
    desc: str = "classifier",
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and class probabilities of many images, in batches.

    Args:
        model: The classifier (put in eval mode here).
        images: (N, 1, S, S) in [0, 1], on any device.
        batch_size: Images per forward pass.
        progress: Show a tqdm progress bar.
        desc: Progress bar label.

    Returns:
        ``(features (N, hidden) float64, probs (N, classes) float64)`` numpy arrays.
    """
    model.eval()
    model.check_input(images)
    device = next(model.parameters()).device
    feats, probs = [], []
    n = int(images.shape[0])
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            x = images[start : start + batch_size].to(device, torch.float32)
            f = model.features(x)
            probs.append(torch.softmax(model.head(f).double(), dim=1).cpu().numpy())
            feats.append(f.double().cpu().numpy())
            bar.update(x.shape[0])
    k = model.config["classes"]
    if not feats:
        return np.empty((0, model.feature_dim)), np.empty((0, k))
    return np.concatenate(feats), np.concatenate(probs)


def classifier_accuracy(
    model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Fraction of images whose argmax prediction equals the label.

    Args:
        model: The classifier.
        images: (N, 1, S, S) in [0, 1].
        labels: (N,) integer labels.
        batch_size: Images per forward pass.

    Returns:
        Accuracy in [0, 1].
    """
    _, probs = classifier_outputs(model, images, batch_size=batch_size)
    return float((probs.argmax(1) == labels.cpu().numpy()).mean())


def save_classifier(
    model: DigitClassifier, path: str | os.PathLike, accuracy: float | None = None
) -> Path:
    """Write a classifier's weights and metadata to a safetensors file (atomically).

    Args:
        model: The classifier.
        path: Output ``.safetensors`` file; its folder must exist.
        accuracy: Test accuracy to record (default ``model.test_accuracy``).

    Returns:
        The written path.
    """
    from safetensors.torch import save

    path = check_output_path(path, what="classifier file")
    acc = model.test_accuracy if accuracy is None else float(accuracy)
    meta = {
        "format": "ncsn-digit-classifier-v1",
        "dataset": model.name,
        "config": json.dumps(model.config),
        "test_accuracy": f"{acc:.6f}",
        "train_seconds": f"{getattr(model, 'train_seconds', float('nan')):.1f}",
        "params": str(sum(p.numel() for p in model.parameters())),
        "train_info": json.dumps(getattr(model, "train_info", {})),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path, "wb") as f:
        f.write(save(state, metadata=meta))
    return path


def classifier_asset_path(name: str) -> Path:
    """Location of the shipped weights of a classifier inside the installed package.

    Args:
        name: ``digits`` or ``mnist``.

    Returns:
        Path of ``ncsn/assets/classifier_<name>.safetensors`` (which may not exist).
    """
    file = f"classifier_{_check_name(name)}.safetensors"
    return Path(str(resources.files("ncsn") / "assets" / file))


def retrained_classifier_path(name: str, *, create: bool = False) -> Path:
    """Where ``ncsn eval --retrain-classifier NAME`` writes by default (never the package).

    Args:
        name: ``digits`` or ``mnist``.
        create: Create the folder when missing.

    Returns:
        ``$NCSN_CACHE/classifiers/classifier_<name>.safetensors`` when the variable is set,
        else the same under ``~/.cache/ncsn``.
    """
    base = os.environ.get("NCSN_CACHE")
    folder = (Path(base).expanduser() if base else Path.home() / ".cache" / "ncsn") / "classifiers"
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(
                f"cannot create the cache folder {folder} ({e.strerror}); set $NCSN_CACHE to a "
                "writable folder or pass --classifier-out"
            ) from None
    return folder / f"classifier_{_check_name(name)}.safetensors"


def load_classifier(
    name: str, *, path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> DigitClassifier:
    """Load a trained classifier: the shipped weights, or a file written by save_classifier.

    Args:
        name: ``digits`` or ``mnist``.
        path: A ``.safetensors`` file to load instead of the shipped one. Without it, the
            shipped file is used; only when that is missing, a retrained one at
            :func:`retrained_classifier_path`.
        device: Device to put the model on.

    Returns:
        The classifier in eval mode, with ``test_accuracy`` from the file's metadata.

    Raises:
        DataError: Missing or unreadable weights (the message gives the retrain command).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    name = _check_name(name)
    file = Path(path) if path is not None else classifier_asset_path(name)
    hint = _RETRAIN_HINT.format(name=name)
    if path is None and not file.is_file() and retrained_classifier_path(name).is_file():
        file = retrained_classifier_path(name)  # the package's file is missing: use the rebuilt
        log.warning("shipped classifier missing; using the retrained %s", file)
    if not file.is_file():
        raise DataError(
            f"classifier weights {file} not found; reinstall ncsn, or rebuild them with: {hint} "
            "(used when the shipped file is missing)"
        )
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(file), device="cpu")
        model = DigitClassifier(**json.loads(meta["config"]), name=name)
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - any failure means an unusable file
        msg = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise DataError(f"cannot load classifier {file} ({msg}); rebuild it with: {hint}") from None
    model.test_accuracy = float(meta.get("test_accuracy", "nan"))
    model.train_seconds = float(meta.get("train_seconds", "nan"))
    model.train_info = json.loads(meta.get("train_info", "{}"))
    return model.to(device).eval()


def _check_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in CLASSIFIER_CONFIGS:
        raise DataError(
            f"no domain classifier for data set {name!r}; domain metrics (dfid, dkid, dis, "
            f"classes) exist for: {', '.join(CLASSIFIER_CONFIGS)}"
        )
    return key
