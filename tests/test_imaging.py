"""Tests for ncsn.imaging: grids, PNG/GIF output, masks and sample files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.errors import DataError, NCSNError
from ncsn.imaging import (
    MASK_SPECS,
    convert_channels,
    load_npz,
    make_grid,
    make_mask,
    resize_images,
    save_gif,
    save_image_grid,
    save_npz,
)


@pytest.mark.parametrize(
    ("n", "nrow", "padding"), [(1, None, 2), (10, None, 2), (10, 4, 0), (7, 7, 3), (5, 9, 1)]
)
def test_make_grid_size_formula(n, nrow, padding):
    c, h, w = 3, 5, 6
    grid = make_grid(torch.rand(n, c, h, w), nrow=nrow, padding=padding)
    per_row = min(n, nrow or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / per_row)
    assert grid.shape == (c, rows * (h + padding) + padding, per_row * (w + padding) + padding)


def test_make_grid_places_and_clamps():
    images = torch.stack([torch.full((1, 2, 2), 0.25), torch.full((1, 2, 2), 3.0)])
    grid = make_grid(images, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (1, 4, 7)
    assert torch.all(grid[:, 1:3, 1:3] == 0.25)
    assert torch.all(grid[:, 1:3, 4:6] == 1.0)
    assert grid[0, 0, 0] == 0.5
    assert make_grid(torch.rand(1, 4, 4)).shape == (1, 8, 8)


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_save_image_grid_png(tmp_path, channels, mode):
    images = torch.rand(6, channels, 8, 8)
    path = save_image_grid(images, tmp_path / "grid.png", nrow=3, scale=4)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == mode
        grid = make_grid(images, nrow=3)
        assert im.size == (grid.shape[2] * 4, grid.shape[1] * 4)
        arr = np.asarray(im)
    top_left = arr[8, 8] if channels == 1 else arr[8, 8, 0]
    assert abs(int(top_left) - round(float(images[0, 0, 0, 0]) * 255)) <= 1
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_save_image_grid_missing_folder(tmp_path):
    with pytest.raises(NCSNError, match="does not exist"):
        save_image_grid(torch.rand(2, 1, 4, 4), tmp_path / "nope" / "g.png")


def test_save_gif_frames(tmp_path):
    frames = [torch.full((4, 1, 8, 8), i / 5) for i in range(5)]
    path = save_gif(frames, tmp_path / "a.gif", nrow=2, duration_ms=50, final_hold_ms=700)
    with Image.open(path) as im:
        assert im.n_frames == 5
        assert im.size == tuple(reversed(make_grid(frames[0], nrow=2).shape[1:]))
        im.seek(4)
        assert im.info["duration"] == 700
    stacked = torch.rand(3, 2, 3, 6, 6)
    with Image.open(save_gif(stacked, tmp_path / "b.gif", scale=2)) as im:
        assert im.n_frames == 3


@pytest.mark.parametrize(
    ("spec", "fraction"),
    [
        ("left-half", 0.5),
        ("right-half", 0.5),
        ("top-half", 0.5),
        ("bottom-half", 0.5),
        ("centre", 0.75),
        ("center", 0.75),
    ],
)
def test_fixed_masks(spec, fraction):
    mask = make_mask(spec, shape=(3, 8, 8))
    assert mask.shape == (1, 8, 8) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert float(mask.mean()) == fraction


def test_mask_orientation():
    left = make_mask("left-half", shape=(1, 4, 4))[0]
    assert left[:, :2].eq(1).all() and left[:, 2:].eq(0).all()
    top = make_mask("top-half", shape=(1, 4, 4))[0]
    assert top[:2].eq(1).all() and top[2:].eq(0).all()
    centre = make_mask("centre", shape=(1, 8, 8))[0]
    assert centre[2:6, 2:6].eq(0).all() and centre[0].eq(1).all()
    assert set(MASK_SPECS) >= {"left-half", "random"}


def test_random_mask_fraction_and_generator():
    a = make_mask("random", shape=(1, 64, 64), generator=torch.Generator().manual_seed(3))
    b = make_mask("random", shape=(1, 64, 64), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert abs(float(a.mean()) - 0.5) < 0.05
    c = make_mask("random", shape=(1, 64, 64), fraction=0.2)
    assert abs(float(c.mean()) - 0.2) < 0.05


def test_png_mask_resized(tmp_path):
    arr = np.zeros((4, 4, 3), dtype=np.uint8)
    arr[:, :2] = 255
    Image.fromarray(arr, "RGB").save(tmp_path / "m.png")
    mask = make_mask(tmp_path / "m.png", shape=(3, 8, 8))
    assert mask.shape == (1, 8, 8)
    assert mask[0, :, :4].eq(1).all() and mask[0, :, 4:].eq(0).all()
    assert torch.equal(make_mask(str(tmp_path / "m.png"), shape=(3, 8, 8)), mask)


def test_mask_errors(tmp_path):
    with pytest.raises(DataError, match="left-half.*random"):
        make_mask("diagonal", shape=(1, 8, 8))
    with pytest.raises(DataError, match="missing.png"):
        make_mask(tmp_path / "missing.png", shape=(1, 8, 8))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.png"):
        make_mask(str(tmp_path / "bad.png"), shape=(1, 8, 8))


def test_npz_round_trip(tmp_path):
    samples = torch.rand(5, 3, 4, 4)
    path = save_npz(tmp_path / "s.npz", samples, labels=torch.arange(5))
    back = load_npz(path)
    assert back.dtype == torch.float32 and torch.equal(back, samples)
    with np.load(path) as z:
        assert z["samples"].dtype == np.float32 and z["labels"].tolist() == list(range(5))


def test_npz_errors(tmp_path):
    with pytest.raises(DataError, match="missing.npz"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "nokey.npz", images=np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"nokey.npz.*samples"):
        load_npz(tmp_path / "nokey.npz")
    np.savez(tmp_path / "flat.npz", samples=np.zeros((4, 4), np.float32))
    with pytest.raises(DataError, match=r"flat.npz.*\(N, C, H, W\)"):
        load_npz(tmp_path / "flat.npz")
    np.savez(tmp_path / "range.npz", samples=np.full((1, 1, 2, 2), 5.0, np.float32))
    with pytest.raises(DataError, match="range.npz"):
        load_npz(tmp_path / "range.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(ValueError):
        save_npz(tmp_path / "x.npz", torch.rand(2, 2))


def test_convert_and_resize():
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    gray = convert_channels(rgb, 1)
    assert gray.shape == (2, 1, 8, 8) and gray.dtype == torch.uint8
    assert convert_channels(gray, 3).shape == (2, 3, 8, 8)
    small = resize_images(torch.rand(2, 1, 8, 8), 4)
    assert small.shape == (2, 1, 4, 4) and float(small.max()) <= 1.0
