"""Tests for ncsn.masks: the named inpainting masks and PNG masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.errors import DataError
from ncsn.masks import MASK_SPECS, make_mask


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
