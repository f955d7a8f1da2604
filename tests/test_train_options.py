"""Training options that change speed or memory, not the maths: accumulation, bf16,
activation checkpointing, compile, channels-last; and old checkpoints still resume."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

import ncsn.acceleration as acceleration
from ncsn.acceleration import apply_activation_checkpointing, checkpoint_blocks
from ncsn.api import build_model
from ncsn.checkpoint import find_checkpoint, read_checkpoint
from ncsn.config import load_config
from ncsn.losses import anneal_dsm_loss
from ncsn.models import create_model
from ncsn.training import train

from helpers import ddp_mlp_config, tiny_config

OLD_RUN = Path(__file__).parent / "data" / "run_v1"


def _run(cfg, workdir, **kw):
    return train(cfg, workdir, progress=False, log=lambda m: None, **kw)


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if '"loss"' in x]


def _weights(workdir, part="model"):
    return read_checkpoint(find_checkpoint(workdir))[part]


def test_checkpoint_written_before_the_restructure_resumes(tmp_path):
    # tests/data/run_v1: 3 of 6 steps of an MLP run (flips, dequantisation, warm-up, EMA),
    # written by ncsn at commit a8e7ada, before the training loop was split up
    run = shutil.copytree(OLD_RUN, tmp_path / "old")
    cfg = load_config(run / "config.yaml")
    res = _run(cfg, run, resume=True)
    assert res.step == 6
    _run(cfg, tmp_path / "fresh")
    torch.testing.assert_close(_losses(run), _losses(tmp_path / "fresh"), rtol=1e-6, atol=0)
    for part in ("model", "ema"):
        old, new = _weights(run, part), _weights(tmp_path / "fresh", part)
        for k in new:
            torch.testing.assert_close(old[k], new[k], rtol=1e-5, atol=1e-7)


def test_accumulation_gives_the_update_of_one_batch(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.Linear.forward
    monkeypatch.setattr(torch.nn.Linear, "forward", lambda m, x: calls.append(len(x)) or real(m, x))
    _run(ddp_mlp_config("training.n_iters=10", "training.accumulate=4"), tmp_path / "k4")
    assert set(calls) == {8}  # only micro-batches of 32 / 4
    _run(ddp_mlp_config("training.n_iters=10"), tmp_path / "k1")
    # the same examples and draws: equal up to the order of sums (tolerance: float32 rounding)
    torch.testing.assert_close(
        _losses(tmp_path / "k4"), _losses(tmp_path / "k1"), rtol=1e-6, atol=0
    )
    a, b = _weights(tmp_path / "k4"), _weights(tmp_path / "k1")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_bf16_loss_follows_fp32_over_200_steps(tmp_path, monkeypatch):
    base = ["training.n_iters=200", "model.options={hidden: 128, depth: 2}"]
    _run(ddp_mlp_config(*base), tmp_path / "fp32")
    dtypes = set()
    real = torch.nn.Linear.forward
    monkeypatch.setattr(
        torch.nn.Linear, "forward", lambda m, x: dtypes.add((y := real(m, x)).dtype) or y
    )
    _run(ddp_mlp_config(*base, "training.precision=bf16"), tmp_path / "bf16")
    assert dtypes == {torch.bfloat16}  # the network really ran in bf16
    a = torch.tensor(_losses(tmp_path / "fp32"), dtype=torch.float64)
    b = torch.tensor(_losses(tmp_path / "bf16"), dtype=torch.float64)
    assert len(a) == len(b) == 200 and not torch.equal(a, b)
    # stated tolerance: every step within 1% of fp32, every 50-step mean within 0.1%
    # (measured on an AVX512-BF16 CPU: at most 0.063% and 0.011%)
    assert float(((a - b).abs() / a).max()) < 1e-2
    windows_a, windows_b = a.view(4, 50).mean(1), b.view(4, 50).mean(1)
    assert float(((windows_a - windows_b).abs() / windows_a).max()) < 1e-3


def _grads(model, x, sigmas):
    g = torch.Generator().manual_seed(0)
    model.zero_grad()
    anneal_dsm_loss(model, x, sigmas, generator=g).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _saved_bytes(model, x, sigmas):
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        anneal_dsm_loss(model, x, sigmas, generator=torch.Generator().manual_seed(0))
    return sum(total)


@pytest.mark.parametrize(
    "name, options, blocks",
    [
        ("unet", {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1}, 7),
        # the RefineNets' checkpoint_blocks hook: 8 residual blocks and 18 refine-block parts
        ("ncsn", {"ngf": 4}, 26),
        ("ncsnv2", {"ngf": 4}, 26),
    ],
)
def test_activation_checkpointing_keeps_gradients_and_saves_memory(name, options, blocks):
    torch.manual_seed(0)
    sigmas = torch.tensor([1.0, 0.5, 0.1])
    model = create_model(name, channels=1, image_size=8, sigmas=sigmas, **options)
    x = torch.rand(4, 1, 8, 8)
    plain = copy.deepcopy(model)
    assert apply_activation_checkpointing(model) == blocks == len(checkpoint_blocks(model))
    assert apply_activation_checkpointing(model) == 0  # wrapping twice does nothing
    want, got = _grads(plain, x, sigmas), _grads(model, x, sigmas)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert _saved_bytes(model, x, sigmas) < 0.5 * _saved_bytes(plain, x, sigmas)
    assert model.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(model(x, sigmas[:1].expand(4)), plain(x, sigmas[:1].expand(4)))


def test_training_with_checkpointing_and_channels_last(tmp_path):
    base = ["training.n_iters=3", "training.batch_size=16"]
    _run(tiny_config(*base), tmp_path / "plain")
    _run(tiny_config(*base, "training.activation_checkpointing=true"), tmp_path / "ckpt")
    assert _losses(tmp_path / "ckpt") == _losses(tmp_path / "plain")  # recomputation is exact
    _run(tiny_config(*base, "training.channels_last=true"), tmp_path / "cl")
    # other convolution kernels: the same losses up to float32 rounding (measured 2e-5)
    torch.testing.assert_close(
        _losses(tmp_path / "cl"), _losses(tmp_path / "plain"), rtol=1e-4, atol=0
    )


def test_compile_runs_the_compiled_network_or_falls_back_with_one_warning(tmp_path, monkeypatch):
    base = ["training.n_iters=3"]
    _run(ddp_mlp_config(*base), tmp_path / "eager")
    # a working compiler (dynamo with its eager backend: the inductor's C++ build takes minutes)
    compiled = []
    real = torch.compile

    def dynamo(net):
        compiled.append(net)
        return real(net, backend="eager")

    monkeypatch.setattr(torch, "compile", dynamo)
    lines = []
    train(
        ddp_mlp_config(*base, "training.compile=true"),
        tmp_path / "ok",
        progress=False,
        log=lines.append,
    )
    assert len(compiled) == 1 and not any("warning" in m for m in lines)
    assert _losses(tmp_path / "ok") == _losses(tmp_path / "eager")

    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", lambda net: Broken())
    lines = []
    train(
        ddp_mlp_config(*base, "training.compile=true"),
        tmp_path / "fb",
        progress=False,
        log=lines.append,
    )
    warnings = [m for m in lines if "warning" in m]
    assert warnings == [
        "warning: training.compile: torch.compile failed here (RuntimeError: no C++ compiler "
        "found); training continues eagerly"
    ]
    assert _losses(tmp_path / "fb") == _losses(tmp_path / "eager")


def test_options_can_change_when_resuming_but_precision_cannot(tmp_path):
    cfg = ddp_mlp_config("training.n_iters=4")
    _run(cfg, tmp_path, max_steps=2)
    more = ["training.accumulate=2", "training.activation_checkpointing=true"]
    assert _run(ddp_mlp_config("training.n_iters=4", *more), tmp_path).step == 4
    from ncsn.errors import NCSNError

    with pytest.raises(NCSNError, match="training.precision: 'fp32' in the run, 'bf16' now"):
        _run(ddp_mlp_config("training.n_iters=6", "training.precision=bf16"), tmp_path)


def test_cuda_branches_without_a_gpu(monkeypatch):
    import ncsn.distributed as distributed
    from ncsn.errors import ConfigError

    backends, devices = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda b, **kw: backends.append(b))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    d = distributed.init_distributed(torch.device("cuda"))
    assert d.device == torch.device("cuda", 1) and devices == [d.device]  # cuda:LOCAL_RANK
    assert (d.rank, d.world_size, d.enabled, d.is_main) == (1, 2, True, False)
    assert distributed.init_distributed(torch.device("cuda:0")).device == torch.device("cuda:0")
    assert distributed.init_distributed(torch.device("cpu")).device == torch.device("cpu")
    assert backends == ["nccl", "nccl", "gloo"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev: "Old GPU")
    with pytest.raises(ConfigError, match="Old GPU has no bfloat16 support"):
        acceleration.check_precision("bf16", torch.device("cuda"))
    assert isinstance(acceleration.autocast(torch.device("cpu"), "bf16"), torch.autocast)


def test_checkpoint_blocks_of_a_model_without_containers_and_a_model_hook():
    mlp = build_model(ddp_mlp_config("data.channels=1", "data.image_size=8"))
    assert [type(b).__name__ for b in checkpoint_blocks(mlp)] == ["Sequential"]
    mlp.checkpoint_blocks = lambda: [mlp.net[0]]
    assert checkpoint_blocks(mlp) == [mlp.net[0]]
