"""Tests for the score networks and the model registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ncsn.errors import ConfigError
from ncsn.models import (
    MODEL_NAMES,
    NCSN,
    NCSNv2,
    ScoreMLP,
    UNet,
    count_parameters,
    create_model,
)

SIGMAS = torch.logspace(0, -2, 10)  # 1.0 ... 0.01, geometric, descending
IMAGE_MODELS = ("ncsn", "ncsnv2", "unet")
SMALL = {
    "ncsn": {"ngf": 8},
    "ncsnv2": {"ngf": 8},
    "unet": {"ch": 8, "ch_mult": (1, 2, 2)},
}


def small_model(name: str, channels: int, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, channels=channels, image_size=size, sigmas=SIGMAS, **SMALL[name])


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("ngf", "channels", "size", "expected"),
    [(64, 1, 28, 7_638_657), (128, 3, 32, 30_117_635)],
)
def test_ncsn_parameter_count_matches_paper(ngf, channels, size, expected):
    model = NCSN(channels, size, SIGMAS, ngf=ngf)
    assert count_parameters(model) == expected


@pytest.mark.parametrize(
    ("size", "levels", "ngf", "variant", "expected"),
    [
        # the official NCSNv2 / NCSNv2Deeper at ngf 8 (../shared/official-refs meta.json)
        (32, 232, 8, None, 117_323),
        (64, 500, 8, "deeper", 327_979),
        # the released widths: CIFAR-10 and CelebA 64x64 use NCSNv2 at ngf 128
        (32, 232, 128, None, 29_694_083),
        (64, 500, 128, None, 29_694_083),
    ],
)
def test_ncsnv2_parameter_count_matches_official(size, levels, ngf, variant, expected):
    sigmas = torch.logspace(1, -2, levels)
    model = NCSNv2(3, size, sigmas, ngf=ngf, variant=variant)
    # parameters only: the sigmas buffer is not one
    assert count_parameters(model) == expected


def test_count_parameters_trainable_only():
    model = ScoreMLP(dim=2, hidden=4, depth=1, sigmas=SIGMAS)
    total = count_parameters(model)
    model.net[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - model.net[0].weight.numel()


# ----------------------------------------------------------------------------- contract


def _perturb(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter, so zero-initialised layers (U-Net residual outputs,
    attention output, norm biases) no longer hide the paths behind them."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (3, 64)])
def test_each_output_depends_only_on_its_own_input(name, channels, size):
    """Per-example independence: replacing image 1 changes output 1 and nothing else (no
    statistics over the batch, no mixed-up batch/channel axes), at every size."""
    model = _perturb(small_model(name, channels, size)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, channels, size, size, generator=g)
    sigma = torch.tensor([0.5, 0.1, 0.05])
    x2 = x.clone()
    x2[1] = torch.randn(channels, size, size, generator=g)
    with torch.no_grad():
        out, out2 = model(x, sigma), model(x2, sigma)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out2[[0, 2]], out[[0, 2]], rtol=1e-5, atol=1e-5)
    assert (out2[1] - out[1]).abs().mean() > 0.01 * out[1].abs().mean()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_attributes_and_sigmas_buffer(name):
    if name == "mlp":
        model = create_model(name, channels=2, image_size=1, sigmas=SIGMAS)
        assert (model.channels, model.image_size) == (2, 1)
    else:
        model = small_model(name, 3, 32)
        assert (model.channels, model.image_size) == (3, 32)
    assert model.num_levels == 10
    assert torch.equal(model.sigmas, SIGMAS)
    assert "sigmas" in dict(model.named_buffers())
    assert "sigmas" in model.state_dict()


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("sigma", [0.3, torch.tensor(0.3), torch.tensor([0.3]), "batch"])
def test_sigma_scalar_broadcasts(name, sigma):
    model = _any_model(name)
    x = _input_for(name, 3)
    expected = model(x, torch.full((3,), 0.3))
    if isinstance(sigma, str):
        sigma = torch.full((3,), 0.3)
    torch.testing.assert_close(model(x, sigma), expected)


def test_sigma_wrong_size_raises():
    model = small_model("unet", 1, 8)
    with pytest.raises(ValueError, match="one value per example"):
        model(torch.randn(3, 1, 8, 8), torch.ones(2))


def _any_model(name: str) -> torch.nn.Module:
    if name == "mlp":
        torch.manual_seed(0)
        return ScoreMLP(dim=2, hidden=32, depth=2, sigmas=SIGMAS)
    return small_model(name, 1, 28)


def _input_for(name: str, batch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    shape = (batch, 2) if name == "mlp" else (batch, 1, 28, 28)
    return torch.randn(shape, generator=gen)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sigma_conditioning_changes_output(name):
    model = _any_model(name)
    x = _input_for(name, 2)
    with torch.no_grad():
        a = model(x, 0.5)
        b = model(x, 0.05)
    assert not torch.allclose(a, b)
    if name in ("unet", "mlp", "ncsn"):
        # conditioning beyond a 1/sigma rescaling
        assert not torch.allclose(a * 0.5, b * 0.05)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_per_example_sigma_is_honoured(name):
    model = _any_model(name)
    x = _input_for(name, 3)
    sigma = torch.tensor([1.0, 0.2, 0.015])
    with torch.no_grad():
        batched = model(x, sigma)
        for k in range(3):
            alone = model(x[k : k + 1], sigma[k : k + 1])
            # sigma-scaled models amplify rounding by 1/sigma: compare at the output's scale
            atol = 1e-5 * max(1.0, batched[k].abs().max().item())
            torch.testing.assert_close(batched[k : k + 1], alone, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name):
    """Every parameter tensor gets a non-zero, finite gradient (no dead or detached
    branch), once the zero-initialised layers no longer block the paths behind them."""
    model = _perturb(_any_model(name))
    x = _input_for(name, 2)
    loss = model(x, torch.tensor([0.7, 0.02])).square().mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_ncsn_gradient_reaches_only_the_levels_in_use():
    """NCSN conditions only through its per-level norm parameters: the loss at levels 1 and
    9 trains rows 1 and 9 of every embedding and no other row."""
    model = _any_model("ncsn")
    x = _input_for("ncsn", 2)
    model(x, SIGMAS[[1, 9]]).square().mean().backward()
    embeddings = [m.embed.weight for m in model.modules() if hasattr(m, "embed")]
    assert len(embeddings) > 10
    for w in embeddings:
        used = w.grad.abs().sum(dim=1) > 0
        assert used.tolist() == [k in (1, 9) for k in range(len(SIGMAS))]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradient_wrt_input(name):
    model = _any_model(name)
    x = _input_for(name, 2).requires_grad_()
    model(x, 0.3).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- NCSN v1


def test_nearest_level_exact_and_between():
    model = NCSN(1, 28, SIGMAS, ngf=4)
    x = torch.zeros(len(SIGMAS), 1, 28, 28)
    assert model.sigma_to_level(SIGMAS, x).tolist() == list(range(10))
    # geometric midpoint is the log-space midpoint: nudge it either way
    lo, hi = SIGMAS[3], SIGMAS[4]
    mid = torch.sqrt(lo * hi)
    x1 = x[:1]
    assert model.sigma_to_level(mid * 1.01, x1).item() == 3
    assert model.sigma_to_level(mid * 0.99, x1).item() == 4
    # the arithmetic midpoint is nearer the larger level in log space
    assert model.sigma_to_level((lo + hi) / 2, x1).item() == 3
    # out-of-range values clamp to the ends; zero maps to the smallest level
    assert model.sigma_to_level(50.0, x1).item() == 0
    assert model.sigma_to_level(1e-6, x1).item() == 9
    assert model.sigma_to_level(0.0, x1).item() == 9


def test_ncsn_uses_level_parameters():
    model = NCSN(1, 28, SIGMAS, ngf=4)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        by_sigma = model(x, SIGMAS[[2, 7]] * 1.05)
        by_label = model(x, 0.0, labels=torch.tensor([2, 7]))
    torch.testing.assert_close(by_sigma, by_label)


def test_ncsn_does_not_divide_by_sigma():
    """Two sigmas that map to the same level give identical outputs."""
    model = NCSN(1, 28, SIGMAS, ngf=4)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x, SIGMAS[5] * 1.05), model(x, SIGMAS[5] / 1.05))


# ----------------------------------------------------------------------------- NCSNv2


def test_ncsnv2_is_its_unconditional_network_over_sigma():
    """NCSNv2's sigma-scaling identity: s(x, sigma) = net(x) / sigma, per example."""
    model = _perturb(NCSNv2(3, 32, SIGMAS, ngf=8)).eval()
    x = torch.randn(4, 3, 32, 32)
    sigma = torch.tensor([50.0, 1.0, 0.1, 0.01])
    with torch.no_grad():
        out, net = model(x, sigma), model.net(x, None)
    assert net.abs().mean() > 0.01
    torch.testing.assert_close(out * sigma[:, None, None, None], net, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, net / sigma[:, None, None, None])


