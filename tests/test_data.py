"""Tests for ncsn.data: built-in data sets, image folders, wrapping and pre/post-processing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from ncsn.api import known_shape
from ncsn.data import (
    DATASETS,
    DatasetInfo,
    DatasetRecord,
    TensorImageDataset,
    as_tensor,
    dataset_info,
    dataset_names,
    get_dataset,
    wrap_dataset,
)
from ncsn.errors import ConfigError, DataError
from ncsn.transforms import postprocess, preprocess, random_hflip

SHARED = Path(
    os.environ.get("NCSN_SHARED_DATA")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
)
HAS_MNIST = (SHARED / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
CIFAR_DIR = SHARED / "cifar10-jpeg-5k"
HAS_CIFAR = CIFAR_DIR.is_dir()


def _write_png(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


# ----------------------------------------------------------------------------- digits


def test_digits_splits_disjoint_deterministic_and_complete():
    splits = {s: get_dataset("digits", split=s) for s in ("train", "val", "test")}
    idx = {s: set(d.indices.tolist()) for s, d in splits.items()}
    assert not idx["train"] & idx["val"]
    assert not idx["train"] & idx["test"]
    assert not idx["val"] & idx["test"]
    assert len(idx["train"] | idx["val"] | idx["test"]) == 1797
    assert len(splits["test"]) == 359  # last 20%
    assert len(splits["val"]) == 72  # 5% of the rest
    again = get_dataset("digits", split="train")
    assert torch.equal(again.indices, splits["train"].indices)
    assert torch.equal(as_tensor(again)[0], as_tensor(splits["train"])[0])


def test_digits_items_shape_range_labels():
    ds = get_dataset("digits")
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert isinstance(y, int)
    images, labels = as_tensor(ds)
    assert images.shape == (len(ds), 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert (ds.channels, ds.image_size, ds.num_classes) == (1, 8, 10)
    assert isinstance(ds, TensorImageDataset)
    assert torch.equal(ds[5][0], images[5])  # items are the stored images, never flipped


def test_digits_as_tensor_is_a_copy():
    ds = get_dataset("digits")
    images, _ = as_tensor(ds)
    images.zero_()
    assert float(as_tensor(ds)[0].max()) == 1.0


def test_digits_val_size_options():
    assert len(get_dataset("digits", val_size=0)) == 1438
    assert len(get_dataset("digits", split="val", val_size=100)) == 100
    assert len(get_dataset("digits", split="val", val_size=0.5)) == 719
    assert len(get_dataset("digits", split="all")) == 1797
    with pytest.raises(DataError, match="val_size"):
        get_dataset("digits", split="val", val_size=0)
    with pytest.raises(ConfigError):
        get_dataset("digits", val_size=-1)
    with pytest.raises(ConfigError):
        get_dataset("digits", val_size=5000)


def test_digits_resize_and_channels():
    ds = get_dataset("digits", image_size=16, channels=3)
    x, _ = ds[3]
    assert x.shape == (3, 16, 16)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    images, labels = ds.get_batch([0, 1, 3])
    assert images.shape == (3, 3, 16, 16) and torch.equal(images[2], x)
    assert labels.tolist() == [ds[i][1] for i in (0, 1, 3)]


def test_digits_dataloader_batches():
    batch, labels = next(iter(DataLoader(get_dataset("digits"), batch_size=16)))
    assert batch.shape == (16, 1, 8, 8) and labels.shape == (16,)


def test_bad_name_split_and_options():
    with pytest.raises(DataError, match="digits.*mnist.*cifar10.*folder:PATH"):
        get_dataset("imagenet")
    with pytest.raises(DataError, match="split"):
        get_dataset("digits", split="training")
    with pytest.raises(ConfigError):
        get_dataset("digits", channels=2)
    with pytest.raises(ConfigError):
        get_dataset("digits", image_size=0)
    with pytest.raises(DataError, match="all"):
        get_dataset("mnist", split="all")


def test_dataset_info_builtin():
    assert dataset_info("digits") == DatasetInfo("digits", 1, 8, 10)
    assert dataset_info("mnist").image_size == 28
    assert dataset_info("cifar10", image_size=64).image_size == 64
    assert dataset_info("celeba").channels == 3
    assert dataset_names() == (*DATASETS, "folder:PATH")


def test_a_new_data_set_is_one_record_and_one_loader(monkeypatch):
    def load_toy(record, request):
        images = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4) / 31
        return TensorImageDataset(images, name=record.name, num_classes=record.num_classes)

    toy = DatasetRecord("toy", 1, 4, 2, ("train",), True, load_toy, aliases=("toy-set",))
    monkeypatch.setitem(DATASETS, "toy", toy)
    assert len(get_dataset("Toy-Set")) == 2
    assert dataset_info("toy") == DatasetInfo("toy", 1, 4, 2) == toy.info
    assert known_shape("toy") == (1, 4)
    assert "toy" in dataset_names()
    with pytest.raises(DataError, match="no split 'test'"):
        get_dataset("toy", split="test")


# ----------------------------------------------------------------------------- torchvision


def test_missing_mnist_gives_download_hint(tmp_path):
    with pytest.raises(DataError) as info:
        get_dataset("mnist", root=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path) in msg and "MNIST" in msg and "download=True" in msg
    assert "--data-root" in msg


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10", "celeba"])
def test_missing_torchvision_sets(tmp_path, name):
    with pytest.raises(DataError, match="not found under"):
        get_dataset(name, root=tmp_path, split="test")


def test_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSN_DATA_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere"):
        get_dataset("mnist")


def test_corrupt_mnist_is_a_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DataError, match="MNIST under .* could not be read"):
        get_dataset("mnist", root=tmp_path)


@pytest.mark.skipif(not HAS_MNIST, reason="shared MNIST not present")
def test_real_mnist_splits():
    test = get_dataset("mnist", root=SHARED, split="test")
    assert len(test) == 10000
    train = get_dataset("mnist", root=SHARED)
    val = get_dataset("mnist", root=SHARED, split="val")
    assert (len(train), len(val)) == (57000, 3000)
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y <= 9
    images, labels = train.get_batch(torch.arange(256))
    assert images.shape == (256, 1, 28, 28) and float(images.max()) <= 1.0
    assert labels.shape == (256,)


@pytest.mark.skipif(not HAS_CIFAR, reason="shared CIFAR-10 JPEGs not present")
def test_real_cifar_jpeg_folder():
    train = get_dataset(f"folder:{CIFAR_DIR}")
    test = get_dataset(str(CIFAR_DIR), split="test")
    assert (len(train), len(test)) == (4275, 500)
    assert (train.channels, train.image_size, train.num_classes) == (3, 32, 10)
    assert not set(train.files) & set(test.files)
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    images, labels = as_tensor(test)
    assert images.shape == (500, 3, 32, 32) and set(labels.tolist()) == set(range(10))


# ----------------------------------------------------------------------------- folders


def test_flat_gray_folder(tmp_path):
    for i in range(20):
        _write_png(tmp_path / f"img{i:02d}.png", seed=i)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = get_dataset(str(tmp_path), split="all")
    assert len(ds) == 20 and ds.channels == 1 and ds.image_size == 8 and ds.num_classes == 0
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y == -1
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    expected = np.asarray(Image.open(tmp_path / "img00.png"), dtype=np.float32) / 255.0
    assert torch.allclose(x[0], torch.from_numpy(expected))
    parts = [get_dataset(f"folder:{tmp_path}", split=s) for s in ("train", "val", "test")]
    files = [set(p.files) for p in parts]
    assert [len(f) for f in files] == [17, 1, 2]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert parts[0].files == get_dataset(f"folder:{tmp_path}").files


def test_class_folders_rgb_and_gray(tmp_path):
    for c, mode in (("cats", "RGB"), ("dogs", "L")):
        (tmp_path / c).mkdir()
        for i in range(3):
            _write_png(tmp_path / c / f"{i}.png", mode=mode, seed=i)
    ds = get_dataset(f"folder:{tmp_path}", split="all")
    assert ds.channels == 3 and ds.num_classes == 2
    images, labels = as_tensor(ds)
    assert images.shape == (6, 3, 8, 8) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    gray = get_dataset(f"folder:{tmp_path}", split="all", channels=1)
    assert gray[0][0].shape == (1, 8, 8)
    assert dataset_info(f"folder:{tmp_path}").num_classes == 2


def test_mixed_sizes_need_image_size(tmp_path):
    _write_png(tmp_path / "a.png", size=(8, 8))
    _write_png(tmp_path / "b.png", size=(12, 12))
    _write_png(tmp_path / "c.png", size=(12, 10), mode="RGB")
    with pytest.raises(DataError) as info:
        get_dataset(str(tmp_path), split="all")
    msg = str(info.value)
    assert "a.png" in msg and "b.png" in msg and "image_size" in msg and "\n" not in msg
    ds = get_dataset(str(tmp_path), split="all", image_size=6)
    assert ds.channels == 3
    assert all(ds[i][0].shape == (3, 6, 6) for i in range(3))


def test_non_square_images_need_image_size(tmp_path):
    _write_png(tmp_path / "a.png", size=(10, 8))
    with pytest.raises(DataError, match="not square"):
        get_dataset(str(tmp_path), split="all")
    assert get_dataset(str(tmp_path), split="all", image_size=4)[0][0].shape == (1, 4, 4)


def test_unreadable_file_is_named(tmp_path):
    _write_png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="broken.png"):
        get_dataset(str(tmp_path), split="all")


def test_truncated_file_is_named_when_the_split_is_loaded(tmp_path):
    """Its header is fine; the pixels are cut. Loading the split decodes every file."""
    _write_png(tmp_path / "good.png", size=(64, 64))
    data = _write_png(tmp_path / "cut.png", size=(64, 64), seed=1).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        get_dataset(str(tmp_path), split="all")


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="empty"):
        get_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        get_dataset(f"folder:{tmp_path / 'missing'}")


def test_tiny_folder_test_split_error(tmp_path):
    for i in range(3):
        _write_png(tmp_path / f"{i}.png", seed=i)
    assert len(get_dataset(str(tmp_path))) == 3
    with pytest.raises(DataError, match="all"):
        get_dataset(str(tmp_path), split="test")


# ----------------------------------------------------------------------------- wrapping


def test_wrap_tensor_dataset_uint8_hw():
    images = torch.randint(0, 256, (5, 6, 6), dtype=torch.uint8)
    ds = wrap_dataset(TensorDataset(images, torch.arange(5)))
    x, y = ds[2]
    assert x.shape == (1, 6, 6) and x.dtype == torch.float32 and y == 2
    assert torch.allclose(x[0], images[2].float() / 255)
    assert (ds.channels, ds.image_size) == (1, 6)
    all_x, all_y = as_tensor(ds)
    assert all_x.shape == (5, 1, 6, 6) and all_y.tolist() == [0, 1, 2, 3, 4]


def test_wrap_without_labels_numpy_and_pil():
    ds = wrap_dataset(TensorDataset(torch.rand(4, 3, 5, 5)))
    assert ds[0][1] == -1 and ds[0][0].shape == (3, 5, 5)
    hwc = [np.random.default_rng(0).random((5, 5, 3), dtype=np.float32) for _ in range(2)]
    assert wrap_dataset(hwc)[1][0].shape == (3, 5, 5)
    pil = [(Image.new("RGB", (7, 7), (255, 0, 0)), 3)]
    x, y = wrap_dataset(pil)[0]
    assert x.shape == (3, 7, 7) and y == 3 and float(x[0].min()) == 1.0


def test_wrap_rejects_bad_items():
    with pytest.raises(DataError, match="shape"):
        wrap_dataset(TensorDataset(torch.rand(4, 10)))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        wrap_dataset(TensorDataset(torch.rand(4, 1, 5, 5) * 2 - 1))
    with pytest.raises(DataError, match="empty"):
        wrap_dataset([])
    with pytest.raises(DataError, match="str"):
        wrap_dataset(["not an image"])
    ds = get_dataset("digits")
    assert wrap_dataset(ds) is ds


# ----------------------------------------------------------------------------- processing


def test_logit_round_trip_exact():
    x = torch.rand(8, 1, 8, 8)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])
    y = preprocess(x, dequantize=False, logit=True)
    assert torch.isfinite(y).all()
    assert torch.allclose(postprocess(y, logit=True), x, atol=1e-5)
    assert torch.equal(preprocess(x, dequantize=False, logit=False), x)


def test_dequantize_range_and_generator():
    x = torch.randint(0, 256, (4, 3, 8, 8)).float() / 255
    a = preprocess(x, dequantize=True, logit=False, generator=torch.Generator().manual_seed(1))
    b = preprocess(x, dequantize=True, logit=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    base = x * 255 / 256
    assert bool(((a - base) >= 0).all()) and bool(((a - base) <= 1 / 256).all())
    assert float(a.max()) < 1.0
    back = postprocess(preprocess(x, dequantize=True, logit=True), logit=True)
    assert float((back - x).abs().max()) <= 1 / 256 + 1e-5


def test_postprocess_clamps():
    out = postprocess(torch.tensor([-0.5, 0.5, 1.5]), logit=False)
    assert out.tolist() == [0.0, 0.5, 1.0]


def test_random_hflip():
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(random_hflip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_hflip(x, p=0.0), x)


def _fake_celeba(root: Path, n: int = 12) -> None:
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        arr = np.zeros((218, 178, 3), dtype=np.uint8)
        arr[39:179, 19:159] = 200 + i  # the central 140x140 square
        Image.fromarray(arr).save(base / "img_align_celeba" / name)
    parts = [0] * (n - 2) + [2, 2]
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{m} {p}\n" for m, p in zip(names, parts, strict=True))
    )
    (base / "identity_CelebA.txt").write_text("".join(f"{m} 1\n" for m in names))
    for fname, cols in (
        ("list_bbox_celeba.txt", 4),
        ("list_landmarks_align_celeba.txt", 10),
        ("list_attr_celeba.txt", 2),
    ):
        header = f"{n}\n" + " ".join(f"c{j}" for j in range(cols)) + "\n"
        rows = "".join(f"{m} " + " ".join(["1"] * cols) + "\n" for m in names)
        (base / fname).write_text(header + rows)


def test_celeba_crop_resize_and_splits(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    _fake_celeba(tmp_path)
    monkeypatch.setattr(tvd.CelebA, "_check_integrity", lambda self: True)
    train = get_dataset("celeba", root=tmp_path, val_size=2)
    val = get_dataset("celeba", root=tmp_path, split="val", val_size=2)
    test = get_dataset("celeba", root=tmp_path, split="test", image_size=16)
    assert (len(train), len(val), len(test)) == (8, 2, 2)
    x, y = test[0]
    assert x.shape == (3, 16, 16) and y == -1
    assert float(x.min()) > 0.7  # only the central 140x140 crop is kept
    assert train.get_batch([0])[0].shape == (1, 3, 32, 32)


def test_loading_digits_and_training_modules_do_not_import_torchvision():
    """torchvision costs seconds to import; only torchvision data sets, resizing, decoding
    files and writing grids load it."""
    import subprocess
    import sys

    code = (
        "import sys, ncsn.data, ncsn.training, ncsn.imaging, ncsn.metrics.evaluate; "
        "ncsn.data.get_dataset('digits'); print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
