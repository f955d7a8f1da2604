"""The command line: typed arguments, one-line errors, sample/inpaint end to end on tiny data."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.api import load_checkpoint, sample
from ncsn.cli import main


@pytest.fixture
def run(tiny_run):
    return tiny_run


def _one_line_error(capsys, argv, match, code=2):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert match in err, err


def test_dry_run_prints_resolved_config(capsys):
    assert main(["train", "--config", "digits", "--set", "training.lr=3e-4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.0003" in out and "dataset: digits" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--set", "training.lr=abc"], "training.lr: expected a number"),
        (["train", "--config", "nope"], "no config named 'nope'"),
        (["sample", "--checkpoint", "/nonexistent", "--out", "x.png"], "does not exist"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, match):
    _one_line_error(capsys, argv, match)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["sample", "--checkpoint", "x", "--out", "x.png", "--n", "0"], "must be >= 1, got 0"),
        (["sample", "--checkpoint", "x", "--out", "x.png", "--n", "-3"], "must be >= 1"),
        (["sample", "--checkpoint", "x", "--out", "x.png", "--eps", "abc"], "expected float"),
        (["train", "--max-steps", "1.5"], "expected int"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, match):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_output_in_missing_folder_fails_before_any_work(capsys, run, tmp_path):
    out = tmp_path / "missing" / "grid.png"
    _one_line_error(
        capsys,
        ["sample", "--checkpoint", str(run), "--out", str(out)],
        "does not exist; create it first",
    )
    assert not out.parent.exists()


def test_sample_writes_grid_gif_and_npz(run, tmp_path, capsys):
    out, gif, npz = tmp_path / "s.png", tmp_path / "c.gif", tmp_path / "s.npz"
    rc = main(
        [
            "sample",
            "--checkpoint",
            str(run),
            "--n",
            "6",
            "--out",
            str(out),
            "--gif",
            str(gif),
            "--save-npz",
            str(npz),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert Image.open(out).size[0] > 8 and Image.open(gif).n_frames > 1
    x = np.load(npz)["samples"]
    assert x.dtype == np.float32 and x.shape == (6, 1, 8, 8)
    assert x.min() >= 0 and x.max() <= 1


def test_sample_with_any_registered_sampler_nfe_and_options(run, tmp_path, capsys, monkeypatch):
    import ncsn.api

    made = []
    real = ncsn.api.sample
    monkeypatch.setattr(
        ncsn.api, "sample", lambda m, cfg, *a, **k: made.append(cfg) or real(m, cfg, *a, **k)
    )
    out = tmp_path / "s.png"
    base = ["sample", "--checkpoint", str(run), "--n", "2", "--out", str(out), "--device", "cpu"]
    assert main([*base, "--sampler", "heun", "--nfe", "9", "--set", "sampling.s_churn=1.5"]) == 0
    assert main([*base, "--sampler", "pc", "--nfe", "8", "--set", "sampling.snr=0.2"]) == 0
    heun, pc = made
    assert (heun.sampling.sampler, heun.sampling.levels, heun.sampling.s_churn) == ("heun", 5, 1.5)
    assert (pc.sampling.levels, pc.sampling.snr) == (4, 0.2)  # 2 evaluations per level
    assert out.is_file()


def test_another_sampler_starts_from_the_trained_levels_unless_told(tmp_path, monkeypatch):
    import ncsn.api
    from ncsn.training import train

    from helpers import tiny_config

    # a run whose config samples with Heun on 5 levels (as mnist-cpu does on 50)
    cfg = tiny_config("training.n_iters=2", "sampling.sampler=heun", "sampling.levels=5")
    train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    made = []
    real = ncsn.api.sample
    monkeypatch.setattr(
        ncsn.api, "sample", lambda m, cfg, *a, **k: made.append(cfg) or real(m, cfg, *a, **k)
    )
    base = ["sample", "--checkpoint", str(tmp_path / "run"), "--n", "2"]
    for extra in (
        [],  # the config's: Heun on 5 levels
        ["--sampler", "ald"],  # the 20 trained levels, not Heun's 5
        ["--set", "sampling.sampler=ancestral"],
        ["--sampler", "ald", "--set", "sampling.levels=7"],
        ["--sampler", "heun"],
    ):
        assert main([*base, *extra, "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    got = [(c.sampling.sampler, c.sampling.levels) for c in made]
    assert got == [("heun", 5), ("ald", None), ("ancestral", None), ("ald", 7), ("heun", 5)]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--sampler", "nope"], "sampling.sampler = 'nope' is not valid; choose one of ald, cas"),
        (["--sampler", "cas", "--set", "sampling.eta=0"], "sampling.eta = 0.0 is out of range"),
        (["--set", "model.num_levels=3"], "only sampling.KEY=VALUE can change"),
        (["--set", "sampling.snrr=1"], "unknown key 'sampling.snrr' (did you mean 'snr'?)"),
        (["--nfe", "3"], "--nfe 3 is too few for sampler 'ald'"),
    ],
)
def test_sampler_choice_errors_are_one_line(capsys, run, tmp_path, extra, match):
    argv = ["sample", "--checkpoint", str(run), "--out", str(tmp_path / "x.png"), *extra]
    _one_line_error(capsys, [*argv, "--device", "cpu"], match)


def test_per_image_seeds_do_not_depend_on_n_or_batch_size(run):
    model, cfg = load_checkpoint(run)
    a = sample(model, cfg, 3, seed=7, batch_size=2)
    b = sample(model, cfg, 5, seed=7, batch_size=5)
    c = sample(model, cfg, 3, seed=8, batch_size=3)
    # same noise per image; only float rounding of batched convolutions may differ
    torch.testing.assert_close(a, b[:3], atol=1e-4, rtol=0)
    assert (a - c).abs().max() > 0.1


def test_inpaint_via_cli_keeps_observed_half(run, tmp_path, capsys):
    out = tmp_path / "inpaint.png"
    rc = main(
        [
            "inpaint",
            "--checkpoint",
            str(run),
            "--mask",
            "left-half",
            "--n-images",
            "2",
            "--completions",
            "3",
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    img = np.asarray(Image.open(out).convert("L"), dtype=np.float32)
    # 2 rows of 5 tiles (occluded, 3 completions, original), 8x8 pixels with a padding of 2,
    # upscaled by an integer factor
    scale = img.shape[1] // (5 * 10 + 2)
    assert img.shape == (scale * (2 * 10 + 2), scale * (5 * 10 + 2))
    grid = img[::scale, ::scale]
    tiles = [
        [grid[2 + 10 * r : 10 + 10 * r, 2 + 10 * c : 10 + 10 * c] for c in range(5)] for r in (0, 1)
    ]
    for row in tiles:
        original = row[4]
        assert np.array_equal(row[0][:, :4], original[:, :4])  # the observed left half
        assert np.all(np.abs(row[0][:, 4:] - 127.5) <= 0.5)  # the occluded half is grey
        for completion in row[1:4]:
            assert np.abs(completion[:, :4] - original[:, :4]).max() <= 1  # kept (rounding)
            assert not np.array_equal(completion[:, 4:], original[:, 4:])


def test_inpaint_rejects_bad_mask(capsys, run, tmp_path):
    _one_line_error(
        capsys,
        [
            "inpaint",
            "--checkpoint",
            str(run),
            "--mask",
            "diagonal",
            "--out",
            str(tmp_path / "x.png"),
        ],
        "diagonal",
    )


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ncsn.cli",
            "sample",
            "--checkpoint",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_toy_command_writes_figure_and_json(tmp_path, capsys):
    assert main(["toy", "fig3", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig3.png").stat().st_size > 0
    import json

    data = json.loads((tmp_path / "fig3.json").read_text())
    fractions = {k: v["mode_fractions"][0] for k, v in data["methods"].items()}
    assert abs(fractions["annealed_langevin"] - 0.2) < 0.05  # the weight-1/5 mode
    assert fractions["langevin"] > 0.35


def test_eval_digits_domain_metrics_via_cli(run, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(run),
            "--n",
            "20",
            "--steps",
            "1",
            "--metrics",
            "classes,dsm,nn",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    import json

    rep = json.loads(out.read_text())
    assert sum(rep["classes"]["counts"]) == 20 and rep["protocol"]["n_samples"] == 20
    assert len(rep["dsm"]["per_level"]) == 20
    # How the samples were made is part of the protocol.
    made = rep["protocol"]["samples"]
    assert made["sampler"] == "ald" and made["n_steps_each"] == 1 and made["weights"] == "ema"
    assert made["checkpoint"].endswith(".safetensors") and made["seed"] == 0
    # The neighbour grids are named after the report: a second report in the same folder
    # (here from saved samples) leaves the first one's grids alone.
    grid = tmp_path / "report_nn_grid.png"
    assert rep["nn"]["grid"] == str(grid) and (tmp_path / "report_nn_grid_feature.png").is_file()
    before = grid.read_bytes()
    from ncsn.imaging import save_npz

    save_npz(tmp_path / "noise.npz", torch.rand(5, 1, 8, 8))
    other = ["eval", "--samples", str(tmp_path / "noise.npz"), "--data", "digits", "--n", "5"]
    rc = main([*other, "--metrics", "nn", "--out", str(tmp_path / "other.json")])
    assert rc == 0, capsys.readouterr().err
    assert grid.read_bytes() == before and (tmp_path / "other_nn_grid.png").is_file()
    assert json.loads((tmp_path / "other.json").read_text())["protocol"]["samples"] == {
        "file": str(tmp_path / "noise.npz")
    }


def test_eval_reference_split_via_cli(tmp_path, capsys):
    """The test images scored against the test split have dFID 0 (identical feature
    statistics); against the train split it is positive; the report records the split."""
    import json

    from ncsn.data import as_tensor, get_dataset
    from ncsn.imaging import save_npz

    test_images = as_tensor(get_dataset("digits", split="test"))[0]
    save_npz(tmp_path / "test.npz", test_images)
    dfid = {}
    for split in ("test", "train"):
        out = tmp_path / f"{split}.json"
        args = ["eval", "--samples", str(tmp_path / "test.npz"), "--data", "digits"]
        args += ["--n", str(len(test_images)), "--metrics", "dfid", "--ref-split", split]
        rc = main([*args, "--out", str(out), "--device", "cpu"])
        assert rc == 0, capsys.readouterr().err
        rep = json.loads(out.read_text())
        assert rep["protocol"]["reference"]["split"] == split
        dfid[split] = rep["dfid"]
    assert abs(dfid["test"]) < 1e-3
    assert dfid["train"] > 10 * max(abs(dfid["test"]), 1e-4)


def test_eval_bpd_needs_no_samples(run, tmp_path, capsys, monkeypatch):
    import json

    import ncsn.api

    monkeypatch.setattr(ncsn.api, "sample", None)  # bpd alone must not draw samples
    out = tmp_path / "bpd.json"
    argv = ["eval", "--checkpoint", str(run), "--metrics", "bpd", "--n", "3", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0, capsys.readouterr().err
    rep = json.loads(out.read_text())
    bpd = rep["bpd"]
    assert bpd["n"] == 3 and len(bpd["per_image"]) == 3 and 0 < bpd["mean"] < 100
    assert rep["protocol"]["bpd"]["split"] == "test" and "samples" not in rep["protocol"]


def test_a_reader_that_leaves_early_is_no_error():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncsn.cli", "configs", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # `ncsn configs | head -0`: gone before ncsn writes
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == "", err
