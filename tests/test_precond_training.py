"""Training with EDM preconditioning, weighting and log-normal sigma; per-level validation."""

import json
import math

import pytest
import torch

from ncsn.api import load_checkpoint
from ncsn.config import apply_overrides, load_config
from ncsn.edm import data_statistics
from ncsn.models import EDMPrecond
from ncsn.training import train

EDM = [
    "model.options={ch: 8, ch_mult: [1, 2], num_res_blocks: 1}",
    "model.precond=edm",
    "model.sigma_max=20.0",
    "model.num_levels=30",
    "training.weighting=edm",
    "training.sigma_dist=lognormal",
    "training.batch_size=16",
    "training.log_every=1",
    "training.sample_every=0",
    "training.checkpoint_every=3",
    "training.tensorboard=false",
    "training.warmup=0",
    "data.val_size=12",
]


def _cfg(*more):
    return apply_overrides(load_config("digits"), [*EDM, *more])


def _records(workdir, key):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if key in json.loads(x)]


def test_edm_run_resolves_statistics_validates_every_level_and_reloads(tmp_path):
    logs: list[str] = []
    cfg = _cfg("training.n_iters=4", "training.eval_every=2")
    train(cfg, tmp_path / "run", progress=False, log=logs.append)
    saved = load_config(str(tmp_path / "run" / "config.yaml"))
    from ncsn.data import as_tensor, get_dataset

    images = as_tensor(get_dataset("digits", split="train", val_size=12))[0]
    mean, sd = data_statistics(images)
    assert saved.model.data_mean == pytest.approx(mean, rel=1e-3)
    assert saved.model.sigma_data == pytest.approx(sd, rel=1e-3)
    val = _records(tmp_path / "run", "val_dsm")
    assert [r["step"] for r in val] == [2, 4]
    for key in ("val_dsm_per_level", "val_denoiser_mse", "val_mean_image_mse"):
        assert len(val[-1][key]) == 30 and all(math.isfinite(v) for v in val[-1][key]), key
    lines = [m for m in logs if m.startswith("step 4: validation DSM")]
    assert len(lines) == 1 and ("not learned yet" in lines[0] or "every level" in lines[0])
    model, _ = load_checkpoint(tmp_path / "run")
    assert isinstance(model, EDMPrecond) and model.sigma_data == saved.model.sigma_data


def test_lognormal_run_resumes_bit_identically(tmp_path):
    cfg = _cfg("training.n_iters=6", "training.eval_every=0")
    train(cfg, tmp_path / "a", progress=False, log=lambda m: None)
    train(cfg, tmp_path / "b", progress=False, max_steps=3, log=lambda m: None)
    train(cfg, tmp_path / "b", resume=True, progress=False, log=lambda m: None)
    losses = [[r["loss"] for r in _records(tmp_path / w, "loss")] for w in ("a", "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    a, b = (load_checkpoint(tmp_path / w, ema=False)[0] for w in ("a", "b"))
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
