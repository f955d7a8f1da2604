"""Importing the authors' checkpoints: safe reading, strict keys, config translation, the CLI.

The network parity on ``../shared/official-refs`` is in ``tests/models/test_official_parity.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import OFFICIAL_FOLDERS
from ncsn import load_checkpoint, load_official
from ncsn.cli import main
from ncsn.errors import CheckpointError, ConfigError
from ncsn.official_format import official_to_ncsn_key, read_official_yaml
from ncsn.training import train

NAMESPACE_YAML = """!!python/object:argparse.Namespace
data: !!python/object:argparse.Namespace
  channels: 3
  dataset: CIFAR10
model: !!python/object:argparse.Namespace
  ngf: 8
  sigma_begin: 1
"""


def _one_line_error(capsys, argv, match, code=2):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


# ----------------------------------------------------------------------------- config.yml


def test_namespace_tags_read_as_plain_mappings(tmp_path):
    f = tmp_path / "config.yml"
    f.write_text(NAMESPACE_YAML)
    assert read_official_yaml(f) == {
        "data": {"channels": 3, "dataset": "CIFAR10"},
        "model": {"ngf": 8, "sigma_begin": 1},
    }


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:os.system ['touch {marker}']",
        "!!python/name:os.system",
        "!!python/object:collections.OrderedDict {{}}",
        "!!python/tuple [1, 2]",
    ],
)
def test_other_python_tags_are_refused_without_running_them(tmp_path, tag):
    marker = tmp_path / "ran"
    f = tmp_path / "config.yml"
    f.write_text(NAMESPACE_YAML + "evil: " + tag.format(marker=marker) + "\n")
    with pytest.raises(ConfigError, match=r"line 8.*refusing the Python tag !!python/") as e:
        read_official_yaml(f)
    assert len(str(e.value).splitlines()) == 1
    assert not marker.exists()


def test_unknown_tags_and_non_configs_are_one_line_errors(tmp_path):
    f = tmp_path / "config.yml"
    f.write_text(NAMESPACE_YAML + "x: !custom 3\n")
    with pytest.raises(ConfigError, match="!custom"):
        read_official_yaml(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="needs 'data' and 'model' sections"):
        read_official_yaml(f)


# ----------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        ("begin_conv.weight", "net.begin.weight"),
        ("normalizer.embed.weight", "net.end_norm.embed.weight"),
        ("res2.0.normalize1.gamma", "net.res.1.0.norm1.gamma"),
        ("res2.0.conv2.conv.weight", "net.res.1.0.conv2.conv.weight"),
        ("refine1.adapt_convs.0.2_2_conv.weight", "net.refine.0.adapt.0.convs.3.weight"),
        ("refine4.output_convs.3_1_norm.embed.weight", "net.refine.3.output.norms.4.embed.weight"),
        ("refine2.crp.convs.1.weight", "net.refine.1.crp.convs.1.weight"),
        ("refine2.msf.norms.0.embed.weight", "net.refine.1.msf.norms.0.embed.weight"),
        ("sigmas", "sigmas"),
        ("res1.0.bogus.weight", None),
    ],
)
def test_official_key_names(official, ours):
    assert official_to_ncsn_key(official) == ours


# ----------------------------------------------------------------------------- checkpoints


def _copy(refs: Path, folder: str, tmp_path: Path) -> Path:
    dst = tmp_path / folder
    shutil.copytree(refs / folder, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _edit_checkpoint(path: Path, edit) -> None:
    states = torch.load(path / "checkpoint.pth", weights_only=True)
    edit(states)
    torch.save(states, path / "checkpoint.pth")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda s: s[0].__setitem__("module.extra.weight", torch.zeros(1)),
            "unexpected key extra.weight (1 unexpected, 0 missing)",
        ),
        (
            lambda s: s[0].pop("module.refine4.crp.convs.1.weight"),
            "no weights for net.refine.3.crp.convs.1.weight (0 unexpected, 1 missing)",
        ),
        (
            lambda s: s[0].__setitem__("module.end_conv.bias", torch.zeros(5)),
            "end_conv.bias has shape (5,)",
        ),
        (lambda s: s.append({}), "expected a list [model, optimizer]"),
    ],
)
def test_checkpoint_keys_are_strict(official_refs, tmp_path, edit, match):
    folder = _copy(official_refs, "ncsn_v1_mnist", tmp_path)
    _edit_checkpoint(folder, edit)
    with pytest.raises(CheckpointError, match=re.escape(match)):
        load_official(folder)


def test_ema_shadow_keys_are_strict(official_refs, tmp_path):
    folder = _copy(official_refs, "ncsnv2_cifar10", tmp_path)
    _edit_checkpoint(folder, lambda s: s[4].pop("begin_conv.bias"))
    with pytest.raises(CheckpointError, match=r"EMA shadow.*no weights for net.begin.bias"):
        load_official(folder)
    load_official(folder, ema=False)  # the raw weights are complete


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = _RunsCode()
    evil.marker = marker
    torch.save([{"w": torch.zeros(1)}, evil], tmp_path / "checkpoint.pth")
    (tmp_path / "config.yml").write_text(NAMESPACE_YAML)
    _one_line_error(
        capsys,
        ["import-official", str(tmp_path), "--out", str(tmp_path / "run")],
        "holds Python objects, not only tensors",
    )
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_truncated_checkpoint_is_one_line(official_refs, tmp_path, capsys):
    folder = _copy(official_refs, "ncsn_v1_mnist", tmp_path)
    data = (folder / "checkpoint.pth").read_bytes()
    (folder / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    _one_line_error(
        capsys, ["import-official", str(folder), "--out", str(tmp_path / "run")], "truncated"
    )


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("ngf: 8", "ngf: 16", "begin_conv.weight has shape (8, 1, 3, 3)"),
        ("num_classes: 10", "num_classes: 12", "has 10 noise levels but"),
        ("dataset: MNIST", "dataset: SVHN", "data.dataset: 'SVHN' is not supported"),
        (
            "logit_transform: false",
            "logit_transform: 3",
            "data.logit_transform must be true or false",
        ),
        ("batch_norm: false", "ngf: [8]", "model.ngf must be an integer"),
        ("anneal_power: 2.0", "anneal_power: fast", "training.anneal_power must be a number"),
    ],
)
def test_config_problems_name_the_field(official_refs, tmp_path, old, new, match):
    folder = _copy(official_refs, "ncsn_v1_mnist", tmp_path)
    text = (folder / "config.yml").read_text()
    assert old in text
    if old.startswith("batch_norm"):
        text = text.replace("ngf: 8", "").replace(old, new)
    else:
        text = text.replace(old, new)
    (folder / "config.yml").write_text(text)
    with pytest.raises((ConfigError, CheckpointError), match=re.escape(match)):
        load_official(folder)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("sigma_dist: geometric", "sigma_dist: uniform", "model.sigma_dist"),
        ("rescaled: false", "rescaled: true", "data.rescaled"),
        ("nonlinearity: elu", "nonlinearity: swish", "model.nonlinearity"),
        ("spec_norm: false", "spec_norm: true", "model.spec_norm"),
    ],
)
def test_unsupported_official_options_are_named(official_refs, tmp_path, old, new, field):
    folder = _copy(official_refs, "ncsnv2_cifar10", tmp_path)
    cfg = folder / "config.yml"
    cfg.write_text(cfg.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=f"{field}: .* is not supported") as e:
        load_official(folder)
    assert len(str(e.value).splitlines()) == 1


def test_translated_config(official_refs):
    _, cfg = load_official(official_refs / "ncsnv2_cifar10")
    m, s = cfg.model, cfg.sampling
    assert (m.name, m.sigma_max, m.sigma_min, m.num_levels) == ("ncsnv2", 50.0, 0.01, 232)
    assert m.options == {"ngf": 8, "variant": "base"}
    assert (s.n_steps_each, s.eps, s.denoise) == (5, pytest.approx(2 * 6.2e-6), True)
    assert (cfg.data.dataset, cfg.data.channels, cfg.data.image_size) == ("cifar10", 3, 32)
    assert cfg.training.ema_rate == 0.999
    _, cfg = load_official(official_refs / "ncsn_v1_mnist")
    assert (cfg.model.name, cfg.model.num_levels, cfg.training.ema_rate) == ("ncsn", 10, None)
    # the v1 runner's sampler: T = 100, step_lr = 2e-5 (eps = 4e-5), no denoising
    assert (cfg.sampling.n_steps_each, cfg.sampling.eps, cfg.sampling.denoise) == (100, 4e-5, False)
    assert cfg.data.dequantize  # v1 always dequantises while training
    _, cfg = load_official(official_refs / "ncsnv2_celeba64")
    assert cfg.model.options["variant"] == "deeper"  # found from the keys (res5)


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("folder", OFFICIAL_FOLDERS)
def test_imported_run_folder_reproduces_official_outputs(official_refs, tmp_path, folder, capsys):
    out = tmp_path / "run"
    assert main(["import-official", str(official_refs / folder), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    ref = load_file(official_refs / folder / "expected.safetensors")
    for ema, key in ((True, "out_ema"), (False, "out")):
        model, _ = load_checkpoint(out, ema=ema)
        expected = ref.get(key, ref["out"])
        with torch.no_grad():
            got = model(ref["x"], model.sigmas[ref["labels"]])
        assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("folder", OFFICIAL_FOLDERS)
def test_import_then_sample_end_to_end(official_refs, tmp_path, folder, capsys):
    out = tmp_path / "run"
    assert main(["import-official", str(official_refs / folder), "--out", str(out)]) == 0
    png, npz = tmp_path / "s.png", tmp_path / "s.npz"
    argv = ["sample", "--checkpoint", str(out), "--n", "2", "--steps", "1", "--out", str(png)]
    assert main([*argv, "--save-npz", str(npz), "--device", "cpu"]) == 0
    _, cfg = load_checkpoint(out)
    images = np.load(npz)["samples"]
    size = cfg.data.image_size
    assert images.shape == (2, cfg.data.channels, size, size) and np.isfinite(images).all()
    assert png.stat().st_size > 0


def test_import_then_eval_end_to_end(official_refs, tmp_path, capsys):
    """Sampling each imported folder is the test above; here the evaluation."""
    out = tmp_path / "run"
    assert main(["import-official", str(official_refs / "ncsn_v1_mnist"), "--out", str(out)]) == 0
    report = tmp_path / "report.json"
    argv = ["eval", "--checkpoint", str(out), "--metrics", "classes", "--n", "2", "--steps", "1"]
    assert main([*argv, "--out", str(report)]) == 0
    assert sum(json.loads(report.read_text())["classes"]["counts"]) == 2


def test_step_picks_a_numbered_checkpoint(official_refs, tmp_path, capsys):
    folder = _copy(official_refs, "ncsnv2_cifar10", tmp_path)
    (folder / "checkpoint.pth").rename(folder / "checkpoint_1234.pth")
    _one_line_error(
        capsys,
        ["import-official", str(folder), "--out", str(tmp_path / "a"), "--step", "99"],
        "steps here: 1234",
    )
    assert (
        main(["import-official", str(folder), "--out", str(tmp_path / "a"), "--step", "1234"]) == 0
    )
    assert (tmp_path / "a" / "checkpoints" / "step_00001234.safetensors").is_file()
    # no checkpoint.pth: the highest-numbered one
    assert main(["import-official", str(folder), "--out", str(tmp_path / "b")]) == 0
    assert "checkpoint_1234.pth" in capsys.readouterr().out
    _one_line_error(
        capsys,
        ["import-official", str(folder / "checkpoint_1234.pth"), "--out", str(tmp_path / "c"),
         "--step", "1"],
        "drop --step",
    )  # fmt: skip


def test_missing_config_and_config_flag(official_refs, tmp_path, capsys):
    folder = _copy(official_refs, "ncsn_v1_mnist", tmp_path)
    (folder / "config.yml").rename(tmp_path / "elsewhere.yml")
    _one_line_error(
        capsys,
        ["import-official", str(folder), "--out", str(tmp_path / "run")],
        "no config.yml beside",
    )
    argv = ["import-official", str(folder / "checkpoint.pth"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--config", str(tmp_path / "elsewhere.yml")]) == 0


def test_existing_non_empty_out_is_refused(official_refs, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _one_line_error(
        capsys,
        ["import-official", str(official_refs / "ncsn_v1_mnist"), "--out", str(out)],
        "exists and is not empty",
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_resume_fine_tunes_an_imported_run(official_refs, tmp_path):
    out = tmp_path / "run"
    assert main(["import-official", str(official_refs / "ncsnv2_cifar10"), "--out", str(out)]) == 0
    _, cfg = load_checkpoint(out)
    images = torch.rand(8, 3, 32, 32)
    data = torch.utils.data.TensorDataset(images, torch.zeros(8, dtype=torch.long))
    lines: list[str] = []
    res = train(cfg, out, resume=True, dataset=data, max_steps=1, progress=False, log=lines.append)
    assert res.step == 1235  # continues from the official step
    assert any("fresh Adam optimizer" in ln for ln in lines), lines
    before, _ = load_checkpoint(out / "checkpoints" / "step_00001234.safetensors", ema=False)
    after, _ = load_checkpoint(out, ema=False)
    assert not torch.equal(before.net.begin.weight, after.net.begin.weight)
