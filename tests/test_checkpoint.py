import os
import pickle

import pytest
import torch

from ncsn.checkpoint import find_checkpoint, read_checkpoint, save_checkpoint
from ncsn.errors import CheckpointError


def _state():
    return {
        "step": 7,
        "model": {"w": torch.randn(3, 4), "b": torch.zeros(4), "n": torch.tensor(3)},
        "optimizer": {
            "state": {0: {"exp_avg": torch.ones(2)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}],
        },
        "rng": torch.Generator().manual_seed(1).get_state(),
        "none": None,
    }


def test_round_trip_is_exact(tmp_path):
    st = _state()
    p = save_checkpoint(tmp_path / "c.safetensors", st)
    back = read_checkpoint(p)
    assert back["step"] == 7 and back["none"] is None
    assert torch.equal(back["model"]["w"], st["model"]["w"])
    assert back["optimizer"]["state"][0]["exp_avg"].tolist() == [1.0, 1.0]
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["rng"], st["rng"])


def test_truncated_and_corrupted_files_are_refused_by_name(tmp_path):
    p = save_checkpoint(tmp_path / "c.safetensors", _state())
    data = p.read_bytes()
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.safetensors"):
        read_checkpoint(trunc)
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # a bit flip inside the tensor data
    bad = tmp_path / "b.safetensors"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="b.safetensors is corrupted"):
        read_checkpoint(bad)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    evil = tmp_path / "step_00000001.safetensors"
    evil.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError):
        read_checkpoint(evil)
    torch_style = tmp_path / "evil.pt"
    with open(torch_style, "wb") as f:
        pickle.dump({"model": _Payload()}, f)
    with pytest.raises(CheckpointError):
        read_checkpoint(torch_style)
    assert not marker.exists()


def test_find_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        find_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    a = save_checkpoint(tmp_path / "checkpoints" / "step_00000001.safetensors", _state())
    assert find_checkpoint(tmp_path) == a
    assert find_checkpoint(a) == a


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    from ncsn.checkpoint import remove_stale_temporaries

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = folder / ".step_00000010.safetensors.ab12cd.tmp"
    stale.write_bytes(b"partial")
    keep = save_checkpoint(folder / "step_00000005.safetensors", _state())
    other = folder / "notes.tmp"
    other.write_text("user file")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and keep.exists() and other.exists()
