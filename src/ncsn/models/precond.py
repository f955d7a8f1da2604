"""EDM preconditioning (Karras et al. 2022) around any ncsn score network.

The wrapped network ``F`` no longer has to output the score at the scale of the noise. With
``y = x - mu`` (``mu``: the data's mean pixel value) and ``v = sigma^2 + sigma_data^2``::

    D(x, sigma) = mu + c_skip(sigma) y + c_out(sigma) F(c_in(sigma) y, sigma)
    c_in = 1 / sqrt(v),   c_skip = sigma_data^2 / v,   c_out = sigma sigma_data / sqrt(v)

and the wrapper returns ncsn's score ``s = (D - x) / sigma^2``, computed without the
cancellation of ``D - x`` at small sigma as ``s = -y / v + sigma_data F / (sigma sqrt(v))``.
The network's last layer starts at zero, so the untrained model is the exact score of the
Gaussian ``N(mu, sigma_data^2 I)`` perturbed by ``sigma``: its denoiser is the best linear
one, no worse than predicting the noisy input or the mean at any sigma. EDM's
``c_noise = ln(sigma) / 4`` is the network's own conditioning: ``F`` receives ``sigma`` and
embeds ``log sigma`` (U-Net, MLP), looks up the nearest level (the paper's NCSN) or ignores
it (NCSNv2). Derivation: docs/paper.md, "Preconditioning".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.mlp import ScoreMLP
from ncsn.models.refinenet import NCSN, NCSNv2
from ncsn.models.sigma import SigmaLike, as_sigma_batch, check_positive_sigma
from ncsn.models.unet import UNet

__all__ = ["EDMPrecond", "DEFAULT_SIGMA_DATA", "DEFAULT_DATA_MEAN", "PRECOND_NAMES"]

PRECOND_NAMES = ("none", "edm")
# Used when a model is built without data statistics (ncsn train always estimates them).
# EDM's sigma_data = 0.5 is for data in [-1, 1]; ncsn's data in [0, 1] has half the scale.
DEFAULT_SIGMA_DATA = 0.25
DEFAULT_DATA_MEAN = 0.5


def _output_over_sigma(net: nn.Module) -> bool:
    """Whether ``net(x, sigma)`` returns its last layer divided by sigma."""
    if isinstance(net, (UNet, NCSNv2)):
        return True
    if isinstance(net, ScoreMLP):
        return bool(net.scale_by_sigma)
    if isinstance(net, NCSN):
        return False
    raise ConfigError(
        f"EDMPrecond does not know whether {type(net).__name__} divides its output by sigma; "
        "pass output_over_sigma=True or False"
    )


def _zero_output_layer(net: nn.Module) -> None:
    """Zero the weights and bias of the last convolution or linear layer of ``net``."""
    last = None
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = module
    if last is not None:
        with torch.no_grad():
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()


class EDMPrecond(nn.Module):
    """A score network made of EDM's c_skip, c_out, c_in around a network ``F``.

    Args:
        net: Any ncsn network with the ``net(x, sigma)`` contract (its state-dict keys get
            the prefix ``net.``). A :class:`UNet` must be built with ``input_scaling=False``
            (the wrapper scales the input itself).
        sigma_data: Standard deviation of the data around ``data_mean`` (> 0).
        data_mean: The data's mean value, subtracted before the network and added back.
        output_over_sigma: Whether ``net`` divides its output by sigma (then ``F`` is that
            output times sigma); ``None``: known for ncsn's networks.
        zero_init: Zero the network's last layer, so the untrained model is the Gaussian
            score ``-(x - data_mean) / (sigma^2 + sigma_data^2)``.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        sigma_data: float = DEFAULT_SIGMA_DATA,
        data_mean: float = DEFAULT_DATA_MEAN,
        output_over_sigma: bool | None = None,
        zero_init: bool = True,
    ):
        super().__init__()
        if not (isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data)) or (
            sigma_data <= 0
        ):
            raise ConfigError(f"sigma_data must be a finite number > 0, got {sigma_data!r}")
        if not (isinstance(data_mean, (int, float)) and math.isfinite(data_mean)):
            raise ConfigError(f"data_mean must be a finite number, got {data_mean!r}")
        if isinstance(net, UNet) and net.input_scaling:
            raise ConfigError(
                "the U-Net already scales its input by 1/sqrt(1 + sigma^2); with EDM "
                "preconditioning build it with input_scaling=False (c_in replaces it)"
            )
        self.net = net
        self.sigma_data = float(sigma_data)
        self.data_mean = float(data_mean)
        self.output_over_sigma = (
            _output_over_sigma(net) if output_over_sigma is None else bool(output_over_sigma)
        )
        if zero_init:
            _zero_output_layer(net)

    # the attributes every ncsn score network exposes, read from the wrapped network
    @property
    def sigmas(self) -> Tensor:
        return self.net.sigmas

    @property
    def channels(self) -> int:
        return self.net.channels

    @property
    def image_size(self) -> int:
        return self.net.image_size

    @property
    def num_levels(self) -> int:
        return self.net.num_levels

    def _parts(self, x: Tensor, sigma: SigmaLike) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        s = as_sigma_batch(sigma, x)
        check_positive_sigma(s, "EDMPrecond")
        sig = s.reshape(-1, *([1] * (x.dim() - 1)))
        var = sig * sig + self.sigma_data**2
        y = x - self.data_mean
        out = self.net(y * torch.rsqrt(var), s)
        f = out * sig if self.output_over_sigma else out
        return y, sig, var, f

    def forward(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        """The score ``(D(x, sigma) - x) / sigma^2``.

        Args:
            x: Noisy data, shape ``(B, ...)`` as the wrapped network takes it.
            sigma: Noise standard deviations, ``(B,)``, 0-d or float; must be > 0.

        Returns:
            The score estimate, shape of ``x``.
        """
        y, sig, var, f = self._parts(x, sigma)
        return -y / var + f * (self.sigma_data / (sig * torch.sqrt(var)))

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        """The denoiser ``D(x, sigma) = mu + c_skip y + c_out F(c_in y, sigma)``."""
        y, sig, var, f = self._parts(x, sigma)
        return (
            self.data_mean
            + (self.sigma_data**2 / var) * y
            + f * (sig * self.sigma_data / torch.sqrt(var))
        )
