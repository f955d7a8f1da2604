"""Run folders: ncsn deletes only what it wrote, never advises deleting, and a run stopped
before its first checkpoint can be started again with the same command."""

import json
import os

import pytest

from ncsn.checkpoint import find_checkpoint, list_checkpoints, read_checkpoint
from ncsn.cli import main
from ncsn.config import apply_overrides, load_config, save_config
from ncsn.errors import NCSNError
from ncsn.lock import WorkdirBusy, WorkdirLock
from ncsn.training import NonFiniteError, train
from ncsn.workdir import MARKER, remove_run_files

from helpers import mlp_config


def quiet(cfg, workdir, **kw):
    return train(cfg, workdir, progress=False, log=lambda m: None, **kw)


def _cli_train(tmp_path, workdir, *more, cfg=None):
    path = save_config(cfg or mlp_config("training.n_iters=4"), tmp_path / "cfg.yaml")
    argv = ["train", "--config", str(path), "--workdir", str(workdir), "--no-progress"]
    return main([*argv, "--device", "cpu", *more])


def _one_line(capsys, rc, code=2):
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_new_run_folder_gets_the_marker(tmp_path):
    quiet(mlp_config("training.n_iters=2"), tmp_path / "run")
    assert json.loads((tmp_path / "run" / MARKER).read_text())["ncsn"] == "run folder"


def test_overwrite_removes_exactly_the_files_ncsn_wrote(tmp_path):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=4", "training.sample_every=2"), run)
    (run / "notes.txt").write_text("mine")  # beside the run's folders: not ncsn's, untouched
    again = mlp_config("training.n_iters=2", "training.lr=0.01", "training.sample_every=2")
    quiet(again, run, overwrite=True)
    assert (run / "notes.txt").read_text() == "mine"
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002.safetensors"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000002.png"]


@pytest.mark.parametrize(
    "foreign", ["samples/photo.txt", "checkpoints/step_00000002_keep.safetensors", "tb/x/y"]
)
def test_overwrite_refuses_a_run_folder_holding_other_files(tmp_path, capsys, foreign):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=4", "training.sample_every=2"), run)
    (run / foreign).parent.mkdir(parents=True, exist_ok=True)
    (run / foreign).write_text("not ncsn's")
    before = _tree(run)
    err = _one_line(capsys, _cli_train(tmp_path, run, "--overwrite"))
    assert "files ncsn did not write" in err and foreign.split("/")[1] in err
    assert _tree(run) == before


def test_overwrite_refuses_a_folder_ncsn_did_not_make(tmp_path, capsys):
    mine = tmp_path / "project"
    (mine / "samples").mkdir(parents=True)
    (mine / "samples" / "photo.txt").write_text("holiday")
    (mine / "config.yaml").write_text("lr: 0.1  # my own tool's config\n")
    err = _one_line(capsys, _cli_train(tmp_path, mine, "--overwrite"))
    assert MARKER in err and "deletes nothing" in err
    assert (mine / "samples" / "photo.txt").read_text() == "holiday"
    # and without --overwrite the foreign config is not written over either
    err = _one_line(capsys, _cli_train(tmp_path, mine))
    assert "will not write over it" in err
    assert (mine / "config.yaml").read_text().startswith("lr: 0.1")


def test_a_foreign_config_in_a_run_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=2"), run)
    (run / "config.yaml").write_text("{model: {layers: 3}}\n")  # someone else's file
    with pytest.raises(NCSNError, match="did not write.*config.yaml"):
        remove_run_files(run)
    assert list_checkpoints(run)


def test_a_symlinked_checkpoints_folder_is_never_followed(tmp_path, capsys):
    precious = tmp_path / "elsewhere"
    quiet(mlp_config("training.n_iters=4"), precious)
    kept = _tree(precious)
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=2"), run)
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    (run / "checkpoints").rmdir()
    (run / "checkpoints").symlink_to(precious / "checkpoints")
    err = _one_line(capsys, _cli_train(tmp_path, run, "--overwrite"))
    assert "symbolic link" in err
    err = _one_line(capsys, _cli_train(tmp_path, run, cfg=mlp_config("training.n_iters=9")))
    assert "symbolic link" in err  # training would prune through it
    assert _tree(precious) == kept


def test_a_deleted_config_is_recovered_from_the_checkpoint_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = mlp_config("training.n_iters=4")
    quiet(cfg, run)
    (run / "config.yaml").unlink()
    err = _one_line(capsys, _cli_train(tmp_path, run, cfg=mlp_config("training.lr=0.5")))
    assert "config.yaml is missing" in err and "--resume" in err and "--overwrite" not in err
    # the advice works: --resume without --config reads the config from the checkpoint
    argv = ["train", "--workdir", str(run), "--resume", "--no-progress", "--device", "cpu"]
    assert main([*argv, "--set", "training.n_iters=6"]) == 0
    assert read_checkpoint(find_checkpoint(run))["step"] == 6
    assert load_config(str(run / "config.yaml")).training.lr == cfg.training.lr


