"""Training survives signals and kill -9: real subprocesses, real signals."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from ncsn.checkpoint import find_checkpoint, list_checkpoints, read_checkpoint
from ncsn.config import save_config

from helpers import mlp_config, tiny_config


def _start(cfg_path, workdir, *extra):
    cmd = [
        sys.executable,
        "-m",
        "ncsn.cli",
        "train",
        "--config",
        str(cfg_path),
        "--workdir",
        str(workdir),
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _logged_steps(workdir):
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if '"loss"' in x]


def _wait_for_steps(workdir, n, proc, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if len(_logged_steps(workdir)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("training made no progress")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_finishes_step_writes_checkpoint_and_exits(tmp_path, sig, code):
    cfg = save_config(
        tiny_config("training.n_iters=100000", "training.checkpoint_every=100000"),
        tmp_path / "cfg.yaml",
    )
    proc = _start(cfg, tmp_path / "run")
    _wait_for_steps(tmp_path / "run", 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}" in err and "resume with --resume" in err
    assert "Traceback" not in err
    step = read_checkpoint(find_checkpoint(tmp_path / "run"))["step"]
    assert step >= 3 and step == _logged_steps(tmp_path / "run")[-1]


def test_kill_9_at_random_moments_loses_at_most_one_interval(tmp_path):
    every, total = 10, 300
    cfg = save_config(
        tiny_config(f"training.n_iters={total}", f"training.checkpoint_every={every}"),
        tmp_path / "cfg.yaml",
    )
    run = tmp_path / "run"
    rng = random.Random(0)
    for _ in range(3):
        before = len(_logged_steps(run))
        proc = _start(cfg, run)
        # past the first checkpoint of this round, so a loaded machine cannot kill it before
        # any checkpoint exists (that case is tested separately: a run not started yet)
        _wait_for_steps(run, before + every + 1, proc)
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        logged = _logged_steps(run)
        # the latest checkpoint is intact (on a slow machine the kill may come before the first)
        saved = read_checkpoint(find_checkpoint(run))["step"] if list_checkpoints(run) else 0
        assert saved >= logged[-1] - every
    proc = _start(cfg, run)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert read_checkpoint(find_checkpoint(run))["step"] == total
    assert _logged_steps(run) == list(range(1, total + 1))  # no gaps, no repeats
    assert not list((run / "checkpoints").glob(".*.tmp"))  # a killed write's leftovers removed


# ---- one writer per workdir, runs stopped before their first checkpoint, signals ----


def _one_line(capsys, rc, code=2):
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    errors = [line for line in err.splitlines() if line.startswith("ncsn ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _argv(cfg_path, workdir, *extra):
    return ["train", "--config", str(cfg_path), "--workdir", str(workdir), "--no-progress",
            "--device", "cpu", *extra]  # fmt: skip


def test_second_trainer_is_refused_naming_the_pid_and_kill_9_frees_the_workdir(tmp_path, capsys):
    from ncsn.cli import main

    cfg = save_config(
        mlp_config("training.n_iters=100000", "training.checkpoint_every=100000"),
        tmp_path / "cfg.yaml",
    )
    run = tmp_path / "run"
    proc = _start(cfg, run)
    try:
        _wait_for_steps(run, 2, proc)
        err = _one_line(capsys, main(_argv(cfg, run, "--max-steps", "1")))
        assert f"in use by another ncsn process (PID {proc.pid})" in err
        assert proc.poll() is None  # the first trainer goes on undisturbed
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert not (run / "checkpoints").exists()  # killed before its first checkpoint
    # the kernel released the lock; config and no checkpoint: the same command starts again
    assert main(_argv(cfg, run, "--max-steps", "3")) == 0
    assert read_checkpoint(find_checkpoint(run))["step"] == 3
    assert _logged_steps(run) == [1, 2, 3]


def test_double_sigterm_stops_at_once_and_the_same_command_runs_again(tmp_path, capsys):
    from ncsn.cli import main

    cfg = save_config(
        mlp_config("training.n_iters=100000", "training.checkpoint_every=100000"),
        tmp_path / "cfg.yaml",
    )
    run = tmp_path / "run"
    proc = _start(cfg, run)
    _wait_for_steps(run, 2, proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for f in list_checkpoints(run):  # whatever was written is complete
        read_checkpoint(f)
    assert main(_argv(cfg, run, "--max-steps", "2")) == 0, capsys.readouterr().err


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_during_a_checkpoint_write_do_not_abort_it(tmp_path, monkeypatch, sig, code):
    import ncsn.checkpoint as ckpt
    from ncsn.training import Interrupted, train

    real = ckpt.save_checkpoint

    def signalled_mid_write(path, state):
        os.kill(os.getpid(), sig)  # the first asks to stop after this checkpoint...
        os.kill(os.getpid(), sig)  # ...the second arrives while it is being written
        time.sleep(0.05)
        return real(path, state)

    monkeypatch.setattr(ckpt, "save_checkpoint", signalled_mid_write)
    cfg = mlp_config("training.n_iters=100", "training.checkpoint_every=3")
    with pytest.raises(Interrupted, match=f"stopped by {sig.name} at step 3") as e:
        train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert e.value.exit_code == code
    assert read_checkpoint(find_checkpoint(tmp_path / "run"))["step"] == 3


def test_a_second_signal_outside_a_write_stops_with_the_signal_exit_code():
    from ncsn.signals import SignalAbort, StopSignals

    with StopSignals() as s:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert s.signum == signal.SIGTERM
        with pytest.raises(SignalAbort) as e:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert e.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# ---- the metrics log and full or read-only disks ----


def test_a_half_written_metrics_line_is_dropped_on_resume(tmp_path):
    from ncsn.training import train

    run = tmp_path / "run"
    train(mlp_config("training.n_iters=4"), run, progress=False, log=lambda m: None)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.2')  # the crash came mid-line
    train(mlp_config("training.n_iters=6"), run, progress=False, log=lambda m: None)
    assert _logged_steps(run) == [1, 2, 3, 4, 5, 6]


def test_the_metrics_trim_is_atomic(tmp_path, monkeypatch):
    from ncsn.io import WriteError
    from ncsn.runlog import MetricsLog

    log = tmp_path / "metrics.jsonl"
    text = '{"step": 1}\n{"step": 2}\n{"step": 3, "lo'
    log.write_text(text)

    def crash(*a):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(WriteError, match="metrics.jsonl.*Input/output error"):
        MetricsLog(tmp_path, 1, tensorboard=False)
    assert log.read_text() == text and [p.name for p in tmp_path.iterdir()] == [log.name]


def _fail_writes(monkeypatch, match, err=errno.ENOSPC):
    """Make writes of files whose name contains ``match`` fail as on a full disk."""
    import ncsn.io

    real_fsync, real_mkstemp = os.fsync, ncsn.io.tempfile.mkstemp

    def fsync(fd):
        if match in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(err, os.strerror(err))
        return real_fsync(fd)

    def mkstemp(*a, **k):
        if err == errno.EROFS and match in str(k.get("dir")):
            raise OSError(err, os.strerror(err))
        return real_mkstemp(*a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(ncsn.io.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    "match, err", [("step_00000004", errno.ENOSPC), ("checkpoints", errno.EROFS)]
)
def test_full_or_read_only_disk_while_training(tmp_path, monkeypatch, capsys, match, err):
    from ncsn.cli import main

    cfg = save_config(mlp_config("training.n_iters=6"), tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    assert main(_argv(cfg, run, "--max-steps", "2")) == 0
    _fail_writes(monkeypatch, match, err)
    msg = _one_line(capsys, main(_argv(cfg, run)))
    assert os.strerror(err) in msg and "step_00000004" in msg and "intact" in msg
    monkeypatch.undo()
    assert find_checkpoint(run).name == "step_00000002.safetensors"
    assert read_checkpoint(find_checkpoint(run))["step"] == 2
    assert not list((run / "checkpoints").glob(".*"))


def test_full_disk_while_writing_samples(tmp_path, monkeypatch, capsys):
    from ncsn.cli import main
    from ncsn.training import train

    train(mlp_config("training.n_iters=2"), tmp_path / "run", progress=False, log=lambda m: 0)
    _fail_writes(monkeypatch, "out.png")
    argv = ["sample", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "out.png")]
    msg = _one_line(capsys, main([*argv, "--n", "2", "--steps", "1", "--device", "cpu"]))
    assert "No space left on device" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
