"""Training the domain classifiers of :mod:`ncsn.metrics.classifier` (``ncsn eval
--retrain-classifier digits|mnist``): Adam with a one-cycle learning rate, random translations,
deterministic for a seed on the CPU."""

from __future__ import annotations

import logging
import math
import os
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ncsn.metrics.classifier import (
    CLASSIFIER_CONFIGS,
    DigitClassifier,
    _check_name,
    classifier_accuracy,
)

__all__ = ["TRAINING", "train_classifier"]

log = logging.getLogger(__name__)

TRAINING = {
    "digits": {"epochs": 80, "batch_size": 64, "lr": 3e-3, "shift": 1},
    "mnist": {"epochs": 4, "batch_size": 128, "lr": 2e-3, "shift": 2},
}


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
    cfg, hp = CLASSIFIER_CONFIGS[name], dict(TRAINING[name])
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
