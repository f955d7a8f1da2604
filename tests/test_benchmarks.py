"""The benchmark scripts treat bad input as the ``ncsn`` command does: one line, exit 2."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, args, says",
    [
        ("quality_vs_nfe.py", ["--checkpoint", "/no/such/run", "--estimate"], "/no/such/run"),
        ("arch_sweep.py", ["--config", "no-such-config", "--out", "x.json"], "no-such-config"),
        ("arch_sweep.py", ["--set", "model.bogus=1", "--out", "x.json"], "model.bogus"),
        ("compare_samplers.py", ["--checkpoint", ".", "--out", "x.json"], "no checkpoint"),
        ("cpu_hour_sweep.py", ["--variants", "ema0.9995", "--out", "x.json"], "'ema0.9995'"),
        ("class_rule.py", ["no-such-report.json"], "no-such-report.json"),
        ("class_rule.py", ["r.json", "--out", "./r.json"], "one of the reports read"),
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


def test_a_benchmark_that_fails_on_its_first_row_leaves_no_folder(tmp_path, tiny_run):
    out = tmp_path / "new" / "q.json"
    args = ["--checkpoint", str(tiny_run), "--samplers", "ancestral", "--nfe", "5", "--n", "8"]
    args += ["--seeds", "0", "--metrics", "fid", "--inception-weights", str(tmp_path / "no.pt")]
    run = subprocess.run(
        [sys.executable, str(BENCH / "quality_vs_nfe.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "no.pt" in run.stderr, run.stderr
    assert not (tmp_path / "new").exists()


def _benchmark(monkeypatch, name: str):
    """The benchmark script ``name`` imported as a module (its helpers are importable there)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module(name)


@pytest.fixture
def class_rule(monkeypatch):
    return _benchmark(monkeypatch, "class_rule")


def test_class_rule_counts_the_bounds_as_inside(class_rule):
    counts = np.array([[80, 120, 100, 100, 100, 100, 100, 100, 100, 100], [79] + [921 // 9] * 9])
    assert class_rule.passes(counts, 0.08, 0.12).tolist() == [True, False]


def test_class_rule_pass_rate_matches_the_binomial(class_rule):
    # two classes at 50 %: the rule "both in 45-55 %" of 1,000 holds iff 450 <= X <= 550
    exact = stats.binom.cdf(550, 1000, 0.5) - stats.binom.cdf(449, 1000, 0.5)
    rng = np.random.default_rng(0)
    rate = class_rule.implied_pass_rate(np.array([0.5, 0.5]), 1000, 20000, 0.45, 0.55, rng)
    assert abs(rate - exact) < 4 * np.sqrt(exact * (1 - exact) / 20000)
    # two of three classes on the upper bound: both stay at or below it only rarely
    rate = class_rule.implied_pass_rate(np.array([0.2, 0.4, 0.4]), 100, 4000, 0.0, 0.4, rng)
    assert rate < 0.3


def test_class_rule_pools_a_run_and_setting_over_files(class_rule, tmp_path):
    heun = {"sampler": "heun", "nfe": 99, "s_churn": 40.0}
    rows = [
        {**heun, "seed": 0, "class_counts": [5, 5]},
        {**heun, "seed": 1, "class_counts": [4, 6]},
    ]
    rows.append({**heun, "s_churn": 0.0, "seed": 0, "class_counts": [2, 8]})
    samples = {"checkpoint": "runs/a/checkpoints/step_9.safetensors", **heun, "seed": 2}
    (tmp_path / "t.json").write_text(json.dumps({"checkpoint": "runs/a", "rows": rows}))
    report = {"classes": {"counts": [3, 7]}, "protocol": {"samples": samples}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    found = class_rule.evaluations(tmp_path / "t.json", "mnist") + class_rule.evaluations(
        tmp_path / "r.json", "mnist"
    )
    groups = class_rule.grouped(found)
    churn40 = [v for k, v in groups.items() if "'s_churn': 40.0" in k]
    assert len(groups) == 2 and churn40 == [[[5, 5], [4, 6], [3, 7]]], groups
    # a report of samples scored from a file has no sampler setting: labelled by its path
    (tmp_path / "f.json").write_text(json.dumps({"classes": {"counts": [1, 1]}, "protocol": {}}))
    assert class_rule.grouped(class_rule.evaluations(tmp_path / "f.json", "mnist")) == {
        str(tmp_path / "f.json"): [[1, 1]]
    }
    with pytest.raises(class_rule.DataError, match="seed 0 of one setting is given twice"):
        class_rule.grouped(found + class_rule.evaluations(tmp_path / "t.json", "mnist")[:1])
    for bad, says in [
        ({"rows": [{"sampler": "heun"}]}, "no class counts"),
        ([1, 2], "not a report"),
        ({"rows": [{**heun, "class_counts": [0, 0]}]}, "no samples"),
        ({"rows": [{**heun, "class_counts": [-1, 3]}]}, "are not counts"),
        ({"dataset": "digits", "rows": rows}, "samples of 'digits', not 'mnist'"),
        ({**report, "protocol": {"dataset": "digits"}}, "samples of 'digits', not 'mnist'"),
    ]:
        (tmp_path / "x.json").write_text(json.dumps(bad))
        with pytest.raises(class_rule.DataError, match=says):
            class_rule.evaluations(tmp_path / "x.json", "mnist")


@pytest.fixture
def cpu_hour_sweep(monkeypatch):
    return _benchmark(monkeypatch, "cpu_hour_sweep")


def test_cpu_hour_sweep_runs_a_variant_named_in_variants_once(cpu_hour_sweep):
    plan = cpu_hour_sweep.make_plan("p0,lr2e-3", ["p0=training.p_mean=0;training.p_std=2"])
    assert plan == {
        "lr2e-3": cpu_hour_sweep.VARIANTS["lr2e-3"],
        "p0": ["training.p_mean=0", "training.p_std=2"],
    }
    assert list(cpu_hour_sweep.make_plan("", ["base="])) == ["base"]  # no overrides


@pytest.mark.parametrize("item", ["=training.lr=1", "../up=training.lr=1", "..=x", "a/b=x"])
def test_cpu_hour_sweep_refuses_a_variant_name_that_is_not_a_folder(cpu_hour_sweep, item):
    from ncsn.errors import ConfigError

    with pytest.raises(ConfigError, match="not a folder name"):
        cpu_hour_sweep.make_plan("", [item])
