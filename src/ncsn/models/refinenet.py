"""RefineNet score networks: NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020).

Layout (``ngf`` base channels, sizes for a 32x32 input)::

    begin   conv3x3 C -> ngf                                  32x32
    res1    2 x ResidualBlock(ngf -> ngf)                     32x32
    res2    ResidualBlock(ngf -> 2ngf, down), (2ngf -> 2ngf)  16x16
    res3    ResidualBlock(2ngf, 'down' dilation 2), (dil. 2)  16x16  (dilation, no pooling)
    res4    ResidualBlock(2ngf, 'down' dilation 4), (dil. 4)  16x16
    refine1 ([res4], 2ngf, start)        refine2 ([res3, refine1], 2ngf)
    refine3 ([res2, refine2], ngf)       refine4 ([res1, refine3], ngf, end)
    end     norm -> ELU -> conv3x3 ngf -> C

Inputs of any size >= 4 work (28, 32, 64, odd sizes too): the one real downsampling is a
2x2 mean pool and the fusion blocks resize bilinearly to the finer input. NCSN runs 64x64
inputs at the same layout (its receptive field is then relatively smaller). NCSNv2 adds one
more real downsampling stage for ``image_size >= 64`` (``deeper=None`` picks this
automatically): ``res1 @64, res2 down @32, res3 down @16, res4 dil 2 @16, res5 dil 4 @16``
with five refine blocks.

Neither model rescales its input; feed data in whatever range the training code uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.layers import (
    CondInstanceNorm2dPlus,
    InstanceNorm2dPlus,
    NormFactory,
    RefineBlock,
    ResidualBlock,
    SigmaLike,
    as_sigma_batch,
    check_positive_sigma,
    init_score_net,
    nearest_level,
)

__all__ = ["NCSN", "NCSNv2"]

# (out_channels as a multiple of ngf, first block resamples "down", dilation)
_Stage = tuple[int, bool, int]
_STAGES_32: tuple[_Stage, ...] = ((1, False, 1), (2, True, 1), (2, True, 2), (2, True, 4))
_STAGES_64: tuple[_Stage, ...] = (
    (1, False, 1),
    (2, True, 1),
    (2, True, 1),
    (2, True, 2),
    (2, True, 4),
)


def _check_common(channels: int, image_size: int, ngf: int) -> None:
    for name, value, low in (("channels", channels, 1), ("image_size", image_size, 4)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(ngf, int) or ngf < 1:
        raise ConfigError(f"ngf must be a positive integer, got {ngf!r}")


class _RefineNetBackbone(nn.Module):
    """Residual encoder + RefineNet decoder shared by NCSN and NCSNv2."""

    def __init__(
        self,
        channels: int,
        ngf: int,
        stages: Sequence[_Stage],
        norm: NormFactory,
        pool: Literal["max", "avg"],
    ):
        super().__init__()
        self.begin = nn.Conv2d(channels, ngf, 3, padding=1)
        outs = [mult * ngf for mult, _, _ in stages]
        self.res = nn.ModuleList()
        cin = ngf
        for (_, down, dilation), cout in zip(stages, outs, strict=True):
            first = ResidualBlock(cin, cout, norm, "down" if down else None, dilation)
            second = ResidualBlock(cout, cout, norm, None, dilation)
            self.res.append(nn.ModuleList([first, second]))
            cin = cout
        # refine block k (coarsest first) works at the width of the next finer stage
        n = len(stages)
        self.refine = nn.ModuleList()
        prev = outs[-1]
        for k in range(n):
            level = n - 1 - k
            features = outs[max(level - 1, 0)]
            in_planes = [outs[level]] if k == 0 else [outs[level], prev]
            self.refine.append(
                RefineBlock(in_planes, features, norm, start=k == 0, end=k == n - 1, pool=pool)
            )
            prev = features
        self.end_norm = norm(ngf)
        self.end = nn.Conv2d(ngf, channels, 3, padding=1)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.begin(x)
        feats = []
        for first, second in self.res:
            h = second(first(h, y), y)
            feats.append(h)
        h = self.refine[0]([feats[-1]], y)
        for k in range(1, len(self.refine)):
            h = self.refine[k]([feats[-1 - k], h], y)
        return self.end(F.elu(self.end_norm(h, y)))


class NCSN(nn.Module):
    """Noise-conditional score network of Song & Ermon (2019), Appendix A.

    A dilated RefineNet with conditional instance normalisation++ and ELU. ``forward`` maps
    each ``sigma`` to the nearest noise level in log space and uses that level's
    normalisation parameters; the output is *not* divided by sigma.

    Args:
        channels: Image channels ``C``.
        image_size: Image height/width (used for validation and bookkeeping; any size
            >= 4 runs).
        sigmas: Noise levels, strictly decreasing, shape ``(L,)``.
        ngf: Base width (64 for MNIST, 128 for CIFAR-10 in the paper).
    """

    discrete_sigmas = True  # knows only its L levels: samplers use only those

    def __init__(
        self,
        channels: int,
        image_size: int,
        sigmas: Tensor | Sequence[float],
        ngf: int = 64,
    ):
        super().__init__()
        _check_common(channels, image_size, ngf)
        init_score_net(self, channels, image_size, sigmas)
        self.ngf = ngf
        num_levels = self.num_levels

        def norm(c: int) -> nn.Module:
            return CondInstanceNorm2dPlus(c, num_levels)

        self.net = _RefineNetBackbone(channels, ngf, _STAGES_32, norm, "max")

    def sigma_to_level(self, sigma: SigmaLike, x: Tensor) -> Tensor:
        """Nearest-level indices (log space) for ``sigma`` broadcast over the batch of ``x``.

        Args:
            sigma: Float, 0-d tensor or ``(B,)`` tensor of noise standard deviations.
            x: The input batch (gives ``B`` and the device).

        Returns:
            ``LongTensor`` of shape ``(B,)`` with values in ``[0, L)``.
        """
        return nearest_level(as_sigma_batch(sigma, x), self.sigmas)

    def forward(self, x: Tensor, sigma: SigmaLike, labels: Tensor | None = None) -> Tensor:
        """Estimate the score of the noise-perturbed data.

        Args:
            x: Noisy images, shape ``(B, C, H, W)``.
            sigma: Noise standard deviations, ``(B,)``, 0-d or float.
            labels: Optional explicit level indices ``(B,)``; overrides ``sigma``.

        Returns:
            The score estimate, shape ``(B, C, H, W)``.
        """
        if x.dim() != 4:
            raise ValueError(f"NCSN expects x of shape (B, C, H, W), got {tuple(x.shape)}")
        y = labels.to(x.device).long() if labels is not None else self.sigma_to_level(sigma, x)
        return self.net(x, y)


class NCSNv2(nn.Module):
    """Score network of Song & Ermon (2020), "Improved techniques ...".

    The RefineNet of :class:`NCSN` with unconditional instance normalisation++, average
    pooling in the CRP blocks and no noise conditioning inside the network: the output is
    divided by sigma, so the network learns ``sigma * score``, which is well scaled at every
    noise level.

    Args:
        channels: Image channels ``C``.
        image_size: Image height/width.
        sigmas: Noise levels, strictly decreasing, shape ``(L,)`` (stored for bookkeeping).
        ngf: Base width.
        norm_bias: Learn the beta of the instance norms.
        deeper: Add a downsampling stage (five stages); ``None`` selects it for
            ``image_size >= 64``.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        sigmas: Tensor | Sequence[float],
        ngf: int = 128,
        norm_bias: bool = True,
        deeper: bool | None = None,
    ):
        super().__init__()
        _check_common(channels, image_size, ngf)
        init_score_net(self, channels, image_size, sigmas)
        self.ngf = ngf
        self.deeper = image_size >= 64 if deeper is None else bool(deeper)

        def norm(c: int) -> nn.Module:
            return InstanceNorm2dPlus(c, bias=norm_bias)

        stages = _STAGES_64 if self.deeper else _STAGES_32
        self.net = _RefineNetBackbone(channels, ngf, stages, norm, "avg")

    def forward(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        """Estimate the score of the noise-perturbed data.

        Args:
            x: Noisy images, shape ``(B, C, H, W)``.
            sigma: Noise standard deviations, ``(B,)``, 0-d or float; must be > 0.

        Returns:
            The score estimate ``net(x) / sigma``, shape ``(B, C, H, W)``.
        """
        if x.dim() != 4:
            raise ValueError(f"NCSNv2 expects x of shape (B, C, H, W), got {tuple(x.shape)}")
        s = as_sigma_batch(sigma, x)
        check_positive_sigma(s, "NCSNv2")
        return self.net(x, None) / s[:, None, None, None]
