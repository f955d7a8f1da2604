"""Several processes (torchrun, gloo on the CPU): same numbers as one process, resumable on any.

Why the comparisons below are exact. Every rank draws the random numbers of the whole global
batch from the same generator and uses its own rows, and reads its own rows of the same data
permutation, so a step sees the same inputs whatever the number of processes. With 2 processes
rank r computes the gradient g_r of the mean loss over its 16 rows; DDP divides it by 2 (exact)
and sums the two (a + b = b + a exactly). One process with ``training.accumulate=2`` computes
the same g_0 and g_1 on the same 16-row micro-batches, scales each by 1/2 through the loss
(exact: a power of two) and adds them. So the two runs perform the same floating-point
operations and must agree bit for bit; against one process on the whole batch of 32
(``accumulate=1``) only the order of the sums inside the network's backward pass differs.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ncsn.checkpoint import find_checkpoint, read_checkpoint
from ncsn.config import save_config
from ncsn.train_state import Batches
from ncsn.training import train

from helpers import ddp_mlp_config

MIN_STEPS = 20


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if '"loss"' in x]


def _train(cfg, workdir, **kw):
    return train(cfg, workdir, progress=False, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """A 2-process torchrun run stopped by SIGTERM after at least 20 steps."""
    tmp = tmp_path_factory.mktemp("ddp")
    cfg_path = save_config(ddp_mlp_config("training.n_iters=100000"), tmp / "cfg.yaml")
    run = tmp / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "ncsn", "train", "--config", str(cfg_path), "--workdir", str(run)]
    cmd += ["--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 120
    while not (run / "metrics.jsonl").exists() or len(_losses(run)) < MIN_STEPS:
        if proc.poll() is not None or time.time() > end:
            proc.kill()
            raise AssertionError(f"torchrun made no progress: {proc.communicate()[1]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
    _, err = proc.communicate(timeout=120)
    return tmp, run, err


def test_two_processes_reach_the_parameters_of_one(two_process_run):
    tmp, run, err = two_process_run
    state = read_checkpoint(find_checkpoint(run))
    k = state["step"]
    assert k >= MIN_STEPS
    # the same micro-batches in one process (accumulate=2): bit-identical, losses and weights
    one = _train(ddp_mlp_config(f"training.n_iters={k}", "training.accumulate=2"), tmp / "acc2")
    ref = read_checkpoint(one.checkpoint)
    assert _losses(tmp / "acc2") == _losses(run)
    for part in ("model", "ema"):
        for name, v in state[part].items():
            assert torch.equal(v, ref[part][name]), (part, name)
    # the whole batch of 32 in one process: equal up to the order of sums in the backward pass
    _train(ddp_mlp_config(f"training.n_iters={k}"), tmp / "acc1")
    whole = read_checkpoint(find_checkpoint(tmp / "acc1"))
    for name, v in state["model"].items():
        torch.testing.assert_close(v, whole["model"][name], rtol=0, atol=1e-6)
    torch.testing.assert_close(_losses(tmp / "acc1"), _losses(run), rtol=1e-6, atol=0)


def test_sigterm_on_two_processes_then_resume_on_one_is_exact(two_process_run):
    tmp, run, err = two_process_run
    k = read_checkpoint(find_checkpoint(run))["step"]
    assert err.count(f"stopped by SIGTERM at step {k}; checkpoint") == 1  # rank 0 only
    assert _losses(run)[-1] is not None and len(_losses(run)) == k  # rank 0 logged every step
    # resume the 2-process checkpoint in one process and go 10 steps further ...
    more = [f"training.n_iters={k + 10}", "training.accumulate=2"]
    res = _train(ddp_mlp_config(*more), run, resume=True)
    assert res.step == k + 10
    # ... exactly as a one-process run that never stopped
    _train(ddp_mlp_config(*more), tmp / "straight")
    assert _losses(run) == _losses(tmp / "straight")
    a, b = read_checkpoint(res.checkpoint), read_checkpoint(find_checkpoint(tmp / "straight"))
    for part in ("model", "ema"):
        for name, v in a[part].items():
            assert torch.equal(v, b[part][name]), (part, name)


def test_ranks_read_disjoint_slices_of_the_same_global_batch():
    class Items:
        def __len__(self):
            return 10

        def get_batch(self, idx):
            return torch.as_tensor(idx).float(), None

    def batches(rank, world):
        return Batches(Items(), 4, torch.Generator().manual_seed(0), rank, world)

    one, ranks = batches(0, 1), [batches(r, 2) for r in range(2)]
    for _ in range(5):  # crosses an epoch boundary (a new permutation)
        whole = one.next()
        assert torch.equal(torch.cat([b.next() for b in ranks]), whole)


def test_batch_that_does_not_split_is_refused_in_one_line(tmp_path, capsys):
    from ncsn.cli import main

    cfg = save_config(ddp_mlp_config("training.n_iters=2"), tmp_path / "cfg.yaml")
    argv = ["train", "--config", str(cfg), "--workdir", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*argv, "--set", "training.accumulate=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "training.batch_size=32 does not split into 1 process(es) x training.accumulate=3" in err
