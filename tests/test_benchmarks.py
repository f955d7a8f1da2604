"""The benchmark scripts treat bad input as the ``ncsn`` command does: one line, exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, args, says",
    [
        ("quality_vs_nfe.py", ["--checkpoint", "/no/such/run", "--estimate"], "/no/such/run"),
        ("arch_sweep.py", ["--config", "no-such-config", "--out", "x.json"], "no-such-config"),
        ("arch_sweep.py", ["--set", "model.bogus=1", "--out", "x.json"], "model.bogus"),
        ("compare_samplers.py", ["--checkpoint", ".", "--out", "x.json"], "no checkpoint"),
        ("cpu_hour_sweep.py", ["--variants", "ema0.9995", "--out", "x.json"], "'ema0.9995'"),
    ],
)
def test_a_user_error_is_one_line_without_a_traceback(tmp_path, script, args, says):
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args], cwd=tmp_path, capture_output=True, text=True
    )
    err = out.stderr.strip()
    assert out.returncode == 2, err
    assert err.startswith(f"{script}: error: ") and says in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())  # nothing written
