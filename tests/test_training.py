"""Training: the loss falls, resume is bit-identical, run folders are never clobbered."""

import json

import pytest
import torch

from ncsn.api import build_model, load_checkpoint
from ncsn.checkpoint import find_checkpoint, list_checkpoints, read_checkpoint
from ncsn.config import apply_overrides, load_config
from ncsn.errors import CheckpointError, NCSNError
from ncsn.training import train

from helpers import tiny_config


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)]


def test_a_few_steps_lower_the_loss(tmp_path):
    cfg = tiny_config("training.n_iters=60", "training.lr=0.003")
    res = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    losses = _losses(tmp_path / "run")
    assert res.step == 60 and len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    cfg = tiny_config("training.n_iters=20", "training.ema_rate=0.9")
    train(cfg, tmp_path / "a", progress=False, log=lambda m: None)
    first = train(cfg, tmp_path / "b", progress=False, max_steps=7, log=lambda m: None)
    assert first.step == 7 and first.stopped == "max_steps"
    # a resumed run replays nothing and continues the same data order and noise draws
    train(cfg, tmp_path / "b", resume=True, progress=False, log=lambda m: None)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    a = read_checkpoint(find_checkpoint(tmp_path / "a"))
    b = read_checkpoint(find_checkpoint(tmp_path / "b"))
    assert a["step"] == b["step"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k


def test_existing_run_is_never_clobbered(tmp_path):
    cfg = tiny_config("training.n_iters=5")
    run = tmp_path / "run"
    train(cfg, run, progress=False, log=lambda m: None)
    with pytest.raises(NCSNError, match="different config .*training.lr"):
        train(apply_overrides(cfg, ["training.lr=0.01"]), run, progress=False)
    with pytest.raises(NCSNError, match="already holds a run; pass --resume"):
        train(cfg, run, resume=False, progress=False)
    # same config: continues (here: already complete, nothing to do)
    assert train(cfg, run, progress=False, log=lambda m: None).step == 5
    res = train(
        apply_overrides(cfg, ["training.lr=0.01"]),
        run,
        overwrite=True,
        progress=False,
        log=lambda m: None,
    )
    assert res.step == 5 and len(_losses(run)) == 5
    with pytest.raises(CheckpointError, match="holds no run"):
        train(cfg, tmp_path / "empty", resume=True, progress=False)


def test_keeps_last_k_checkpoints_and_milestones(tmp_path):
    cfg = tiny_config(
        "training.n_iters=30", "training.keep_checkpoints=2", "training.milestone_every=10"
    )
    train(cfg, tmp_path, progress=False, log=lambda m: None)
    steps = [int(p.stem.split("_")[1]) for p in list_checkpoints(tmp_path)]
    assert steps == [10, 20, 25, 30]


def test_checkpoint_loads_with_identical_outputs_and_rejects_other_models(tiny_run):
    model, saved = load_checkpoint(tiny_run, ema=False)
    st = read_checkpoint(find_checkpoint(tiny_run))
    again = build_model(saved)
    again.load_state_dict(st["model"])
    x, s = torch.rand(4, 1, 8, 8), torch.full((4,), 0.3)
    assert torch.equal(model(x, s), again.eval()(x, s))
    other = apply_overrides(saved, ["model.options={ch: 16, ch_mult: [1, 2], num_res_blocks: 1}"])
    from ncsn.checkpoint import check_state_dict

    with pytest.raises(CheckpointError, match="has shape"):
        check_state_dict(build_model(other), st["model"], "ckpt")


def test_non_finite_loss_stops_with_step_and_levels(tmp_path, monkeypatch):
    import ncsn.train_step as train_step

    real = train_step._loss_fn

    def poisoned(cfg, score_fn, x, sigmas, draws):  # the 3rd step onwards produces NaN
        out = real(cfg, score_fn, x, sigmas, draws)
        calls.append(1)
        return out._replace(loss=out.loss * float("nan")) if len(calls) >= 3 else out

    monkeypatch.setattr(train_step, "_loss_fn", poisoned)
    calls = []
    cfg = tiny_config("training.n_iters=8", "training.checkpoint_every=1")
    with pytest.raises(
        NCSNError, match=r"non-finite loss at step 3 \(noise levels .*step_00000002"
    ):
        train(cfg, tmp_path / "a", progress=False, log=lambda m: None)
    assert read_checkpoint(find_checkpoint(tmp_path / "a"))["step"] == 2
    calls, skipped = [], []
    with pytest.raises(NCSNError, match="at step 3"):
        train(
            tiny_config("training.n_iters=8", "training.max_bad_steps=3"),
            tmp_path / "b",
            progress=False,
            log=skipped.append,
        )
    assert len(skipped) == 3 and all("skipped (" in m for m in skipped)


def test_unusable_workdir_and_full_disk_fail_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NCSNError, match="cannot create workdir"):
        train(tiny_config("training.n_iters=2"), blocker / "run", progress=False)
    import shutil

    import ncsn.workdir

    usage = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr(ncsn.workdir.shutil, "disk_usage", lambda p: usage)
    with pytest.raises(NCSNError, match="not enough free disk"):
        train(tiny_config("training.n_iters=2"), tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").glob("checkpoints/*"))


def test_checkpoint_with_other_noise_levels_is_refused(tiny_run):
    st = read_checkpoint(find_checkpoint(tiny_run))
    from ncsn.checkpoint import check_state_dict

    other = build_model(
        apply_overrides(load_config(tiny_run / "config.yaml"), ["model.sigma_max=2.0"])
    )
    with pytest.raises(CheckpointError, match="other noise levels"):
        check_state_dict(other, st["model"], "ckpt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_with_validation_and_samples_runs_on_cuda(tmp_path):
    # the held-out DSM once turned the network's CUDA sigma buffer into a NumPy array and
    # crashed every GPU run at its first validation (found on an H200, 2026-11-27)
    cfg = tiny_config(
        "training.n_iters=4",
        "data.val_size=0.1",
        "training.eval_every=2",
        "training.sample_every=4",
        "sampling.n_samples=4",
    )
    res = train(cfg, tmp_path / "run", device="cuda", progress=False, log=lambda m: None)
    assert res.step == 4
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "val_dsm" in x] == [2, 4]
