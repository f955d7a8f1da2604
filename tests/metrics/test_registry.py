"""The metric registry: names come from it, a registered metric runs through evaluate()."""

import pytest
import torch

from ncsn.errors import ConfigError, DataError
from ncsn.metrics import evaluate, metric_names, register_metric
from ncsn.metrics import registry as reg


@pytest.fixture
def mean_metric():
    @register_metric("test-mean", needs=(reg.SAMPLES,))
    def mean(ctx):
        ctx.protocol["test-mean"] = {"n": len(ctx.samples)}
        return float(ctx.samples.mean())

    yield "test-mean"
    del reg._METRICS["test-mean"]


def test_shipped_names_come_from_the_registry():
    from ncsn.metrics.evaluate import ALL_METRICS, MODEL_ONLY_METRICS

    assert metric_names() == ALL_METRICS
    assert set(ALL_METRICS) == {"fid", "is", "kid", "dfid", "dkid", "dis", "classes"} | {
        "dsm",
        "nn",
        "bpd",
    }
    assert MODEL_ONLY_METRICS == ("dsm", "bpd")  # the ones that need no samples


def test_a_registered_metric_runs_through_evaluate(mean_metric):
    x = torch.full((3, 1, 4, 4), 0.25)
    out = evaluate(x, metrics=[mean_metric.upper()], progress=False)
    assert out[mean_metric] == pytest.approx(0.25)
    assert out["protocol"][mean_metric] == {"n": 3}
    assert out["protocol"]["n_samples"] == 3


def test_needs_are_checked_before_any_work(mean_metric):
    with pytest.raises(ValueError, match="already registered"):
        register_metric(mean_metric)(lambda ctx: 0)
    with pytest.raises(ValueError, match="unknown inputs"):
        register_metric("x", needs=("weights",))
    with pytest.raises(ConfigError, match="unknown metrics \\['nope'\\]; choose from fid, is"):
        evaluate(None, metrics=["nope"])
    with pytest.raises(ConfigError, match="metric dsm needs a score function"):
        evaluate(None, metrics=["dsm"], dataset="digits")
    with pytest.raises(ConfigError, match=r"\['fid', 'nn'\] need a data set"):
        evaluate(torch.rand(3, 1, 4, 4), metrics=["fid", "nn", "is"])


@pytest.mark.parametrize("metrics", [["dfid"], ["classes", "nn"], ["fid"], ["kid", "dis"]])
def test_every_input_a_metric_reads_is_opened_before_the_samples_are_drawn(tmp_path, metrics):
    """A missing data set (or Inception weights file) fails before ``samples()`` is called."""
    drawn = []

    def draw():
        drawn.append(1)
        return torch.rand(10, 1, 28, 28)

    no_weights = tmp_path / "no-weights.pt"
    with pytest.raises(DataError, match="MNIST not found|no-weights"):
        evaluate(
            draw, metrics=metrics, dataset="mnist", data_root=tmp_path, progress=False,
            inception_weights=no_weights,
        )  # fmt: skip
    assert drawn == []


def test_samples_may_be_a_function_called_once_after_the_checks():
    calls = []
    out = evaluate(
        lambda: calls.append(1) or torch.rand(50, 1, 8, 8), metrics=["classes"], dataset="digits",
        progress=False,
    )  # fmt: skip
    assert calls == [1] and sum(out["classes"]["counts"]) == 50