def test_ncsnv2_variant_by_size_as_the_official_code():
    assert NCSNv2(3, 32, SIGMAS, ngf=8).variant == "base"
    assert NCSNv2(3, 64, SIGMAS, ngf=8).variant == "base"  # CelebA 64x64: NCSNv2
    assert NCSNv2(3, 96, SIGMAS, ngf=8).variant == "deeper"  # LSUN: NCSNv2Deeper
    assert len(NCSNv2(3, 64, SIGMAS, ngf=8, variant="deeper").net.res) == 5
    with pytest.raises(ConfigError, match="deepest"):
        NCSNv2(3, 64, SIGMAS, ngf=8, variant="deepest")


@pytest.mark.parametrize("name", ["ncsn", "ncsnv2"])
def test_refinenets_rescale_input_to_minus_one_one(name):
    """x -> 2x - 1 before the first convolution, as the official networks (unless told not)."""
    torch.manual_seed(0)
    a = create_model(name, channels=1, image_size=8, sigmas=SIGMAS, ngf=4)
    torch.manual_seed(0)
    b = create_model(name, channels=1, image_size=8, sigmas=SIGMAS, ngf=4, rescale_input=False)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x, 0.1), b(2 * x - 1, 0.1))
        assert not torch.allclose(a(x, 0.1), b(x, 0.1))


