"""The README's main job: the digits default makes recognisable digits of all ten classes."""

import sys
from pathlib import Path

import pytest

from ncsn.api import load_checkpoint, sample
from ncsn.config import load_config
from ncsn.imaging import save_npz
from ncsn.training import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from check_digits import check  # noqa: E402


@pytest.mark.slow
def test_digits_default_samples_are_digits_of_every_class(tmp_path):
    # the full bundled config, as `make demo` runs it (about 3 minutes on 2 CPU cores)
    train(load_config("digits"), tmp_path / "run", progress=False, log=lambda m: None)
    model, cfg = load_checkpoint(tmp_path / "run")
    x = sample(model, cfg, 200, seed=0)
    save_npz(tmp_path / "s.npz", x)
    res = check(str(tmp_path / "s.npz"), "digits", min_fraction=0.03, min_confidence=0.8)
    assert res["passed"], res
