"""Shared fixtures. Closed-form scores live in ``closed_forms.py``, shared configs in
``helpers.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:  # respect an explicit setting (e.g. a busy machine)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` runs two workers: one thread each (and in the trainers they start), so
        # two cores are busy without OpenMP threads waiting on each other
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NCSN_SHARED_DATA", REPO.parent / "shared" / "data"))
OFFICIAL_REFS = Path(os.environ.get("NCSN_SHARED", REPO.parent / "shared")) / "official-refs"
OFFICIAL_FOLDERS = ("ncsn_v1_mnist", "ncsn_v1_cifar10", "ncsnv2_cifar10", "ncsnv2_celeba64")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def official_refs() -> Path:
    """../shared/official-refs: checkpoints in the authors' formats with the official outputs."""
    if not all((OFFICIAL_REFS / f / "checkpoint.pth").is_file() for f in OFFICIAL_FOLDERS):
        pytest.skip("../shared/official-refs is not present")
    return OFFICIAL_REFS


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 10-step run of the tiny digits U-Net (2 Langevin steps per level when
    sampling), trained once per session. Read it, never write into it."""
    from ncsn.training import train

    from helpers import tiny_config

    workdir = tmp_path_factory.mktemp("tiny_run")
    cfg = tiny_config("training.n_iters=10", "sampling.n_steps_each=2")
    train(cfg, workdir, progress=False, log=lambda m: None)
    return workdir


@pytest.fixture(autouse=True)
def _single_thread_for_model_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run the (tiny) model tests on one intra-op thread.

    With batches of 1-3 small images threading buys nothing, and on a busy 2-core machine
    OpenMP worker threads that wait on each other made these tests ~20x slower.
    """
    if "models" not in Path(str(request.node.path)).parts:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
