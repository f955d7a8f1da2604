"""Building blocks shared by the score networks.

The RefineNet blocks follow Song & Ermon (2019), Appendix A: instance normalisation++
(conditional on the noise level for NCSN, plain for NCSNv2), residual blocks with dilation
and mean-pool downsampling, and the RefineNet residual conv unit (RCU), multi-resolution
fusion (MSF), chained residual pooling (CRP) and refine block.

Every normalisation layer has the signature ``norm(x, y)`` where ``y`` is the batch of
noise-level indices (``LongTensor`` of shape ``(B,)``) for the conditional layer and is
ignored by the unconditional one, so the same block classes build both networks. A
``NormFactory`` is any callable ``num_features -> nn.Module`` with that signature.

The sigma helpers every model uses (schedule validation, broadcasting ``sigma``) live in
:mod:`ncsn.models.sigma` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.sigma import (
    SigmaLike,
    as_sigma_batch,
    check_positive_sigma,
    init_score_net,
    nearest_level,
    validate_sigmas,
)

__all__ = [
    "NormFactory",
    "SigmaLike",
    "as_sigma_batch",
    "validate_sigmas",
    "init_score_net",
    "nearest_level",
    "check_positive_sigma",
    "SinusoidalEmbedding",
    "CondInstanceNorm2dPlus",
    "InstanceNorm2dPlus",
    "ResidualBlock",
    "RCUBlock",
    "MSFBlock",
    "CRPBlock",
    "RefineBlock",
]

NormFactory = Callable[[int], nn.Module]


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


def _instance_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Return ``(x_hat, mu_tilde)``: the instance-normalised input and the normalised means.

    ``mu_tilde[b, k] = (mu_k - m) / v`` where ``mu_k`` are the spatial means and ``m``, ``v``
    the mean and standard deviation of the ``mu_k`` over channels.
    """
    var, mu = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    x_hat = (x - mu) * torch.rsqrt(var + eps)
    m_var, m_mean = torch.var_mean(mu, dim=1, keepdim=True, correction=0)
    mu_tilde = (mu - m_mean) * torch.rsqrt(m_var + eps)
    return x_hat, mu_tilde


