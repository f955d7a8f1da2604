"""A command never writes over one of its own inputs (or one output over another), however
the path is spelt; it refuses before doing any work."""

import os

import numpy as np
import pytest
from PIL import Image

from ncsn.checkpoint import find_checkpoint
from ncsn.cli import main
from ncsn.imaging import save_npz
from ncsn.training import train

from helpers import mlp_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    train(mlp_config("training.n_iters=2"), workdir, progress=False, log=lambda m: None)
    return workdir


@pytest.fixture
def no_work(monkeypatch):
    import ncsn.api

    def refuse(*a, **k):
        raise AssertionError("the command started working before checking its outputs")

    monkeypatch.setattr(ncsn.api, "sample", refuse)
    monkeypatch.setattr(ncsn.api, "inpaint", refuse)


def _refused(capsys, argv, match):
    rc = main([*argv, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


def test_sample_out_is_the_checkpoint_it_reads(run, tmp_path, capsys, no_work, monkeypatch):
    ckpt = find_checkpoint(run)
    before = ckpt.read_bytes()
    _refused(capsys, ["sample", "--checkpoint", str(ckpt), "--out", str(ckpt)], "same file")
    monkeypatch.chdir(run)  # a relative spelling of the same file
    rel = os.path.join("checkpoints", "..", "checkpoints", ckpt.name)
    _refused(capsys, ["sample", "--checkpoint", str(run), "--out", rel], "--checkpoint")
    link = tmp_path / "grid.png"
    link.symlink_to(ckpt)  # and a link to it
    _refused(capsys, ["sample", "--checkpoint", str(ckpt), "--out", str(link)], "same file")
    assert ckpt.read_bytes() == before


def test_sample_out_is_the_latest_pointer(run, capsys, no_work):
    latest = run / "checkpoints" / "latest"
    before = latest.read_text()
    _refused(capsys, ["sample", "--checkpoint", str(run), "--out", str(latest)], "latest")
    assert latest.read_text() == before


@pytest.mark.parametrize(
    "flags",
    [
        ["--out", "a.npz", "--save-npz", "a.npz"],
        ["--out", "a.png", "--gif", "./a.png"],
        ["--out", "a.png", "--save-npz", "sub/../a.png"],
    ],
)
def test_two_outputs_of_one_command_are_one_file(run, tmp_path, capsys, no_work, flags):
    (tmp_path / "sub").mkdir()
    flags = [str(tmp_path / f) if not f.startswith("--") else f for f in flags]
    _refused(capsys, ["sample", "--checkpoint", str(run), *flags], "same file")


def test_inpaint_out_is_its_mask_or_inside_its_images(run, tmp_path, capsys, no_work):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(mask)
    before = mask.read_bytes()
    argv = ["inpaint", "--checkpoint", str(run), "--mask", str(mask)]
    _refused(capsys, [*argv, "--out", str(mask)], "--mask")
    assert mask.read_bytes() == before
    images = tmp_path / "faces"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "a.png")
    argv = ["inpaint", "--checkpoint", str(run), "--images", f"folder:{images}"]
    _refused(capsys, [*argv, "--out", str(images / "result.png")], "inside the folder")


def test_eval_out_is_its_samples(run, tmp_path, capsys):
    samples = save_npz(tmp_path / "s.npz", np.zeros((2, 1, 8, 8), np.float32))
    before = samples.read_bytes()
    argv = ["eval", "--samples", str(samples), "--data", "digits", "--metrics", "dsm"]
    _refused(capsys, [*argv, "--out", str(samples)], "--samples")
    assert samples.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_is_written_into_never_replaced_by_a_file(run, tmp_path, capsys):
    import stat

    null = tmp_path / "null"  # a /dev/null of our own
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    argv = ["sample", "--checkpoint", str(run), "--out", str(null), "--n", "2", "--steps", "1"]
    assert main([*argv, "--device", "cpu"]) == 0, capsys.readouterr().err
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]
