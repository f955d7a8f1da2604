"""Fixtures for the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Run the (tiny) model tests on one intra-op thread.

    With batches of 1-3 small images threading buys nothing, and on a busy 2-core machine
    OpenMP worker threads that wait on each other made these tests ~20x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
