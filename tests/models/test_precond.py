"""EDM preconditioning: the formulas, the untrained model's denoiser, a short training."""

from __future__ import annotations

import pytest
import torch

from ncsn.data import as_tensor, get_dataset
from ncsn.edm import data_statistics, dsm_loss_options
from ncsn.errors import ConfigError
from ncsn.losses import anneal_dsm_loss
from ncsn.metrics.heldout import heldout_dsm_loss
from ncsn.models import EDMPrecond, UNet, create_model
from ncsn.schedules import geometric_sigmas

from closed_forms import gaussian_score

SIGMAS = geometric_sigmas(50.0, 0.01, 10)
SMALL = {
    "ncsn": ({"ngf": 4}, 1, 8),
    "ncsnv2": ({"ngf": 4}, 1, 8),
    "unet": ({"ch": 8, "ch_mult": (1, 2)}, 1, 8),
    "mlp": ({"hidden": 16, "depth": 1}, 1, 4),
}


def _wrapped(name: str, **kw) -> EDMPrecond:
    opts, channels, size = SMALL[name]
    torch.manual_seed(0)
    return create_model(
        name, channels=channels, image_size=size, sigmas=SIGMAS, precond="edm", **kw, **opts
    )


@pytest.mark.parametrize("name", sorted(SMALL))
def test_untrained_model_is_the_gaussian_score(name):
    """Zeroed last layer: s = -(x - mu) / (sigma^2 + sigma_data^2), the score of N(mu, sd^2 I)."""
    model = _wrapped(name, sigma_data=0.3, data_mean=0.4).eval()
    assert isinstance(model, EDMPrecond)
    assert model.num_levels == 10 and model.sigmas is model.net.sigmas
    x = torch.rand(5, model.channels, model.image_size, model.image_size) * 3
    sigma = SIGMAS[torch.tensor([0, 3, 5, 7, 9])]
    expected = gaussian_score(0.4, 0.3)(x, sigma)
    torch.testing.assert_close(model(x, sigma), expected, rtol=1e-5, atol=1e-6)
    d = model.denoise(x, sigma)
    torch.testing.assert_close(d, x + sigma[:, None, None, None] ** 2 * expected)


def test_formula_with_a_nonzero_network():
    """D = mu + c_skip (x - mu) + c_out F(c_in (x - mu)) with EDM's coefficients."""
    torch.manual_seed(1)
    net = UNet(1, 8, SIGMAS, ch=8, ch_mult=(1, 2), input_scaling=False).double()
    model = EDMPrecond(net, sigma_data=0.5, data_mean=0.2, zero_init=False).eval()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.5, 3.0, 50.0], dtype=torch.float64)
    s = sigma[:, None, None, None]
    c_in, c_skip = 1 / torch.sqrt(s**2 + 0.25), 0.25 / (s**2 + 0.25)
    c_out = s * 0.5 / torch.sqrt(s**2 + 0.25)
    f = net((x - 0.2) * c_in, sigma) * s  # the U-Net returns its last layer / sigma
    assert f.abs().mean() > 0.01
    d = 0.2 + c_skip * (x - 0.2) + c_out * f
    torch.testing.assert_close(model.denoise(x, sigma), d)
    torch.testing.assert_close(model(x, sigma), (d - x) / s**2)


def test_unet_input_scaling_is_replaced_not_doubled():
    assert _wrapped("unet").net.input_scaling is False
    with pytest.raises(ConfigError, match="input_scaling=False"):
        EDMPrecond(UNet(1, 8, SIGMAS, ch=8, ch_mult=(1, 2)))
    with pytest.raises(ConfigError, match="sigma_data"):
        _wrapped("unet", sigma_data=0.0)
    with pytest.raises(ConfigError, match="preconditioning"):
        create_model("unet", channels=1, image_size=8, sigmas=SIGMAS, precond="vp")


def test_state_dict_keeps_the_network_under_net():
    model = _wrapped("ncsnv2")
    keys = list(model.state_dict())
    assert keys and all(k.startswith("net.") for k in keys)


@pytest.fixture(scope="module")
def digits():
    train = as_tensor(get_dataset("digits", split="train"))[0]
    test = as_tensor(get_dataset("digits", split="test"))[0][:200]
    return train, test


def test_untrained_denoiser_no_worse_than_input_or_mean(digits):
    """F = 0: MSE(D) = v sigma^2/(sigma^2 + v) <= min(sigma^2, v) at every sigma (v = sd^2)."""
    train, test = digits
    mean, sd = data_statistics(train)
    model = _wrapped("unet", sigma_data=sd, data_mean=mean).eval()
    res = heldout_dsm_loss(model, test, SIGMAS, all_levels=True)
    v = float(((test - mean) ** 2).mean())  # the mean value's own error on these images
    for sigma, mse in zip(SIGMAS.tolist(), res["denoiser_mse"], strict=True):
        c = sd**2 / (sigma**2 + sd**2)  # c_skip
        assert mse == pytest.approx((1 - c) ** 2 * v + c**2 * sigma**2, rel=0.05)
        assert mse <= min(sigma**2, v) * 1.02
    # the unwrapped U-Net, untrained, is far worse than the mean at large sigma (issue 13)
    torch.manual_seed(0)
    plain = create_model("unet", channels=1, image_size=8, sigmas=SIGMAS, ch=8, ch_mult=(1, 2))
    bad = heldout_dsm_loss(plain.eval(), test, SIGMAS, all_levels=True)
    assert bad["denoiser_mse"][0] > 10 * bad["mean_image_mse"][0]


def _train(model, train, cfg_overrides, steps=300, seed=0):
    import ncsn

    cfg = ncsn.load_config("digits", cfg_overrides)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        x = train[torch.randint(0, len(train), (64,), generator=g)]
        opts = dsm_loss_options(cfg, x, SIGMAS, g)
        out = anneal_dsm_loss(model, x, SIGMAS, generator=g, **opts)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def test_short_training_learns_every_level(digits):
    """300 steps on 8x8 digits, sigma up to 50: every level's denoiser matches or beats the
    mean image (within 5 %: at sigma = 50 even the ideal denoiser gains < 1 %), and clearly
    beats it below sigma = 1."""
    train, test = digits
    mean, sd = data_statistics(train)
    model = _wrapped("unet", sigma_data=sd, data_mean=mean)
    _train(model, train, ["training.weighting=edm", f"model.sigma_data={sd}"])
    res = heldout_dsm_loss(model, test, SIGMAS, all_levels=True)
    ratio = [a / b for a, b in zip(res["denoiser_mse"], res["mean_image_mse"], strict=True)]
    assert max(ratio) < 1.05, ratio
    assert all(r < 0.7 for r, s in zip(ratio, SIGMAS.tolist(), strict=True) if s < 1), ratio
