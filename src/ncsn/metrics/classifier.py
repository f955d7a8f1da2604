"""Small CNN digit classifiers for domain metrics on ``digits`` (8x8) and ``mnist`` (28x28).

The trained weights ship with the package (``ncsn/assets/classifier_<name>.safetensors``,
with the test accuracy in the file's metadata). They are trained on the train split only and
evaluated on the test split; :func:`train_classifier` and :func:`save_classifier` rebuild
them (``ncsn eval --retrain-classifier digits|mnist``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
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
    "train_classifier",
]

log = logging.getLogger(__name__)

# name -> architecture; trained with TRAINING[name].
CLASSIFIER_CONFIGS: dict[str, dict] = {
    "digits": {"image_size": 8, "channels": [16, 32], "pool": 2, "hidden": 64, "classes": 10},
    "mnist": {"image_size": 28, "channels": [32, 64], "pool": 3, "hidden": 128, "classes": 10},
}
_TRAINING = {
    "digits": {"epochs": 80, "batch_size": 64, "lr": 3e-3, "shift": 1},
    "mnist": {"epochs": 4, "batch_size": 128, "lr": 2e-3, "shift": 2},
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


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill), for augmentation.

    torchvision's ``crop`` at an offset of ``-max_shift .. max_shift`` pixels (it fills the
    outside with zeros); the offsets come from ``generator``, all rows first, then all
    columns, so the shipped classifiers retrain to the same weights.
    """
    if max_shift <= 0:
        return x
    from torchvision.transforms.v2 import functional as TF  # imported when first used: slow

    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator) - max_shift
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator) - max_shift
    return torch.stack(
        [TF.crop(img, int(t), int(s), h, w) for img, t, s in zip(x, dy, dx, strict=True)]
    )


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


def _epoch(model, opt, sched, x_train, y_train, batch_size, shift, gen) -> float:
    """One pass over the training images in a shuffled order; the last batch's loss."""
    model.train()
    device = next(model.parameters()).device
    perm = torch.randperm(len(x_train), generator=gen)
    for start in range(0, len(x_train), batch_size):
        idx = perm[start : start + batch_size]
        x = _random_shift(x_train[idx], shift, gen).to(device)
        loss = F.cross_entropy(model(x), y_train[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.item())


def train_classifier(
    dataset_name: str,
    root: str | os.PathLike | None = None,
    epochs: int | None = None,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> DigitClassifier:
    """Train the domain classifier on the train split and measure it on the test split.

    Adam with a cosine learning-rate decay, random translations of up to 1 (digits) or 2
    (MNIST) pixels. Deterministic for a given seed on the CPU.

    Args:
        dataset_name: ``digits`` or ``mnist``.
        root: Data root for MNIST (see :func:`ncsn.data.get_dataset`).
        epochs: Passes over the train split (default 80 for digits, 4 for MNIST).
        seed: Seed of the initialisation, shuffling and augmentation.
        batch_size: Batch size (default 64 digits, 128 MNIST).
        lr: Peak learning rate.
        device: Training device (default CPU).
        progress: Show a progress bar over epochs.

    Returns:
        The trained model in eval mode; ``model.test_accuracy`` holds the test accuracy,
        ``model.train_seconds`` the training time and ``model.train_info`` the settings.
    """
    from ncsn.data import as_tensor, get_dataset

    name = _check_name(dataset_name)
    cfg, hp = CLASSIFIER_CONFIGS[name], dict(_TRAINING[name])
    epochs = int(hp["epochs"] if epochs is None else epochs)
    batch_size = int(batch_size or hp["batch_size"])
    lr = float(lr or hp["lr"])
    device = torch.device(device or "cpu")
    x_train, y_train = as_tensor(get_dataset(name, root=root, split="train"))
    x_test, y_test = as_tensor(get_dataset(name, root=root, split="test"))
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # the initialisation and the dropout masks
        model = DigitClassifier(**cfg, name=name).to(device)
        gen = torch.Generator().manual_seed(seed)  # the order and the shifts
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * math.ceil(len(x_train) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
        for epoch in tqdm(range(epochs), desc=f"train {name} classifier", disable=not progress):
            loss = _epoch(model, opt, sched, x_train, y_train, batch_size, hp["shift"], gen)
            log.debug("epoch %d: last batch loss %.4f", epoch, loss)
    model.eval()
    model.train_seconds = time.perf_counter() - t0
    model.train_info = {
        "split": "train",
        "n_train": len(x_train),
        "n_test": len(x_test),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    model.test_accuracy = classifier_accuracy(model, x_test, y_test)
    log.info(
        "%s classifier: test accuracy %.4f after %d epochs (%.0f s)",
        name,
        model.test_accuracy,
        epochs,
        model.train_seconds,
    )
    return model


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
