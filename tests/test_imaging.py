"""Tests for ncsn.imaging: grids, PNG/GIF output and sample files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.data.tensors import convert_channels, resize_images
from ncsn.errors import DataError, NCSNError
from ncsn.imaging import grid_scale, load_npz, make_grid, save_gif, save_image_grid, save_npz


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
        side = grid_scale(8)  # the default upscaling of 8x8 images
        assert side == 8
        assert im.size == tuple(side * s for s in reversed(make_grid(frames[0], nrow=2).shape[1:]))
        im.seek(4)
        assert im.info["duration"] == 700
    stacked = torch.rand(3, 2, 3, 6, 6)
    with Image.open(save_gif(stacked, tmp_path / "b.gif", scale=2)) as im:
        assert im.n_frames == 3


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