def test_no_message_advises_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=4"), run)
    for cfg in (mlp_config("training.lr=0.5"), mlp_config("training.n_iters=4")):
        rc = _cli_train(tmp_path, run, "--resume", cfg=cfg)
        assert "--overwrite" not in capsys.readouterr().err, rc


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path, monkeypatch):
    import ncsn.train_step as training  # the step calls its _loss_fn

    cfg = mlp_config("training.n_iters=4", "training.checkpoint_every=100")
    real = training._loss_fn

    def nan_loss(*a, **k):
        out = real(*a, **k)
        return out._replace(loss=out.loss * float("nan"))

    monkeypatch.setattr(training, "_loss_fn", nan_loss)
    with pytest.raises(NonFiniteError):
        quiet(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "config.yaml").exists() and not list_checkpoints(tmp_path / "run")
    monkeypatch.setattr(training, "_loss_fn", real)
    assert quiet(cfg, tmp_path / "run").step == 4  # same call: no conflict, it starts
    # also with a corrected config (the run never wrote a checkpoint: nothing is lost)
    (tmp_path / "run2").mkdir()
    monkeypatch.setattr(training, "_loss_fn", nan_loss)
    with pytest.raises(NonFiniteError):
        quiet(cfg, tmp_path / "run2")
    monkeypatch.setattr(training, "_loss_fn", real)
    with pytest.warns(UserWarning, match="never wrote a checkpoint"):
        assert quiet(apply_overrides(cfg, ["training.lr=1e-4"]), tmp_path / "run2").step == 4


def test_a_run_that_fails_at_its_start_leaves_no_folder_behind(tmp_path, capsys):
    """Missing data: the folders the run created (lock file and all) go; an existing one stays."""
    cfg = mlp_config("data.dataset=folder:" + str(tmp_path / "no-images"))
    rc = _cli_train(tmp_path, tmp_path / "new" / "run", cfg=cfg)
    assert "no-images" in _one_line(capsys, rc)
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    for existing in (tmp_path / "mine", tmp_path / "empty"):
        existing.mkdir(exist_ok=True)
        _one_line(capsys, _cli_train(tmp_path, existing, cfg=cfg))
        assert existing.is_dir()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x"


def test_one_writer_per_workdir_in_process(tmp_path):
    run = tmp_path / "run"
    with WorkdirLock(run.parent):
        pass
    run.mkdir()
    with WorkdirLock(run), pytest.raises(WorkdirBusy, match=f"PID {os.getpid()}"):
        quiet(mlp_config("training.n_iters=2"), run)
    assert quiet(mlp_config("training.n_iters=2"), run).step == 2  # released


def test_overwrite_with_resume_deletes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=4"), run)
    before = _tree(run)
    err = _one_line(capsys, _cli_train(tmp_path, run, "--overwrite", "--resume"))
    assert "pass only one" in err and _tree(run) == before


def test_lock_and_marker_files_that_are_links_are_not_followed(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=2"), run)
    (run / ".ncsn-lock").unlink()
    (run / ".ncsn-lock").symlink_to(victim)
    _one_line(capsys, _cli_train(tmp_path, run))
    assert victim.read_text() == "precious"
    (run / ".ncsn-lock").unlink()
    (run / MARKER).unlink()
    (run / MARKER).symlink_to(victim)
    err = _one_line(capsys, _cli_train(tmp_path, run, "--overwrite"))
    assert "deletes nothing" in err and list_checkpoints(run)


def _tamper(run, change):
    """Rewrite the run's latest checkpoint with ``change`` applied (a valid checksum)."""
    from ncsn.checkpoint import save_checkpoint

    path = find_checkpoint(run)
    state = read_checkpoint(path)
    change(state)
    save_checkpoint(path, state)


def test_resume_with_a_hostile_stored_config_builds_nothing_big(tmp_path, capsys):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=4"), run)
    _tamper(run, lambda s: s["config"]["model"].update(options={"hidden": 10**7, "depth": 1}))
    (run / "config.yaml").unlink()
    argv = ["train", "--workdir", str(run), "--resume", "--no-progress", "--device", "cpu"]
    assert "does not fit its own config" in _one_line(capsys, main(argv))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.update(optimizer=[1]), "optimizer state is malformed"),
        (
            lambda s: s["optimizer"]["state"][0].update(exp_avg=__import__("torch").zeros(3)),
            "wrong shape",
        ),
        (lambda s: s["data"].update(perm=s["data"]["perm"][:10]), "covers 10 images"),
        (lambda s: s["data"].update(pos=10**9), "data position"),
        (lambda s: s.update(noise_rng=s["data"]["perm"]), "not a random generator state"),
        (lambda s: s.update(step="4"), "its step is '4'"),
        (lambda s: s.update(ema=[1]), "EMA is not a mapping"),
    ],
)
def test_a_malformed_training_state_is_refused_before_loading(tmp_path, capsys, change, match):
    run = tmp_path / "run"
    quiet(mlp_config("training.n_iters=4"), run)
    _tamper(run, change)
    err = _one_line(capsys, _cli_train(tmp_path, run, cfg=mlp_config("training.n_iters=6")))
    assert match in err and "step_00000004.safetensors cannot resume" in err
