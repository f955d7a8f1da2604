"""Training survives signals and kill -9: real subprocesses, real signals."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from ncsn.checkpoint import find_checkpoint, read_checkpoint
from ncsn.config import save_config

from test_training import tiny_config


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
        _wait_for_steps(run, before + 1, proc)
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        logged = _logged_steps(run)
        state = read_checkpoint(find_checkpoint(run))  # the latest checkpoint is intact
        assert state["step"] >= logged[-1] - every
    proc = _start(cfg, run)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert read_checkpoint(find_checkpoint(run))["step"] == total
    assert _logged_steps(run) == list(range(1, total + 1))  # no gaps, no repeats
    assert not list((run / "checkpoints").glob(".*.tmp"))  # a killed write's leftovers removed