@pytest.mark.parametrize("name", ["ncsnv2", "unet"])
def test_zero_sigma_rejected_by_sigma_scaled_models(name):
    model = small_model(name, 1, 28)
    with pytest.raises(ValueError, match="sigma"):
        model(torch.randn(1, 1, 28, 28), 0.0)


# ----------------------------------------------------------------------------- UNet


@pytest.mark.parametrize(
    ("size", "resolutions"),
    [(8, (8, 4, 2)), (28, (28, 14, 7)), (32, (32, 16, 8)), (64, (64, 32, 16, 8)), (7, (7,))],
)
def test_unet_downsampling_is_bounded(size, resolutions):
    """The encoder's feature maps really have the sizes ``resolutions`` reports."""
    model = UNet(1, size, SIGMAS, ch=8)
    assert model.resolutions == resolutions
    seen: list[int] = []
    for blocks in model.down:
        blocks[0].register_forward_hook(lambda m, args, out: seen.append(out.shape[-1]))
    x = torch.randn(1, 1, size, size)
    with torch.no_grad():
        assert model(x, 0.1).shape == x.shape
    assert tuple(seen) == resolutions


def test_unet_min_resolution():
    model = UNet(1, 8, SIGMAS, ch=8, ch_mult=(1, 1, 1, 1), min_resolution=4)
    assert model.resolutions == (8, 4)


@pytest.mark.parametrize(("size", "low", "high"), [(8, 0.3e6, 1.0e6), (28, 0.3e6, 1.5e6)])
def test_unet_default_sizes(size, low, high):
    """Defaults stay small enough for CPU training (see the ncsn.models.unet docstring)."""
    assert low <= count_parameters(UNet(1, size, SIGMAS)) <= high


def test_unet_is_its_last_layer_over_sigma_of_the_scaled_input():
    """The U-Net's sigma-scaling identity: s(x, sigma) = F(x / sqrt(1 + sigma^2), sigma) /
    sigma, with F the network up to its last layer (per example)."""
    model = _perturb(small_model("unet", 1, 28)).double().eval()
    last: list[torch.Tensor] = []
    model.conv_out.register_forward_hook(lambda m, args, out: last.append(out))
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    sigma = torch.tensor([20.0, 0.5, 0.01], dtype=torch.float64)
    s4 = sigma[:, None, None, None]
    with torch.no_grad():
        out = model(x, sigma)
        model.input_scaling = False
        unscaled = model(x / torch.sqrt(1 + s4**2), sigma)
    assert last[0].abs().mean() > 0.01
    torch.testing.assert_close(out, last[0] / s4)
    torch.testing.assert_close(unscaled, out)


@pytest.mark.parametrize(
    ("attention", "skip"), [(False, "add"), (True, "add"), (False, "concat"), (True, "concat")]
)
def test_unet_is_translation_equivariant_with_circular_padding(attention, skip):
    """With circular padding every U-Net layer commutes with shifts by a multiple of its
    total downsampling (GroupNorm, stride-2 convs, nearest upsampling, attention over
    positions), so the whole network must: a misaligned skip or a scrambled reshape fails."""
    model = UNet(1, 16, SIGMAS, ch=8, ch_mult=(1, 2, 2), attention=attention, skip=skip)
    model = _perturb(model).double().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.padding_mode = "circular"
    assert model.resolutions == (16, 8, 4)  # shifts by multiples of 4 commute
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    sigma = torch.tensor([0.8, 0.05], dtype=torch.float64)
    with torch.no_grad():
        out = model(x, sigma)
        for shift in [(4, 0), (0, 8), (12, 4)]:
            moved = model(torch.roll(x, shift, dims=(2, 3)), sigma)
            torch.testing.assert_close(moved, torch.roll(out, shift, dims=(2, 3)))
        # a shift by 1 is not a symmetry of the strided network: the test can tell
        moved = model(torch.roll(x, (1, 0), dims=(2, 3)), sigma)
        assert not torch.allclose(moved, torch.roll(out, (1, 0), dims=(2, 3)), atol=1e-3)


