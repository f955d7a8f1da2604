"""Every input is checked before the work starts, and every message tells the truth.

Each test here failed before the checks were added (issue 9): YAML bombs and duplicate keys,
numbers out of range, unusable devices, damaged or hostile images, npz files and folders, and
error messages that advised options a subcommand does not have.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hostile_inputs import (
    billion_laughs,
    billion_laughs_flow,
    float_tiff,
    gray_png,
    npz_declaring,
    png16,
    png_bomb,
    truncated_png,
)
from ncsn.cli import main, subcommand_parsers
from ncsn.config import apply_overrides, config_from_dict, load_config
from ncsn.data import as_tensor, get_dataset
from ncsn.decode import load_image
from ncsn.errors import CheckpointError, ConfigError, DataError
from ncsn.imaging import load_npz
from ncsn.masks import make_mask
from ncsn.yamlio import MAX_SIZE, load_yaml

from helpers import tiny_config


def _one_line(capsys, argv, match="", code=2):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


# ----------------------------------------------------------------------------- YAML


def test_billion_laughs_is_refused_quickly(tmp_path):
    text = billion_laughs()
    assert len(text.encode()) < 600  # 9**9 = 387 million strings once expanded
    start = time.perf_counter()
    with pytest.raises(yaml.YAMLError, match="YAML bomb"):
        load_yaml(text)
    path = tmp_path / "lol.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"lol.yaml: line \d+, column \d+: .*YAML bomb"):
        load_config(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  options:\n" + billion_laughs(indent="    "))
    with pytest.raises(ConfigError, match="YAML bomb"):
        load_config(nested)
    with pytest.raises(ConfigError, match="YAML bomb"):
        apply_overrides(load_config("digits"), [f"model.options={billion_laughs_flow()}"])
    assert time.perf_counter() - start < 2.0


def test_aliases_that_stay_small_are_fine_and_the_bound_is_on_the_expansion():
    assert load_yaml("a: &x [1, 2]\nb: *x\nc: {<<: {p: 1}, p: 2}") == {
        "a": [1, 2],
        "b": [1, 2],
        "c": {"p": 2},
    }
    # 2,000 aliases of a 1,000-character string: 2 MB expanded from a 13 kB file
    text = "s: &s " + "x" * 1000 + "\nl: [" + ", ".join(["*s"] * 2000) + "]\n"
    assert len(text) < 20_000 < MAX_SIZE < 2_000_000
    with pytest.raises(yaml.YAMLError, match="YAML bomb"):
        load_yaml(text)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a: &a [*a]", "recursive"),
        ("a: &a {b: *a}", "recursive"),
        ("[" * 60 + "]" * 60, "nesting deeper than 50"),
        ("name: x\nname: y\n", r"line 2, column 1: duplicate key 'name' \(first at line 1\)"),
        ("model:\n  options:\n    ch: 8\n    ch: 16\n", "duplicate key 'ch'"),
        ("training: {lr: 1, lr: 2}", "duplicate key 'lr'"),
    ],
)
def test_recursive_deep_and_duplicate_yaml_is_refused(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_duplicate_key_in_an_override_is_refused():
    with pytest.raises(ConfigError, match="duplicate key 'ch'"):
        apply_overrides(load_config("digits"), ["model.options={ch: 8, ch: 16}"])


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "override, match",
    [
        ("training.ema_rate=1", "ema_rate = 1.0 would keep the EMA weights at their random"),
        ("training.seed=9223372036854775808", "training.seed = 9223372036854775808 is out of"),
        ("training.seed=-1", "training.seed = -1 is out of range"),
        ("training.loss_power=1e308", "training.loss_power = 1e+308 is out of range"),
        ("training.loss_power=-1", "training.loss_power = -1.0 is out of range"),
        ("data.val_size=1.5", "data.val_size = 1.5 is neither a fraction"),
    ],
)
def test_numbers_out_of_range_are_one_line(capsys, override, match):
    _one_line(capsys, ["train", "--set", override, "--dry-run"], match)


def test_numbers_at_the_edge_are_accepted():
    cfg = apply_overrides(
        load_config("digits"),
        ["training.seed=9223372036854775807", "training.ema_rate=0.9999", "data.val_size=2"],
    )
    assert cfg.training.seed == 2**63 - 1 and cfg.data.val_size == 2
    assert len(get_dataset("digits", split="val", val_size=cfg.data.val_size)) == 2


@pytest.mark.parametrize(
    "flag, value, match",
    [
        ("--eps", "nan", "expected a finite number, got nan"),
        ("--eps", "inf", "expected a finite number, got inf"),
        ("--eps", "-inf", "expected a finite number"),
        ("--seed", str(2**63), "must be >= 0 and <= 9223372036854775807"),
        ("--seed", str(2**64), "<= 9223372036854775807"),
    ],
)
def test_sampling_numbers_are_checked_by_the_parser(capsys, tmp_path, flag, value, match):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--checkpoint", str(tmp_path), "--out", "x.png", f"{flag}={value}"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and match in err, err


def test_the_largest_seed_samples():
    from ncsn.rng import image_generator

    for stream in (0, 1, 2):
        a = torch.rand(3, generator=image_generator(2**63 - 1, 5, stream))
        b = torch.rand(3, generator=image_generator(2**63 - 1, 5, stream))
        assert torch.equal(a, b)
    # small seeds keep the generators they always had
    assert image_generator(7, 2).initial_seed() == 7 * 1_000_003 + 2


def test_a_model_that_cannot_fit_is_refused_before_allocation(tmp_path, capsys):
    from ncsn.api import build_model

    start = time.perf_counter()
    argv = ["train", "--workdir", str(tmp_path / "w"), "--set", "model.options={ch: 100000}"]
    _one_line(capsys, argv, "model.options: the weights take 22.6 TB")
    many = apply_overrides(load_config("digits"), ["model.options={num_res_blocks: 1000000}"])
    with pytest.raises(ConfigError, match="more than 5,000 weight tensors"):
        build_model(many, channels=1, image_size=8)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "w" / "config.yaml").exists()


def test_the_paper_model_is_measured_exactly_without_storage():
    from ncsn.api import model_sigmas
    from ncsn.memory import build_on_meta, parameter_bytes
    from ncsn.models import create_model

    cfg = load_config("cifar10")
    sigmas = model_sigmas(cfg)
    model = build_on_meta(
        lambda: create_model("ncsn", channels=3, image_size=32, sigmas=sigmas, ngf=128), "x"
    )
    # the parameter count of the real model (30,117,635; README), with no storage
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 30_117_635
    assert parameter_bytes(model) >= 4 * 30_117_635


def test_a_data_set_resized_beyond_memory_is_refused(capsys, tmp_path):
    _one_line(
        capsys,
        ["train", "--workdir", str(tmp_path / "w"), "--set", "data.image_size=4096"],
        "images at image_size 4096 need",
    )


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize(
    "device, match",
    [
        ("mps", "--device mps"),
        ("banana", "--device 'banana' is not a device name"),
        ("meta", "--device meta holds no data"),
        ("cuda:7", "--device cuda:7"),
        ("", "is not a device name"),
        ("CPU", "is not a device name"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "train", "toy", "configs"])
def test_unusable_devices_are_one_line(capsys, tmp_path, device, match, command):
    argv = {
        "sample": ["sample", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.png")],
        "train": ["train", "--workdir", str(tmp_path / "w")],
        "toy": ["toy", "fig3", "--out", str(tmp_path / "toy")],
        "configs": ["configs"],
    }[command]
    _one_line(capsys, [*argv, "--device", device], match)
    assert list(tmp_path.iterdir()) == []  # refused before any work


# ----------------------------------------------------------------------------- images


def test_16_bit_and_float_images_are_scaled_by_their_range(tmp_path):
    png16(tmp_path / "a.png", round(0.49 * 65535))
    float_tiff(tmp_path / "b.tif", 0.25)
    ds = get_dataset(str(tmp_path), split="all")
    x = as_tensor(ds)[0]
    assert x[0].mean().item() == pytest.approx(0.49, abs=1 / 255)  # not 0.999
    assert x[1].mean().item() == pytest.approx(0.25, abs=1 / 255)


@pytest.mark.parametrize(
    "value, match", [(1.5, "from 1.5 to 1.5"), (-0.5, "from -0.5"), (math.nan, "from nan")]
)
def test_float_images_outside_0_1_are_refused(tmp_path, value, match):
    float_tiff(tmp_path / "f.tif", value)
    with pytest.raises(DataError, match=rf"f.tif holds floating-point values {match}"):
        load_image(tmp_path / "f.tif", channels=1)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left, opaque on the right
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", channels=3)
    assert x[:, :, :2].eq(255).all()  # transparent: white, whatever colour was hidden there
    assert x[:, :, 2:].tolist() == [[[200] * 2] * 4, [[0] * 2] * 4, [[0] * 2] * 4]
    Image.new("LA", (2, 2), (0, 128)).save(tmp_path / "la.png")  # black, half transparent
    assert load_image(tmp_path / "la.png", channels=1).flatten().tolist() == [127] * 4
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30])
    pal.info["transparency"] = 1
    pal.save(tmp_path / "p.png", transparency=1)
    assert load_image(tmp_path / "p.png", channels=3).eq(255).all()


def test_decompression_bombs_are_one_line(tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    for size in ((20_000, 20_000), (10_000, 10_000)):  # above PIL's error and warning limits
        png_bomb(bomb, *size)
        with pytest.raises(DataError, match="bomb.png has more pixels than PIL's"):
            load_image(bomb, channels=1)
        with pytest.raises(DataError, match="bomb.png"):
            get_dataset(str(tmp_path), split="all")
        with pytest.raises(DataError, match="mask file .*bomb.png has more pixels"):
            make_mask(bomb, shape=(1, 8, 8))


def test_a_truncated_image_stops_training_before_step_1(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    for i in range(12):
        gray_png(tmp_path / "data" / f"{i:02d}.png", seed=i)
    truncated_png(tmp_path / "data" / "07.png", size=8)
    data = f"data.dataset=folder:{tmp_path / 'data'}"
    argv = ["train", "--set", data, "--set", "data.val_size=0"]
    err = _one_line(capsys, [*argv, "--workdir", str(tmp_path / "run"), "--no-progress"], "07.png")
    assert "fix or remove the file" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------- npz, masks, toy


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((1, 1, 2, 2))), "is a .npy file"),
        (lambda p: p.write_text("hello"), "not an .npz file"),
        (lambda p: npz_declaring(p, (10**6, 3, 1024, 1024)), "shape (1000000, 3, 1024, 1024)"),
        (lambda p: np.savez(p, samples=np.array([{}], dtype=object)), "holds Python objects"),
        (lambda p: np.savez(p, x=np.zeros(3)), "has no 'samples' array (keys: x)"),
    ],
)
def test_bad_npz_files_are_one_line(tmp_path, make, match):
    path = tmp_path / "s.npz"
    make(path)
    if path.with_suffix(".npy").exists():
        path.with_suffix(".npy").rename(path)  # a .npy renamed .npz
    with pytest.raises(DataError) as e:
        load_npz(path)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_toy_out_must_be_a_writable_folder(capsys, tmp_path):
    (tmp_path / "file").write_text("keep me")
    _one_line(capsys, ["toy", "fig3", "--quick", "--out", str(tmp_path / "file")], "is a file")
    argv = ["toy", "fig3", "--quick", "--out", str(tmp_path / "file" / "sub")]
    _one_line(capsys, argv, "cannot create the folder")
    assert (tmp_path / "file").read_text() == "keep me"


def test_toy_out_read_only_folder(capsys, tmp_path, monkeypatch):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: check what a user would see
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
    _one_line(capsys, ["toy", "fig3", "--quick", "--out", str(ro)], "is not writable")


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from ncsn.training import train

    workdir = tmp_path_factory.mktemp("inputs") / "run"
    cfg = tiny_config("training.n_iters=2", "training.checkpoint_every=1", "model.num_levels=3")
    train(cfg, workdir, progress=False, log=lambda m: None)
    return workdir


def _copy(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / "run")


def _sample(run, tmp_path):
    return ["sample", "--checkpoint", str(run), "--out", str(tmp_path / "s.png"), "--steps", "1"]


def test_unreadable_latest_and_checkpoint_folder(run, tmp_path, capsys, monkeypatch):
    import builtins
    import os

    from ncsn.errors import NCSNWarning

    work = _copy(run, tmp_path)
    real_open, real_listdir = builtins.open, os.listdir

    def deny_open(file, *a, **k):
        if os.path.basename(str(file)) == "latest":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    with monkeypatch.context() as m:  # an unreadable latest: said, and the newest is used
        m.setattr(builtins, "open", deny_open)
        with pytest.warns(NCSNWarning, match="Permission denied.*using the newest by step"):
            assert main(_sample(work, tmp_path)) == 0
    (tmp_path / "s.png").unlink()
    capsys.readouterr()

    def deny_list(path):
        if str(path).endswith("checkpoints"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    # latest names a file that is gone, and the folder cannot be listed: one line, no guess
    (work / "checkpoints" / "latest").write_text("step_99999999.safetensors\n")
    monkeypatch.setattr(os, "listdir", deny_list)
    _one_line(capsys, _sample(work, tmp_path), "cannot list")
    err = _one_line(capsys, ["train", "--workdir", str(work), "--no-progress"], "cannot list")
    assert "--overwrite" not in err  # never advise deleting what could not even be listed
    assert not (tmp_path / "s.png").exists()


def test_a_checkpoint_whose_header_length_starts_like_a_pickle_loads(run, tmp_path):
    """Its first byte is 0x80 (a header of 128 + 256 k bytes), like a pickle's."""
    from ncsn.checkpoint import find_checkpoint, read_checkpoint

    raw = find_checkpoint(run).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n] + b" " * ((0x80 - n) % 256)  # safetensors allows space padding
    path = tmp_path / "step_00000004.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n :])
    assert path.read_bytes()[0] == 0x80
    assert read_checkpoint(path)["step"] == read_checkpoint(find_checkpoint(run))["step"]


