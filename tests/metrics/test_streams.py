"""Image streams: .npz files read batch by batch and checked before work, data set subsets,
content hashes; Inception metrics that never hold the whole sample set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncsn.errors import DataError
from ncsn.metrics.streams import ImageBatches, content_digest, from_dataset, from_npz, from_tensor


def _images(n=7, c=1, size=5, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_is_streamed_in_batches(tmp_path, compressed):
    x = _images()
    path = tmp_path / "s.npz"
    (np.savez_compressed if compressed else np.savez)(path, samples=x.numpy(), labels=np.arange(7))
    stream = from_npz(path)
    assert len(stream) == 7 and stream.shape == (1, 5, 5) and stream.source["file"] == str(path)
    sizes = [len(b) for b in stream.batches(3)]
    assert sizes == [3, 3, 1]
    torch.testing.assert_close(stream.tensor(3), x, rtol=0, atol=0)
    torch.testing.assert_close(stream.head(4).tensor(3), x[:4], rtol=0, atol=0)
    u8 = tmp_path / "u8.npz"
    np.savez(u8, samples=(x.numpy() * 255).round().astype(np.uint8))
    torch.testing.assert_close(from_npz(u8).tensor(), (x * 255).round() / 255)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 2, 5, 5), np.float32), "shape"),
        (np.zeros((4, 5, 5), np.float32), "shape"),
        (np.zeros((1, 1, 5, 5), np.float32), "N >= 2"),
        (np.zeros((4, 1, 5, 5), np.int32), "dtype int32"),
        (np.full((4, 1, 5, 5), 1.5, np.float32), r"ranges over \[1.5, 1.5\]"),
        (np.full((4, 1, 5, 5), np.nan, np.float32), "NaN"),
    ],
)
def test_npz_checked_before_work(tmp_path, array, match):
    path = tmp_path / "bad.npz"
    np.savez(path, samples=array)
    with pytest.raises(DataError, match=match) as info:
        from_npz(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_npz_missing_file_or_key(tmp_path):
    with pytest.raises(DataError, match="not found"):
        from_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 1, 2, 2), np.float32))
    with pytest.raises(DataError, match="no 'samples' array \\(keys: images\\)"):
        from_npz(tmp_path / "k.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read"):
        from_npz(tmp_path / "junk.npz")


def test_content_digest_follows_content_not_source(tmp_path):
    x = (_images() * 255).round() / 255
    np.savez(tmp_path / "a.npz", samples=x.numpy())
    np.savez_compressed(tmp_path / "b.npz", samples=x.numpy())
    digest = content_digest(from_tensor(x))
    assert content_digest(from_npz(tmp_path / "a.npz")) == digest
    assert content_digest(from_npz(tmp_path / "b.npz"), batch_size=2) == digest
    assert content_digest(from_tensor(x + 0.2 / 255)) == digest  # same uint8 images
    assert content_digest(from_tensor(x.flip(0))) != digest
    assert content_digest(from_tensor(x[:6])) != digest


def test_dataset_subset_matches_evaluate_reference():
    from ncsn.data import get_dataset
    from ncsn.metrics.context import subset_images

    test = get_dataset("digits", split="test")
    stream = from_dataset(test, 50)
    assert len(stream) == 50 and stream.shape == (1, 8, 8)
    torch.testing.assert_close(stream.tensor(16), subset_images(test, 50))


class _FeatureNet(torch.nn.Module):
    """A cheap stand-in for the Inception network (16-d features of the 299x299 input)."""

    fc = None

    def forward(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        g = torch.Generator().manual_seed(0)
        return pooled @ torch.rand(pooled.shape[1], 16, generator=g), None


@pytest.fixture
def cheap_extractor():
    from ncsn.metrics.inception import InceptionExtractor

    ext = InceptionExtractor(random_init=True, device="cpu")
    ext.net, ext.has_logits = _FeatureNet(), False
    return ext


def test_inception_metrics_stream_the_samples(cheap_extractor, tmp_path, monkeypatch):
    """Only fid/kid asked: the samples are read batch by batch, never as one tensor, and a
    reference with the same content (another file) reuses the cached statistics."""
    from ncsn.metrics import evaluate
    from ncsn.metrics import inception_metrics as im

    monkeypatch.setenv("NCSN_CACHE", str(tmp_path))
    x, ref = _images(9, seed=1), _images(6, seed=2)
    seen = []

    def batches(bs):
        for start in range(0, 9, 4):
            seen.append(len(x[start : start + 4]))
            yield x[start : start + 4]

    stream = ImageBatches(9, (1, 5, 5), batches, {"kind": "sampler"}, once=True)
    monkeypatch.setattr(ImageBatches, "tensor", lambda *a: pytest.fail("materialised"))
    np.savez(tmp_path / "r1.npz", samples=ref.numpy())
    kw = dict(metrics=["fid", "kid"], inception_weights=cheap_extractor, progress=False)
    kw |= dict(batch_size=3, kid_subsets=2)
    with pytest.warns(im.SmallSampleWarning, match="N = 9 < 50,000"):
        out = evaluate(stream, reference=from_npz(tmp_path / "r1.npz"), **kw)
    assert seen == [4, 4, 1] and out["protocol"]["n_samples"] == 9
    assert out["protocol"]["reference"] == {"file": str(tmp_path / "r1.npz"), "n": 6}
    first = out["protocol"]["inception"]["reference"]
    np.savez_compressed(tmp_path / "r2.npz", samples=ref.numpy())
    monkeypatch.setattr(im, "cached_reference_stats", _no_compute(im.cached_reference_stats))
    with pytest.warns(im.SmallSampleWarning):
        again = evaluate(from_tensor(x), reference=from_npz(tmp_path / "r2.npz"), **kw)
    assert again["protocol"]["inception"]["reference"]["stats_cache"] == first["stats_cache"]
    assert again["fid"] == pytest.approx(out["fid"], rel=1e-6)  # batches split differently


def _no_compute(real):
    def wrapped(content, n, extractor_id, compute, **kw):
        return real(content, n, extractor_id, lambda: pytest.fail("recomputed"), **kw)

    return wrapped


def test_fid_of_a_set_against_itself_is_zero(cheap_extractor, monkeypatch, tmp_path):
    from ncsn.metrics import evaluate

    monkeypatch.setenv("NCSN_CACHE", str(tmp_path))
    x = _images(40, c=3, seed=3)
    kw = dict(inception_weights=cheap_extractor, progress=False, kid_subsets=5, batch_size=16)
    with pytest.warns(UserWarning):
        same = evaluate(x, metrics=["fid", "kid"], reference=x, **kw)
        other = evaluate(x, metrics=["fid"], reference=_images(40, c=3, seed=4) * 0.5, **kw)
    assert abs(same["fid"]) < 1e-6 and other["fid"] > 1e-3
    with pytest.raises(Exception, match="need a data set"):
        evaluate(x, metrics=["fid", "classes"], reference=x, **kw)
