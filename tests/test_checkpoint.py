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


def _craft(path, state_json, tensors=None, fmt="ncsn-checkpoint-v2"):
    """Write a checkpoint whose checksum is right but whose content is whatever we like."""
    import json

    from safetensors.torch import save

    from ncsn.checkpoint_format import state_digest

    tensors = tensors or {}
    meta = {
        "format": fmt,
        "state": state_json if isinstance(state_json, str) else json.dumps(state_json),
    }
    meta["sha256"] = state_digest(tensors, meta if fmt.endswith("v2") else None)
    path.write_bytes(save(tensors, metadata=meta))
    return path


@pytest.mark.parametrize("old, new", [(b"3000", b"3001"), (b"4e-05", b"9e-05"), (b"ald", b"cas")])
def test_an_edited_header_is_caught_naming_the_file(tmp_path, old, new):
    state = {**_state(), "step": 3000, "config": {"sampling": {"eps": 4e-5, "sampler": "ald"}}}
    data = save_checkpoint(tmp_path / "c.safetensors", state).read_bytes()
    assert data.count(old) == 1
    edited = tmp_path / "step_00003000.safetensors"
    edited.write_bytes(data.replace(old, new))
    with pytest.raises(CheckpointError, match="step_00003000.safetensors is corrupted or was"):
        read_checkpoint(edited)


def test_first_format_files_are_still_read(tmp_path):
    import json

    from ncsn.checkpoint_format import pack_state

    tensors = {}
    skeleton = pack_state({"step": 5, "w": torch.arange(3.0)}, "s", tensors)
    p = _craft(tmp_path / "v1.safetensors", json.dumps(skeleton), tensors, "ncsn-checkpoint-v1")
    back = read_checkpoint(p)
    assert back["step"] == 5 and back["w"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "state, match",
    [
        ([1, 2, 3], "a list where a mapping"),
        ("[" * 5000 + "]" * 5000, "damaged state record"),
        ({"__items__": [[[1]] * 40]}, "damaged state record"),
        ({"__items__": "x"}, "damaged state record"),
        ({"__tensor__": "nowhere"}, "damaged state record"),
        ("{not json", "damaged state record"),
    ],
)
def test_malformed_state_is_one_line(tmp_path, state, match):
    import json

    nested = state
    if isinstance(state, dict) and state.get("__items__") == [[[1]] * 40]:
        nested = [1]
        for _ in range(60):  # deeper than any real state
            nested = [nested]
        nested = json.dumps(nested)
    p = _craft(tmp_path / "m.safetensors", nested)
    with pytest.raises(CheckpointError, match=match) as e:
        read_checkpoint(p)
    assert "\n" not in str(e.value) and "m.safetensors" in str(e.value)


def _run_folder(tmp_path, steps, latest=None):
    folder = tmp_path / "checkpoints"
    folder.mkdir(exist_ok=True)
    files = [save_checkpoint(folder / f"step_{s:08d}.safetensors", {"step": s}) for s in steps]
    if latest is not None:
        (folder / "latest").write_text(latest)
    return files


@pytest.mark.parametrize(
    "pointer",
    [
        "../../outside/step_00000001.safetensors",
        "/etc/passwd",
        "step_00000001.safetensors/../../step_00000001.safetensors",
        "notes.txt",
        "\x00\xff",
    ],
)
def test_latest_may_only_name_a_checkpoint_of_its_own_folder(tmp_path, pointer):
    from ncsn.errors import NCSNWarning

    outside = tmp_path / "outside"
    outside.mkdir()
    save_checkpoint(outside / "step_00000001.safetensors", {"step": 99})
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    _run_folder(tmp_path, [10, 20], latest=pointer)
    with pytest.warns(NCSNWarning, match="not a checkpoint file in") as w:
        found = find_checkpoint(tmp_path)
    assert found.name == "step_00000020.safetensors" and len(w) == 1


def test_latest_naming_an_older_checkpoint_is_followed(tmp_path):
    _run_folder(tmp_path, [10, 20], latest="step_00000010.safetensors\n")
    assert find_checkpoint(tmp_path).name == "step_00000010.safetensors"


def test_steps_beyond_eight_digits_sort_by_number(tmp_path):
    _run_folder(tmp_path, [99_999_999, 100_000_000])
    assert find_checkpoint(tmp_path).name == "step_100000000.safetensors"


def test_pruning_deletes_only_ncsn_names_and_never_a_newer_checkpoint(tmp_path):
    from ncsn.checkpoint import list_checkpoints, prune_checkpoints

    _run_folder(tmp_path, [5, 10, 15, 30])
    folder = tmp_path / "checkpoints"
    user = [
        "step_00000001_keep.safetensors",
        "step_00000002.safetensors.bak",
        "copy of step_00000003.safetensors",
        "step_1.safetensors",
    ]
    for name in user:
        (folder / name).write_text("mine")
    (folder / "step_00000004.safetensors").symlink_to(folder / user[0])
    # a run resumed from step 10 has just written 15: 30 belongs to a later point, kept
    removed = prune_checkpoints(tmp_path, keep=2, current=folder / "step_00000015.safetensors")
    assert [p.name for p in removed] == ["step_00000005.safetensors"]
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000010.safetensors",
        "step_00000015.safetensors",
        "step_00000030.safetensors",
    ]
    assert all((folder / n).read_text() == "mine" for n in user)
    assert (folder / "step_00000004.safetensors").is_symlink()


def test_stale_temporaries_with_other_names_are_kept(tmp_path):
    from ncsn.checkpoint import remove_stale_temporaries

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    keep = [folder / ".step_00000010.safetensors.mine.tmp.bak", folder / ".latest.tmp"]
    for p in keep:
        p.write_text("user")
    (folder / ".latest.k2j4h.tmp").write_text("partial")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".latest.k2j4h.tmp"]
    assert all(p.exists() for p in keep)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"ch": 1_000_000, "ch_mult": [1, 2], "num_res_blocks": 1}, "its own config"),  # 36 TB
        ({"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 3000}, "its own config"),  # layers
        ({"ch": 8, "ch_mult": [1] * 4000, "num_res_blocks": 1}, "this model"),
    ],
)
def test_a_stored_config_cannot_make_ncsn_build_a_huge_model(tmp_path, options, match):
    import time

    from ncsn.api import build_model, load_checkpoint
    from ncsn.config import apply_overrides, load_config

    cfg = apply_overrides(
        load_config("digits"),
        ["data.channels=1", "data.image_size=8", "model.options={ch: 8, ch_mult: [1, 2]}"],
    )
    weights = build_model(cfg).state_dict()
    raw = cfg.to_dict()
    raw["model"]["options"] = options  # the hostile edit, with a recomputed checksum
    p = save_checkpoint(tmp_path / "h.safetensors", {"config": raw, "model": weights})
    start = time.time()
    with pytest.raises(CheckpointError, match=f"h.safetensors does not fit {match}"):
        load_checkpoint(p)
    assert time.time() - start < 10


def test_weights_that_are_not_tensors_are_one_line(tmp_path):
    from ncsn.api import load_checkpoint
    from ncsn.config import load_config

    raw = load_config("digits").to_dict()
    for weights in ([1, 2], {"a": 1}, "x"):
        p = save_checkpoint(tmp_path / "w.safetensors", {"config": raw, "model": weights})
        with pytest.raises(CheckpointError, match="not a mapping of tensors"):
            load_checkpoint(p)
