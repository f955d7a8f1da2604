"""Building blocks shared by the score networks.

The RefineNet blocks follow Song & Ermon (2019), Appendix A, as the authors' code
(ermongroup/ncsn, ermongroup/ncsnv2) computes them: instance normalisation++ (conditional on
the noise level for NCSN, plain for NCSNv2), residual blocks with dilation and mean-pool
downsampling, and the RefineNet residual conv unit (RCU), multi-resolution fusion (MSF),
chained residual pooling (CRP) and refine block. Where the official code differs from the
paper's text, these blocks follow the code (see :class:`CondInstanceNorm2dPlus` and
:class:`CRPBlock`), so that the official checkpoints load into them exactly.

Every normalisation layer has the signature ``norm(x, y, act=False)`` where ``y`` is the batch
of noise-level indices (``LongTensor`` of shape ``(B,)``) for the conditional layer and is
ignored by the unconditional one, so the same block classes build both networks; ``act=True``
applies the ELU in the same fused step (:mod:`ncsn.models.fused`). A ``NormFactory`` is any
callable ``num_features -> nn.Module`` with that signature. The
RefineNet blocks also accept ``norm=None``: NCSNv2's refine blocks have no normalisation.

The sigma helpers every model uses (schedule validation, broadcasting ``sigma``) live in
:mod:`ncsn.models.sigma`, the RefineNet blocks in :mod:`ncsn.models.refine_blocks`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.fused import instance_norm_plus, mean_pool2
from ncsn.models.refine_blocks import NormFactory

__all__ = [
    "SinusoidalEmbedding",
    "CondInstanceNorm2dPlus",
    "InstanceNorm2dPlus",
    "ResidualBlock",
]


class SinusoidalEmbedding(nn.Module):
    """Fixed sinusoidal features of a scalar (here ``log sigma``).

    Frequencies are log-spaced between ``min_freq`` and ``max_freq`` so that noise levels a
    few percent apart and levels decades apart are both distinguishable.

    Args:
        num_features: Output size (even).
        min_freq: Lowest angular frequency.
        max_freq: Highest angular frequency.
    """

    def __init__(self, num_features: int = 32, min_freq: float = 0.1, max_freq: float = 30.0):
        super().__init__()
        if num_features < 2 or num_features % 2:
            raise ConfigError(f"embedding size must be an even number >= 2, got {num_features}")
        half = num_features // 2
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), half))
        self.register_buffer("freqs", freqs, persistent=False)
        self.num_features = num_features

    def forward(self, t: Tensor) -> Tensor:
        """Embed ``t`` of shape ``(B,)`` into ``(B, num_features)``."""
        angles = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(t.dtype)


# --------------------------------------------------------------------------------------
# instance normalisation++
# --------------------------------------------------------------------------------------


class CondInstanceNorm2dPlus(nn.Module):
    """Conditional instance normalisation++ (Song & Ermon 2019, Appendix A).

    ``out[k] = gamma_i[k] * ((x_k - mu_k) / s_k + alpha_i[k] * (mu_k - m) / v) + beta_i[k]``
    for noise level ``i``: the official code's form (the paper writes the alpha term outside
    the gamma product; trained checkpoints need the code's). The per-level
    ``(gamma, alpha, beta)`` live in one embedding of size ``L x 3C`` (``L x 2C`` without
    bias), with gamma, alpha ~ N(1, 0.02) and beta = 0.

    Args:
        num_features: Number of channels ``C``.
        num_classes: Number of noise levels ``L``.
        bias: Learn ``beta``.
        eps: Variance floor.
    """

    def __init__(self, num_features: int, num_classes: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.bias = bias
        self.eps = eps
        self.embed = nn.Embedding(num_classes, (3 if bias else 2) * num_features)
        with torch.no_grad():
            self.embed.weight[:, : 2 * num_features].normal_(1.0, 0.02)
            if bias:
                self.embed.weight[:, 2 * num_features :].zero_()

    def forward(self, x: Tensor, y: Tensor | None, act: bool = False) -> Tensor:
        """Normalise ``x`` (B, C, H, W) with the parameters of levels ``y`` (B,); ``act``
        applies the ELU to the result (one fused step, see :mod:`ncsn.models.fused`)."""
        if y is None:
            raise ValueError("CondInstanceNorm2dPlus needs the noise-level indices y")
        params = self.embed(y)
        c = self.num_features
        beta = params[:, 2 * c :] if self.bias else None
        return instance_norm_plus(
            x, params[:, :c], params[:, c : 2 * c], beta, eps=self.eps, act=act
        )


class InstanceNorm2dPlus(nn.Module):
    """Unconditional instance normalisation++ (NCSNv2): one learnable gamma, alpha, beta.

    ``out[k] = gamma[k] * ((x_k - mu_k) / s_k + alpha[k] * (mu_k - m) / v) + beta[k]``, the
    form of :class:`CondInstanceNorm2dPlus` without the noise level.

    Args:
        num_features: Number of channels ``C``.
        bias: Learn ``beta``.
        eps: Variance floor.
    """

    def __init__(self, num_features: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.alpha = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.zeros(num_features)) if bias else None

    def forward(self, x: Tensor, y: Tensor | None = None, act: bool = False) -> Tensor:
        """Normalise ``x`` (B, C, H, W); ``y`` is accepted for interface parity and ignored;
        ``act`` applies the ELU to the result."""
        return instance_norm_plus(x, self.gamma, self.alpha, self.beta, eps=self.eps, act=act)


# --------------------------------------------------------------------------------------
# residual blocks
# --------------------------------------------------------------------------------------


def _conv3x3(cin: int, cout: int, *, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)


class _ConvMeanPool(nn.Module):
    """A convolution followed by 2x2 mean pooling."""

    def __init__(self, cin: int, cout: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return mean_pool2(self.conv(x))


class ResidualBlock(nn.Module):
    """Pre-activation residual block: ``norm1 -> ELU -> conv1 -> norm2 -> ELU -> conv2``.

    With ``resample="down"`` and ``dilation == 1``: ``conv1`` is 3x3 ``in -> in``, ``conv2`` is
    3x3 ``in -> out`` followed by 2x2 mean pooling, and the shortcut is a 1x1 conv followed by
    mean pooling. With ``resample="down"`` and ``dilation > 1`` the block does *not* shrink
    the feature map: dilation replaces downsampling (the paper's dilated RefineNet), so
    ``conv1``/``conv2`` are dilated 3x3 ``in -> in``/``in -> out`` and the shortcut is a dilated
    3x3 ``in -> out``. Without resampling, ``conv1`` is ``in -> out`` and ``conv2``
    ``out -> out``; the shortcut is the identity when ``in == out`` and otherwise a 1x1 conv
    (dilated 3x3 when ``dilation > 1``). All convolutions have a bias.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        norm: Normalisation factory (see module docstring).
        resample: ``"down"`` or ``None``.
        dilation: Dilation of the 3x3 convolutions.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        norm: NormFactory,
        resample: Literal["down"] | None = None,
        dilation: int = 1,
    ):
        super().__init__()
        if resample not in (None, "down"):
            raise ConfigError(f"resample must be 'down' or None, got {resample!r}")
        self.norm1 = norm(in_ch)
        self.shortcut: nn.Module | None
        if resample == "down":
            self.conv1 = _conv3x3(in_ch, in_ch, dilation=dilation)
            self.norm2 = norm(in_ch)
            if dilation > 1:
                self.conv2 = _conv3x3(in_ch, out_ch, dilation=dilation)
                self.shortcut = _conv3x3(in_ch, out_ch, dilation=dilation)
            else:
                self.conv2 = _ConvMeanPool(in_ch, out_ch, 3)
                self.shortcut = _ConvMeanPool(in_ch, out_ch, 1)
        else:
            self.conv1 = _conv3x3(in_ch, out_ch, dilation=dilation)
            self.norm2 = norm(out_ch)
            self.conv2 = _conv3x3(out_ch, out_ch, dilation=dilation)
            if in_ch == out_ch:
                self.shortcut = None
            elif dilation > 1:
                self.shortcut = _conv3x3(in_ch, out_ch, dilation=dilation)
            else:
                self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the block; ``y`` are the level indices for conditional norms."""
        h = self.conv1(self.norm1(x, y, act=True))
        h = self.conv2(self.norm2(h, y, act=True))
        skip = x if self.shortcut is None else self.shortcut(x)
        return h.add_(skip)  # h is a fresh convolution output that nothing keeps
