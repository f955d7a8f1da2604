"""The one flip path: training flips each image at most once, as its seeded generator says.

Data sets never flip (their items are the stored images); ``train_step`` flips image k of a
batch exactly when the run generator's flip draw ``u[k]`` is below 1/2.
"""

from __future__ import annotations

import torch

import ncsn.train_step as train_step
from ncsn.data import as_tensor, default_random_flip, get_dataset
from ncsn.training import train

from helpers import mlp_config

_MICRO_LOSS, _PREPROCESS = train_step._micro_loss, train_step.preprocess


def _record_batches(monkeypatch, workdir, *more: str) -> list[dict[str, torch.Tensor]]:
    """Train 3 steps, keeping each batch as read, its flip draws and the network's input."""
    seen: list[dict[str, torch.Tensor]] = []

    def record_micro(setup, x, d):
        seen.append({"read": x.clone(), "u": d.flip.clone()})
        return _MICRO_LOSS(setup, x, d)

    def record_input(x, **kw):
        seen[-1]["flipped"] = x.clone()
        return _PREPROCESS(x, **kw)

    monkeypatch.setattr(train_step, "_micro_loss", record_micro)
    monkeypatch.setattr(train_step, "preprocess", record_input)
    cfg = mlp_config("data.random_flip=true", "training.n_iters=3", *more)
    train(cfg, workdir, progress=False, log=lambda *a: None)
    return seen


def test_each_image_is_flipped_at_most_once_as_the_generator_draws(monkeypatch, tmp_path):
    seen = _record_batches(monkeypatch, tmp_path / "run")
    stored = as_tensor(get_dataset("digits", val_size=0))[0].flatten(1)
    assert len(seen) == 3
    for batch in seen:
        # the data set hands over stored images, never mirrored ones
        read = batch["read"].flatten(1)
        assert bool((read[:, None] == stored[None]).all(-1).any(-1).all())
        # exactly the drawn rows are flipped, once: a second flip anywhere breaks equality
        mask = (batch["u"] < 0.5).view(-1, 1, 1, 1)
        expected = torch.where(mask, batch["read"].flip(-1), batch["read"])
        assert torch.equal(batch["flipped"], expected)
        assert 0 < int(mask.sum()) < len(mask)


def test_flips_are_reproducible_for_a_seed(monkeypatch, tmp_path):
    a = _record_batches(monkeypatch, tmp_path / "a", "training.seed=7")
    b = _record_batches(monkeypatch, tmp_path / "b", "training.seed=7")
    c = _record_batches(monkeypatch, tmp_path / "c", "training.seed=8")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["u"], y["u"]) and torch.equal(x["flipped"], y["flipped"])
    assert not all(torch.equal(x["u"], z["u"]) for x, z in zip(a, c, strict=True))


def test_default_flips_come_from_the_data_set_table():
    assert default_random_flip("cifar10") and default_random_flip("CIFAR-10")
    assert default_random_flip("celeba")
    assert not default_random_flip("digits") and not default_random_flip("mnist")
    assert not default_random_flip("folder:/some/photos") and not default_random_flip(None)
