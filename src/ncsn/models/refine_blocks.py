"""RefineNet blocks of the NCSN / NCSNv2 decoders: RCU, MSF, CRP and the refine block.

The blocks compute what the official networks compute (ermongroup/ncsn
``CondRefineBlock``, ermongroup/ncsnv2 ``RefineBlock``):

- NCSN (v1): every RCU, MSF and CRP stage starts with a conditional instance norm++, and the
  CRP pools with a 5x5 *average* (stride 1, padding 2, the zero padding counted in the mean);
- NCSNv2: no normalisation anywhere in the refine blocks (``norm=None``) and a 5x5 *max*
  pool in the CRP;
- both resize with bilinear interpolation, ``align_corners=True``, in the fusion block.

A ``NormFactory`` is a callable ``num_features -> nn.Module`` whose module is called as
``norm(x, y)`` (``y``: the noise-level indices, ignored by unconditional norms), or as
``norm(x, y, act=True)`` for the normalisation followed by the ELU in one fused step. The
ELU and the average pool come from :mod:`ncsn.models.fused` (same numbers, less time and
memory than the plain PyTorch layers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ncsn.errors import ConfigError
from ncsn.models.fused import avg_pool5, elu, max_pool5

__all__ = ["NormFactory", "RCUBlock", "MSFBlock", "CRPBlock", "RefineBlock"]

NormFactory = Callable[[int], nn.Module]


def _conv3x3(cin: int, cout: int, *, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


def _norms(norm: NormFactory | None, channels: Sequence[int]) -> nn.ModuleList | None:
    return None if norm is None else nn.ModuleList(norm(c) for c in channels)


def _apply(norms: nn.ModuleList | None, k: int, x: Tensor, y: Tensor | None) -> Tensor:
    return x if norms is None else norms[k](x, y)


def _apply_elu(norms: nn.ModuleList | None, k: int, x: Tensor, y: Tensor | None) -> Tensor:
    """``elu(norm_k(x))`` as one fused step (``elu(x)`` without norms)."""
    return elu(x) if norms is None else norms[k](x, y, act=True)


class RCUBlock(nn.Module):
    """Residual conv units: ``n_blocks`` x (``n_stages`` x ([norm ->] ELU -> conv3x3, no bias)).

    Args:
        features: Channels (unchanged).
        n_blocks: Number of residual units.
        n_stages: Stages per unit.
        norm: Normalisation factory, or ``None`` for none (NCSNv2).
    """

    def __init__(self, features: int, n_blocks: int, n_stages: int, norm: NormFactory | None):
        super().__init__()
        self.n_blocks = n_blocks
        self.n_stages = n_stages
        self.norms = _norms(norm, [features] * (n_blocks * n_stages))
        self.convs = nn.ModuleList(
            _conv3x3(features, features, bias=False) for _ in range(n_blocks * n_stages)
        )

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the units."""
        k = 0
        for _ in range(self.n_blocks):
            residual = x
            for _ in range(self.n_stages):
                x = self.convs[k](_apply_elu(self.norms, k, x, y))
                k += 1
            x = x.add_(residual)  # x is a fresh convolution output that nothing keeps
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: per input [norm ->] conv3x3 (bias) -> bilinear resize, summed.

    Args:
        in_planes: Channels of each input.
        features: Output channels.
        norm: Normalisation factory, or ``None`` (NCSNv2).
    """

    def __init__(self, in_planes: Sequence[int], features: int, norm: NormFactory | None):
        super().__init__()
        self.features = features
        self.norms = _norms(norm, in_planes)
        self.convs = nn.ModuleList(_conv3x3(c, features, bias=True) for c in in_planes)

    def forward(
        self, xs: Sequence[Tensor], y: Tensor | None, output_size: tuple[int, int]
    ) -> Tensor:
        """Fuse ``xs`` into one map of spatial size ``output_size``."""
        out: Tensor | None = None
        for k, (x, conv) in enumerate(zip(xs, self.convs, strict=True)):
            h = conv(_apply(self.norms, k, x, y))
            if tuple(h.shape[-2:]) != tuple(output_size):  # same size: the identity
                h = F.interpolate(h, size=output_size, mode="bilinear", align_corners=True)
            out = h if out is None else out.add_(h)  # fresh conv / resize outputs
        assert out is not None
        return out


class CRPBlock(nn.Module):
    """Chained residual pooling: ELU, then ``n_stages`` x ([norm ->] pool 5x5 -> conv3x3, no
    bias), each stage's path added to the running sum.

    Args:
        features: Channels (unchanged).
        n_stages: Number of pooling stages.
        norm: Normalisation factory, or ``None`` (NCSNv2).
        pool: ``"avg"`` (NCSN: the official ``CondCRPBlock``'s ``AvgPool2d(5, 1, 2)``, zero
            padding counted in the mean) or ``"max"`` (NCSNv2: ``MaxPool2d(5, 1, 2)``).
    """

    def __init__(
        self,
        features: int,
        n_stages: int,
        norm: NormFactory | None,
        pool: Literal["max", "avg"] = "avg",
    ):
        super().__init__()
        if pool == "max":
            self.pool: nn.Module = nn.MaxPool2d(5, stride=1, padding=2)
        elif pool == "avg":
            self.pool = nn.AvgPool2d(5, stride=1, padding=2, count_include_pad=True)
        else:
            raise ConfigError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.norms = _norms(norm, [features] * n_stages)
        self.convs = nn.ModuleList(
            _conv3x3(features, features, bias=False) for _ in range(n_stages)
        )

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the pooling chain."""
        x = elu(x)
        path = x
        for k, conv in enumerate(self.convs):
            h = _apply(self.norms, k, path, y)
            path = conv(avg_pool5(h) if isinstance(self.pool, nn.AvgPool2d) else max_pool5(h))
            x = x + path if k == 0 else x.add_(path)  # the ELU output is kept for backward
        return x


class RefineBlock(nn.Module):
    """RefineNet block: per-input adaptive RCUs, fusion, chained residual pooling, output RCU.

    Args:
        in_planes: Channels of each input (the output takes the largest spatial size among
            the inputs). With ``start=True`` there is a single input and ``in_planes[0]`` must
            equal ``features``.
        features: Output channels.
        norm: Normalisation factory, or ``None`` for blocks without normalisation (NCSNv2).
        start: First (coarsest) block: no fusion.
        end: Last block: three output RCUs instead of one.
        pool: Pooling of the CRP block (``"avg"`` for NCSN, ``"max"`` for NCSNv2).
    """

    def __init__(
        self,
        in_planes: Sequence[int],
        features: int,
        norm: NormFactory | None,
        *,
        start: bool = False,
        end: bool = False,
        pool: Literal["max", "avg"] = "avg",
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