def test_checkpoint_read_errors_say_what_is_wrong(run, tmp_path):
    from ncsn.checkpoint import find_checkpoint, read_checkpoint

    good = find_checkpoint(run).read_bytes()
    cases = {
        "pickle.safetensors": (b"\x80\x04\x95" + b"\0" * 64, "PyTorch/pickle file"),
        "zip.safetensors": (b"PK\x03\x04" + b"\0" * 64, "PyTorch/pickle file"),
        "text.safetensors": (b"hello world, not a checkpoint", "not a safetensors file"),
        "cut.safetensors": (good[: len(good) // 2], "is truncated"),
        "cut_header.safetensors": (good[:100], "is truncated"),
        "empty.safetensors": (b"", "not a safetensors file"),
    }
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=match) as e:
            read_checkpoint(tmp_path / name)
        assert "may be truncated" not in str(e.value)
    import os

    if os.geteuid() != 0:
        (tmp_path / "locked.safetensors").write_bytes(good)
        (tmp_path / "locked.safetensors").chmod(0)
        with pytest.raises(CheckpointError, match="cannot read checkpoint .*Permission denied"):
            read_checkpoint(tmp_path / "locked.safetensors")


@pytest.mark.parametrize(
    "text", ["model: [unclosed\n", "\x00\x01binary", "name: a\nname: b\n", "- a list\n"]
)
def test_a_corrupted_workdir_config_is_one_line_and_nothing_changes(run, tmp_path, capsys, text):
    work = _copy(run, tmp_path)
    (work / "config.yaml").write_text(text)
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    cfg = tmp_path / "cfg.yaml"
    from ncsn.config import save_config

    save_config(load_config(str(run / "config.yaml")), cfg)
    err = _one_line(capsys, ["train", "--config", str(cfg), "--workdir", str(work)], "config.yaml")
    assert "--overwrite" not in err
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before


# ----------------------------------------------------------------------------- messages


def _options(command: str) -> set[str]:
    return {s for a in subcommand_parsers()[command]._actions for s in a.option_strings}


def test_missing_torchvision_data_advice_names_options_the_command_has(capsys, tmp_path, run):
    argv = {
        "train": ["train", "--config", "mnist", "--workdir", str(tmp_path / "w")],
        "inpaint": ["inpaint", "--checkpoint", str(run), "--images", "mnist"],
        "techniques": ["techniques", "--config", "mnist"],
    }
    for command, args in argv.items():
        if command == "inpaint":
            args = [*args, "--out", str(tmp_path / "i.png")]
        err = _one_line(capsys, [*args, "--data-root", str(tmp_path / "none")], "--data-root")
        assert "--data-root" in _options(command), command
        assert str(tmp_path / "none") in err


def test_changed_config_advice_is_not_refused_when_followed(run, tmp_path, capsys):
    work = _copy(run, tmp_path)
    argv = ["train", "--workdir", str(work), "--no-progress", "--set", "training.lr=0.5"]
    err = _one_line(capsys, argv, "different config")
    assert "--resume and no --config or --set of these keys" in err
    # following the advice continues the run (its own config, more steps)
    rc = main(["train", "--workdir", str(work), "--resume", "--no-progress", "--max-steps", "1"])
    assert rc == 0, capsys.readouterr().err


def test_an_empty_val_split_is_explained_truthfully():
    with pytest.raises(DataError, match="data.val_size is 0, so nothing is held out"):
        get_dataset("digits", split="val", val_size=0)
    with pytest.raises(DataError, match="val_size = 0.0001 rounds to no image"):
        get_dataset("digits", split="val", val_size=0.0001)


def test_non_finite_at_step_1_does_not_claim_a_checkpoint(tmp_path, capsys):
    argv = ["train", "--workdir", str(tmp_path / "w"), "--no-progress"]
    argv += ["--set", "model.sigma_max=1e38", "--set", "model.options={ch: 8, ch_mult: [1]}"]
    err = _one_line(capsys, argv, "non-finite loss at step 1")
    assert "no checkpoint written yet" in err and "checkpoint kept" not in err


def test_retraining_never_replaces_the_shipped_classifier(tmp_path, monkeypatch, capsys):
    from ncsn.metrics import classifier as clf

    shipped = clf.classifier_asset_path("digits")
    before = shipped.read_bytes()

    def quick(name, root=None, progress=False):
        model = clf.DigitClassifier(**clf.CLASSIFIER_CONFIGS[name], name=name)
        model.test_accuracy = 0.5
        return model

    from ncsn.metrics import classifier_training

    monkeypatch.setattr(classifier_training, "train_classifier", quick)
    monkeypatch.setenv("NCSN_CACHE", str(tmp_path / "cache"))
    argv = ["eval", "--retrain-classifier", "digits", "--classifier-out", str(shipped)]
    _one_line(capsys, argv, "is the classifier shipped with the package; it is never replaced")
    assert main(["eval", "--retrain-classifier", "digits"]) == 0
    out = tmp_path / "cache" / "classifiers" / "classifier_digits.safetensors"
    assert str(out) in capsys.readouterr().out and out.is_file()
    assert shipped.read_bytes() == before
    assert clf.load_classifier("digits").test_accuracy > 0.9  # eval still uses the shipped one


def test_every_option_documents_its_default_and_eval_lists_metrics():
    from ncsn.cli import HelpFormatter
    from ncsn.metrics import metric_names

    parsers = subcommand_parsers()
    for name, p in parsers.items():
        fmt = HelpFormatter(prog=p.prog)
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                text = fmt._get_help_string(action)
                assert "default" in text or "(required)" in text, (name, action.dest)
                assert len(text) > len(" (default: off)") + 3, (name, action.dest)
        p.format_help()  # every help text formats (no stray %)
    metrics = next(a for a in parsers["eval"]._actions if a.dest == "metrics").help
    assert all(m in metrics for m in metric_names())


def test_an_unknown_argument_points_to_its_subcommand_help(capsys):
    required = {"sample": ["--checkpoint", "c", "--out", "o"], "toy": ["fig1"]}
    for command in ("train", "sample", "toy", "eval"):
        with pytest.raises(SystemExit) as e:
            main([command, *required.get(command, []), "--bogus"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and f"(see ncsn {command} --help)" in err, err
        assert "unrecognized arguments: --bogus" in err


def test_workdir_config_is_read_with_the_bounded_loader(run, tmp_path):
    work = _copy(run, tmp_path)
    (work / "config.yaml").write_text(billion_laughs())
    from ncsn.workdir import prepare_workdir

    with pytest.raises(ConfigError, match="YAML bomb"):
        prepare_workdir(work, config_from_dict({}), None, False)
    assert json.loads((work / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_every_option_named_in_the_source_exists():
    """A static guard beside the hostile pass (which checks each message against its own
    subcommand): no message, help or docstring names an option no subcommand has."""
    import re
    from pathlib import Path

    import ncsn

    known = {s for p in subcommand_parsers().values() for a in p._actions for s in a.option_strings}
    pip_options = {"--no-deps", "--force-reinstall"}  # advice to run pip, not ncsn
    named = {}
    for path in Path(ncsn.__file__).parent.rglob("*.py"):
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", path.read_text()):
            named.setdefault(option, path.name)
    unknown = {o: f for o, f in named.items() if o not in known | pip_options}
    assert not unknown, unknown
