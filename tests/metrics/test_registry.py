"""The metric registry: names come from it, a registered metric runs through evaluate()."""

import pytest
import torch

from ncsn.errors import ConfigError
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
