"""RefineNet score networks: NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020).

Both are the authors' networks, op for op (ermongroup/ncsn ``CondRefineNetDilated``,
ermongroup/ncsnv2 ``NCSNv2`` and ``NCSNv2Deeper``): the official checkpoints load into them
(:func:`ncsn.load_official`) and reproduce the official outputs. Layout (``ngf`` base
channels, sizes for a 32x32 input)::

    (x -> 2x - 1 unless rescale_input=False)
    begin   conv3x3 C -> ngf                                  32x32
    res1    2 x ResidualBlock(ngf -> ngf)                     32x32
    res2    ResidualBlock(ngf -> 2ngf, down), (2ngf -> 2ngf)  16x16
    res3    ResidualBlock(2ngf, 'down' dilation 2), (dil. 2)  16x16  (dilation, no pooling)
    res4    ResidualBlock(2ngf, 'down' dilation 4), (dil. 4)  16x16
    refine1 ([res4], 2ngf, start)        refine2 ([res3, refine1], 2ngf)
    refine3 ([res2, refine2], ngf)       refine4 ([res1, refine3], ngf, end)
    end     norm -> ELU -> conv3x3 ngf -> C

NCSN normalises with conditional instance norm++ everywhere and pools with a 5x5 average in
the CRP blocks; NCSNv2 uses unconditional instance norm++ in the residual blocks and at the
end, no normalisation in the refine blocks, 5x5 max pooling, and divides the output by sigma.

Inputs of any size >= 4 work (28, 32, 64, odd sizes too): the one real downsampling is a
2x2 mean pool and the fusion blocks resize bilinearly to the finer input. NCSN runs 64x64
inputs at the same layout. NCSNv2's ``variant="deeper"`` (the official ``NCSNv2Deeper``,
which the official code uses for LSUN at 96 and 128 pixels; the default for
``image_size > 64``, while CIFAR-10 and CelebA 64x64 use the base network) has one more real
downsampling stage and wider coarse stages (shown at 64x64): ``res1 ngf @64, res2 2ngf down
@32, res3 2ngf down @16, res4 4ngf dil 2, res5 4ngf dil 4`` with five refine blocks.

Like the official networks, both map their input ``x`` in [0, 1] to ``2x - 1`` before the
first convolution (``rescale_input=True``, the default); the official code skips this for
logit-transformed or already rescaled data (``rescale_input=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.layers import CondInstanceNorm2dPlus, InstanceNorm2dPlus, ResidualBlock
from ncsn.models.refine_blocks import NormFactory, RefineBlock
from ncsn.models.sigma import (
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
    (4, True, 2),
    (4, True, 4),
)
VARIANTS = {"base": _STAGES_32, "deeper": _STAGES_64}


def _check_common(channels: int, image_size: int, ngf: int) -> None:
    for name, value, low in (("channels", channels, 1), ("image_size", image_size, 4)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(ngf, int) or ngf < 1:
        raise ConfigError(f"ngf must be a positive integer, got {ngf!r}")


class _RefineNetBackbone(nn.Module):
    """Residual encoder + RefineNet decoder shared by NCSN and NCSNv2.

    ``norm`` normalises the residual blocks and the output; ``refine_norm`` (``None``: no
    normalisation) the refine blocks, whose CRP blocks pool with ``pool``. With
    ``channels_last`` the activations are kept in the channels-last memory format (faster
    convolutions and pooling on CPUs; the output is returned contiguous).
    """

    def __init__(
        self,
        channels: int,
        ngf: int,
        stages: Sequence[_Stage],
        norm: NormFactory,
        refine_norm: NormFactory | None,
        pool: Literal["max", "avg"],
        rescale_input: bool,
        channels_last: bool,
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
                RefineBlock(
                    in_planes, features, refine_norm, start=k == 0, end=k == n - 1, pool=pool
                )
            )
            prev = features
        self.end_norm = norm(ngf)
        self.end = nn.Conv2d(ngf, channels, 3, padding=1)
        self.rescale_input = rescale_input
        self.channels_last = channels_last
        if channels_last:  # weights too: spares a layout copy of every weight at every call
            self.to(memory_format=torch.channels_last)

    def checkpoint_blocks(self) -> list[nn.Module]:
        """The blocks that activation checkpointing recomputes (the hook of
        :func:`ncsn.acceleration.checkpoint_blocks`): each residual block and each part of
        the refine blocks (every RCU, the fusion, the pooling chain), finer than whole
        refine blocks, so that the largest recomputed part stays small."""
        blocks: list[nn.Module] = [b for pair in self.res for b in pair]
        for r in self.refine:
            blocks += [*r.adapt, *([r.msf] if r.msf is not None else []), r.crp, r.output]
        return blocks

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        if self.rescale_input:
            x = 2 * x - 1
        h = self.begin(x)
        if self.channels_last:  # after the conv: a 1-channel input is NCHW and NHWC at once
            h = h.contiguous(memory_format=torch.channels_last)
        feats = []
        for first, second in self.res:
            h = second(first(h, y), y)
            feats.append(h)
        h = self.refine[0]([feats[-1]], y)
        for k in range(1, len(self.refine)):
            h = self.refine[k]([feats[-1 - k], h], y)
        return self.end(self.end_norm(h, y, act=True)).contiguous()


class NCSN(nn.Module):
    """Noise-conditional score network of Song & Ermon (2019), Appendix A.

    A dilated RefineNet with conditional instance normalisation++, ELU and average pooling
    in the CRP blocks (the official ``CondRefineNetDilated``). ``forward`` maps each
    ``sigma`` to the nearest noise level in log space and uses that level's normalisation
    parameters (the official network takes the level index, see ``labels``); the output is
    *not* divided by sigma.

    Args:
        channels: Image channels ``C``.
        image_size: Image height/width (used for validation and bookkeeping; any size
            >= 4 runs).
        sigmas: Noise levels, strictly decreasing, shape ``(L,)``.
        ngf: Base width (64 for MNIST, 128 for CIFAR-10 in the paper).
        rescale_input: Feed ``2x - 1`` to the first convolution (the official network does
            unless the data are logit-transformed).
        channels_last: Keep the activations and convolution weights channels-last (same
            numbers, faster on CPUs; checkpoints store contiguous tensors either way).
    """

    discrete_sigmas = True  # knows only its L levels: samplers use only those

    def __init__(
        self,
        channels: int,
        image_size: int,
        sigmas: Tensor | Sequence[float],
        ngf: int = 64,
        rescale_input: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        _check_common(channels, image_size, ngf)
        init_score_net(self, channels, image_size, sigmas)
        self.ngf = ngf
        num_levels = self.num_levels

        def norm(c: int) -> nn.Module:
            return CondInstanceNorm2dPlus(c, num_levels)

        self.net = _RefineNetBackbone(
            channels, ngf, _STAGES_32, norm, norm, "avg", bool(rescale_input), bool(channels_last)
        )

    def checkpoint_blocks(self) -> list[nn.Module]:
        """Blocks for ``training.activation_checkpointing`` (see the backbone's)."""
        return self.net.checkpoint_blocks()

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

    The RefineNet of :class:`NCSN` with unconditional instance normalisation++ in the
    residual blocks and at the output, no normalisation in the refine blocks, max pooling in
    the CRP blocks and no noise conditioning inside the network: the output is divided by
    sigma, so the network learns ``sigma * score``, which is well scaled at every noise level
    (the official ``NCSNv2`` / ``NCSNv2Deeper``, which divide by ``sigmas[labels]``).

    Args:
        channels: Image channels ``C``.
        image_size: Image height/width.
        sigmas: Noise levels, strictly decreasing, shape ``(L,)`` (stored for bookkeeping).
        ngf: Base width.
        norm_bias: Learn the beta of the instance norms.
        variant: ``"base"`` (four stages, the official ``NCSNv2``) or ``"deeper"`` (five
            stages, ``NCSNv2Deeper``); ``None`` selects ``"deeper"`` for ``image_size > 64``,
            as the official code does (CIFAR-10, CelebA 64x64: base; LSUN: deeper).
        rescale_input: Feed ``2x - 1`` to the first convolution (the official network does
            unless the data are logit-transformed or rescaled).
        channels_last: Keep the activations and convolution weights channels-last (same
            numbers, faster on CPUs; checkpoints store contiguous tensors either way).
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        sigmas: Tensor | Sequence[float],
        ngf: int = 128,
        norm_bias: bool = True,
        variant: str | None = None,
        rescale_input: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        _check_common(channels, image_size, ngf)
        if variant is None:
            variant = "deeper" if image_size > 64 else "base"
        if variant not in VARIANTS:
            raise ConfigError(
                f"unknown NCSNv2 variant {variant!r}; valid choices are: {', '.join(VARIANTS)}"
            )
        init_score_net(self, channels, image_size, sigmas)
        self.ngf = ngf
        self.variant = variant

        def norm(c: int) -> nn.Module:
            return InstanceNorm2dPlus(c, bias=norm_bias)

        self.net = _RefineNetBackbone(
            channels,
            ngf,
            VARIANTS[variant],
            norm,
            None,
            "max",
            bool(rescale_input),
            bool(channels_last),
        )

    def checkpoint_blocks(self) -> list[nn.Module]:
        """Blocks for ``training.activation_checkpointing`` (see the backbone's)."""
        return self.net.checkpoint_blocks()

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