class CondInstanceNorm2dPlus(nn.Module):
    """Conditional instance normalisation++ (Song & Ermon 2019, Appendix A).

    ``out[k] = gamma_i[k] * (x_k - mu_k) / s_k + beta_i[k] + alpha_i[k] * (mu_k - m) / v``
    for noise level ``i``. The per-level ``(gamma, alpha, beta)`` live in one embedding of
    size ``L x 3C`` (``L x 2C`` without bias), with gamma, alpha ~ N(1, 0.02) and beta = 0.

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

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        """Normalise ``x`` (B, C, H, W) with the parameters of levels ``y`` (B,)."""
        if y is None:
            raise ValueError("CondInstanceNorm2dPlus needs the noise-level indices y")
        x_hat, mu_tilde = _instance_stats(x, self.eps)
        params = self.embed(y).to(x.dtype)[:, :, None, None]
        c = self.num_features
        out = params[:, :c] * x_hat + params[:, c : 2 * c] * mu_tilde
        if self.bias:
            out = out + params[:, 2 * c :]
        return out


class InstanceNorm2dPlus(nn.Module):
    """Unconditional instance normalisation++ (NCSNv2): one learnable gamma, alpha, beta.

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

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Normalise ``x`` (B, C, H, W); ``y`` is accepted for interface parity and ignored."""
        x_hat, mu_tilde = _instance_stats(x, self.eps)
        gamma = self.gamma.to(x.dtype)[None, :, None, None]
        alpha = self.alpha.to(x.dtype)[None, :, None, None]
        out = gamma * x_hat + alpha * mu_tilde
        if self.beta is not None:
            out = out + self.beta.to(x.dtype)[None, :, None, None]
        return out


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
        return F.avg_pool2d(self.conv(x), 2)


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
        h = self.conv1(F.elu(self.norm1(x, y)))
        h = self.conv2(F.elu(self.norm2(h, y)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + h


# --------------------------------------------------------------------------------------
# RefineNet blocks
# --------------------------------------------------------------------------------------


class RCUBlock(nn.Module):
    """Residual conv units: ``n_blocks`` x (``n_stages`` x (norm -> ELU -> conv3x3, no bias)).

    Args:
        features: Channels (unchanged).
        n_blocks: Number of residual units.
        n_stages: Stages per unit.
        norm: Normalisation factory.
    """

    def __init__(self, features: int, n_blocks: int, n_stages: int, norm: NormFactory):
        super().__init__()
        self.n_blocks = n_blocks
        self.n_stages = n_stages
        self.norms = nn.ModuleList(norm(features) for _ in range(n_blocks * n_stages))
        self.convs = nn.ModuleList(
            _conv3x3(features, features, bias=False) for _ in range(n_blocks * n_stages)
        )

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the units."""
        k = 0
        for _ in range(self.n_blocks):
            residual = x
            for _ in range(self.n_stages):
                x = self.convs[k](F.elu(self.norms[k](x, y)))
                k += 1
            x = x + residual
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: per input norm -> conv3x3 (bias) -> bilinear resize, summed.

    Args:
        in_planes: Channels of each input.
        features: Output channels.
        norm: Normalisation factory.
    """

    def __init__(self, in_planes: Sequence[int], features: int, norm: NormFactory):
        super().__init__()
        self.features = features
        self.norms = nn.ModuleList(norm(c) for c in in_planes)
        self.convs = nn.ModuleList(_conv3x3(c, features, bias=True) for c in in_planes)

    def forward(
        self, xs: Sequence[Tensor], y: Tensor | None, output_size: tuple[int, int]
    ) -> Tensor:
        """Fuse ``xs`` into one map of spatial size ``output_size``."""
        out: Tensor | None = None
        for x, norm, conv in zip(xs, self.norms, self.convs, strict=True):
            h = conv(norm(x, y))
            if tuple(h.shape[-2:]) != tuple(output_size):
                h = F.interpolate(h, size=output_size, mode="bilinear", align_corners=False)
            out = h if out is None else out + h
        assert out is not None
        return out


class CRPBlock(nn.Module):
    """Chained residual pooling: ELU, then ``n_stages`` x (norm -> pool 5x5 -> conv3x3, no
    bias), each stage's path added to the running sum.

    Args:
        features: Channels (unchanged).
        n_stages: Number of pooling stages.
        norm: Normalisation factory.
        pool: ``"max"`` (NCSN) or ``"avg"`` (NCSNv2) pooling, 5x5 with stride 1.
    """

    def __init__(
        self,
        features: int,
        n_stages: int,
        norm: NormFactory,
        pool: Literal["max", "avg"] = "max",
    ):
        super().__init__()
        if pool == "max":
            self.pool: nn.Module = nn.MaxPool2d(5, stride=1, padding=2)
        elif pool == "avg":
            self.pool = nn.AvgPool2d(5, stride=1, padding=2, count_include_pad=False)
        else:
            raise ConfigError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.norms = nn.ModuleList(norm(features) for _ in range(n_stages))
        self.convs = nn.ModuleList(
            _conv3x3(features, features, bias=False) for _ in range(n_stages)
        )

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the pooling chain."""
        x = F.elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs, strict=True):
            path = conv(self.pool(norm(path, y)))
            x = x + path
        return x


class RefineBlock(nn.Module):
    """RefineNet block: per-input adaptive RCUs, fusion, chained residual pooling, output RCU.

    Args:
        in_planes: Channels of each input (finest resolution first is not required; the
            output takes the largest spatial size among the inputs).
        features: Output channels. With ``start=True`` there is a single input and
            ``in_planes[0]`` must equal ``features``.
        norm: Normalisation factory.
        start: First (coarsest) block: no fusion.
        end: Last block: three output RCUs instead of one.
        pool: Pooling of the CRP block (``"max"`` or ``"avg"``).
    """

    def __init__(
        self,
        in_planes: Sequence[int],
        features: int,
        norm: NormFactory,
        *,
        start: bool = False,
        end: bool = False,
        pool: Literal["max", "avg"] = "max",
    ):
        super().__init__()
        in_planes = list(in_planes)
        if start and (len(in_planes) != 1 or in_planes[0] != features):
            raise ConfigError(
                f"a start RefineBlock needs one input with {features} channels, got {in_planes}"
            )
        self.adapt = nn.ModuleList(RCUBlock(c, 2, 2, norm) for c in in_planes)
        self.msf = None if start else MSFBlock(in_planes, features, norm)
        self.crp = CRPBlock(features, 2, norm, pool)
        self.output = RCUBlock(features, 3 if end else 1, 2, norm)

    def forward(self, xs: Sequence[Tensor], y: Tensor | None = None) -> Tensor:
        """Refine and fuse ``xs``."""
        hs = [adapt(x, y) for adapt, x in zip(self.adapt, xs, strict=True)]
        if self.msf is None:
            h = hs[0]
        else:
            size = max((tuple(x.shape[-2:]) for x in xs), key=lambda s: s[0] * s[1])
            h = self.msf(hs, y, size)
        return self.output(self.crp(h, y), y)