def test_unet_dropout_only_in_training_mode():
    model = _perturb(UNet(1, 8, SIGMAS, ch=8, dropout=0.5))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        train_a, train_b = model.train()(x, 0.2), model(x, 0.2)
        eval_a, eval_b = model.eval()(x, 0.2), model(x, 0.2)
    assert not torch.allclose(train_a, train_b)
    torch.testing.assert_close(eval_a, eval_b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- MLP


def test_mlp_sigma_zero_needs_no_scaling():
    model = ScoreMLP(dim=2, sigmas=SIGMAS, scale_by_sigma=True)
    with pytest.raises(ValueError, match="scale_by_sigma"):
        model(torch.randn(3, 2), 0.0)
    with pytest.raises(ValueError, match="scale_by_sigma"):
        model(torch.randn(3, 2), None)
    plain = ScoreMLP(dim=2, sigmas=None, scale_by_sigma=False)
    assert plain.num_levels == 0
    for sigma in (0.0, None, torch.zeros(3)):
        out = plain(torch.randn(3, 2), sigma)
        assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_mlp_flattens_images():
    model = create_model("mlp", channels=1, image_size=4, sigmas=SIGMAS, hidden=16)
    assert model.dim == 16 and model.channels == 1 and model.image_size == 4
    x = torch.randn(2, 1, 4, 4)
    assert model(x, 0.1).shape == x.shape
    with pytest.raises(ValueError, match="dim=16"):
        model(torch.randn(2, 3), 0.1)


@pytest.mark.parametrize("activation", ["silu", "softplus", "elu"])
@pytest.mark.parametrize("scale_by_sigma", [True, False])
def test_mlp_matches_its_formula(activation, scale_by_sigma):
    """One hidden layer: s = W2 act(W1 [x, e(log sigma)] + b1) + b2, divided by sigma when
    ``scale_by_sigma`` (the MLP's sigma-scaling identity)."""
    torch.manual_seed(0)
    model = ScoreMLP(
        dim=3, hidden=8, depth=1, sigmas=SIGMAS, activation=activation,
        scale_by_sigma=scale_by_sigma,
    )  # fmt: skip
    act = {"silu": F.silu, "softplus": F.softplus, "elu": F.elu}[activation]
    x, sigma = torch.randn(4, 3), torch.tensor([2.0, 0.5, 0.1, 0.01])
    first, last = model.net[0], model.net[2]
    h = torch.cat([x, model.embed(torch.log(sigma))], dim=1)
    expected = F.linear(act(F.linear(h, first.weight, first.bias)), last.weight, last.bias)
    if scale_by_sigma:
        expected = expected / sigma[:, None]
    torch.testing.assert_close(model(x, sigma), expected)


# ----------------------------------------------------------------------------- registry


def test_create_model_unknown_name():
    with pytest.raises(ConfigError, match="unknown model 'resnet'") as info:
        create_model("resnet", channels=1, image_size=28, sigmas=SIGMAS)
    for name in MODEL_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_create_model_unknown_kwarg(name):
    with pytest.raises(ConfigError, match="'bogus'") as info:
        create_model(name, channels=1, image_size=28, sigmas=SIGMAS, bogus=3)
    assert name in str(info.value)


def test_create_model_rejects_reserved_kwarg():
    with pytest.raises(ConfigError, match="'dim'"):
        create_model("mlp", channels=2, image_size=1, sigmas=SIGMAS, dim=5)


@pytest.mark.parametrize(
    "sigmas",
    [[0.1, 1.0], [1.0, 1.0], [1.0, -0.1], [], [[1.0, 0.1]], [1.0, math.inf]],
)
def test_invalid_sigmas_raise_config_error(sigmas):
    with pytest.raises(ConfigError, match="sigmas"):
        create_model("unet", channels=1, image_size=8, sigmas=sigmas)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("ncsn", {"ngf": 0}),
        ("unet", {"ch": 0}),
        ("unet", {"ch_mult": ()}),
        ("unet", {"num_res_blocks": 0}),
        ("unet", {"dropout": 1.5}),
        ("mlp", {"depth": 0}),
        ("mlp", {"activation": "relu6"}),
    ],
)
def test_invalid_values_raise_config_error(name, kwargs):
    with pytest.raises(ConfigError):
        create_model(name, channels=1, image_size=8, sigmas=SIGMAS, **kwargs)


def test_create_model_returns_expected_classes():
    kw = {"channels": 1, "image_size": 28, "sigmas": SIGMAS}
    assert isinstance(create_model("ncsn", ngf=4, **kw), NCSN)
    assert isinstance(create_model("NCSNv2", ngf=4, **kw), NCSNv2)
    assert isinstance(create_model("unet", ch=4, **kw), UNet)
    assert isinstance(create_model("mlp", **kw), ScoreMLP)
