"""Fast, memory-lean versions of the RefineNets' elementwise layers (same numbers).

The RefineNets spend the time their convolutions leave in three places: the ELU, the
instance-norm++ statistics and the 5x5 pooling of the CRP blocks. This module computes each
in fewer passes over memory and keeps fewer activations for the backward pass, while giving
the same results as the plain layers to float32 rounding (``tests/models/test_fused.py``):

- :func:`elu`: ``max(x, exp(min(x, 0)) - 1)``. PyTorch's ELU evaluates ``expm1`` (slow and
  erratic on some CPUs); ``exp`` is vectorised everywhere. The backward needs only the
  output (``1`` where it is positive, ``out + 1`` elsewhere), which the next convolution
  keeps anyway, so the ELU stores nothing of its own.
- :func:`instance_norm_plus`: instance normalisation++ as the official code computes it,
  ``gamma * ((x - mu) / s + alpha * (mu - m) / v) + beta``, optionally followed by the ELU,
  as one autograd node with a hand-written backward: it keeps its input (often kept by a
  shortcut convolution anyway) and its output (kept by the next convolution anyway)
  instead of the four full-size tensors autograd keeps for the composed layer, and the
  statistics take two fast passes (exact variance) instead of ``var_mean``.
- :func:`avg_pool5`: the CRP's 5x5 average pool (stride 1, padding 2, padding counted) as a
  depthwise convolution; the operator is its own adjoint, so the backward is the same pool
  of the gradient and nothing is stored.
- :func:`max_pool5`: NCSNv2's 5x5 max pool (stride 1, padding 2), keeping only its input
  (which the ELU before it keeps anyway) instead of an int64 index map twice its size; the
  backward finds the maxima again.
- :func:`mean_pool2`: the residual blocks' 2x2 mean pool, storing nothing (PyTorch's keeps
  its full-size input).

All functions are differentiable twice (the backward passes are written with
differentiable operations), so losses that differentiate the score with respect to the
input (sliced score matching) still work. Inside ``with plain_ops():`` every function computes
with the plain composed PyTorch operations instead: the reference the tests compare with.
While ``torch.compile`` traces a network, the plain composition is what it sees: the
compiler fuses it into its own kernels, and the graph has no breaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from ncsn.acceleration import compiling

__all__ = [
    "elu",
    "instance_norm_plus",
    "avg_pool5",
    "max_pool5",
    "mean_pool2",
    "plain_ops",
    "fused_enabled",
]

_FUSED = [True]


@contextmanager
def plain_ops() -> Iterator[None]:
    """Compute the layers of this module with plain composed PyTorch operations."""
    previous = _FUSED[0]
    _FUSED[0] = False
    try:
        yield
    finally:
        _FUSED[0] = previous


def fused_enabled() -> bool:
    """Whether the fused implementations are in use (not inside :func:`plain_ops`)."""
    return _FUSED[0]


def _fused() -> bool:
    """Use the hand-written kernels: not inside :func:`plain_ops`, and not while
    ``torch.compile`` traces the network. The compiler fuses the plain composition itself;
    traced, the hand-written autograd functions made NCSN's second compiled training step
    fail, and issue 10's CUDA run recompiled blocks until dynamo's limit left them eager."""
    return _FUSED[0] and not compiling()


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# --------------------------------------------------------------------------------------
# ELU
# --------------------------------------------------------------------------------------


def _elu_forward(z: Tensor, inplace: bool) -> Tensor:
    """``max(z, exp(min(z, 0)) - 1)``, equal to ``elu(z)`` because ``exp(t) - 1 >= t``."""
    e = torch.clamp(z, max=0.0).exp_().sub_(1.0)
    return torch.maximum(z, e, out=z) if inplace else torch.maximum(z, e)


def _elu_grad(grad: Tensor, out: Tensor) -> Tensor:
    """ELU backward from the output: ``grad`` where ``out > 0``, ``grad * (out + 1)`` else."""
    return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, out)


class _ELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # type: ignore[override]
        out = _elu_forward(z, inplace=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        return _elu_grad(grad, out)


def elu(x: Tensor) -> Tensor:
    """ELU (``alpha = 1``) that stores only its output for the backward pass."""
    if not _fused():
        return F.elu(x)
    if not _needs_grad(x):
        return _elu_forward(x, inplace=False)
    return _ELU.apply(x)


# --------------------------------------------------------------------------------------
# instance normalisation++
# --------------------------------------------------------------------------------------


def _coefficients(mu: Tensor, var: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(s, mt, t)``: ``1 / sqrt(var + eps)``, the normalised channel means ``(mu - m) t``
    and ``t = 1 / sqrt(v^2 + eps)`` (``v^2``: unbiased variance of ``mu`` over channels)."""
    s = torch.rsqrt(var + eps)
    m_var, m_mean = torch.var_mean(mu, dim=1, keepdim=True, correction=1)
    t = torch.rsqrt(m_var + eps)
    return s, (mu - m_mean) * t, t


def _bc(v: Tensor) -> Tensor:
    return v[:, :, None, None]


def _statistics(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(mu, x - mu, s, mt, t)`` of :func:`_coefficients`, two passes (exact variance)."""
    mu = x.mean(dim=(2, 3))
    d = x - _bc(mu)
    var = (d * d).mean(dim=(2, 3))
    s, mt, t = _coefficients(mu, var, eps)
    return mu, d, s, mt, t


class _InstanceNormPlus(torch.autograd.Function):
    """``z = gamma * ((x - mu) s + alpha * mt) + beta`` [then ELU]; coefficients (N, C)."""

    @staticmethod
    def forward(ctx, x, gamma, alpha, beta, eps, act):  # type: ignore[override]
        mu, d, s, mt, t = _statistics(x, eps)
        b = gamma * alpha * mt
        if beta is not None:
            b = b + beta
        out = torch.addcmul(_bc(b), d, _bc(gamma * s))
        if act:
            out = _elu_forward(out, inplace=True)
        ctx.save_for_backward(x, out, mu, s, mt, t, gamma, alpha)
        ctx.eps, ctx.act, ctx.has_beta = eps, act, beta is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, out, mu, s, mt, t, gamma, alpha = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: rebuild the statistics with a graph
            mu, d, s, mt, t = _statistics(x, ctx.eps)
        else:
            d = x - _bc(mu)
        g = _elu_grad(grad, out) if ctx.act else grad
        size = d.shape[2] * d.shape[3]
        g_sum = g.sum(dim=(2, 3))
        gx_sum = (g * d).sum(dim=(2, 3)) * s  # sum of g * x_hat
        # the parameters: z = gamma * x_hat + gamma * alpha * mt + beta
        d_gamma = gx_sum + alpha * mt * g_sum
        d_alpha = gamma * mt * g_sum
        d_beta = g_sum if ctx.has_beta else None
        # through mt = (mu - mean_c mu) t, t = 1 / sqrt(var_c(mu, unbiased) + eps)
        p = gamma * alpha * g_sum
        dof = mt.shape[1] - 1
        d_mu = t * (p - p.mean(1, keepdim=True) - mt * (p * mt).sum(1, keepdim=True) / dof)
        # the instance-norm backward through x_hat = d s, plus the mean path d_mu / size
        a = gamma * s
        shift = (d_mu - a * g_sum) / size
        grad_x = torch.addcmul(_bc(shift), d, _bc(-a * s * gx_sum / size))
        if torch.is_grad_enabled():
            grad_x = torch.addcmul(grad_x, g, _bc(a))
        else:
            grad_x.addcmul_(g, _bc(a))  # no double backward: reuse the buffer
        return grad_x, d_gamma, d_alpha, d_beta, None, None


def _plain_instance_norm_plus(
    x: Tensor, gamma: Tensor, alpha: Tensor, beta: Tensor | None, eps: float, act: bool
) -> Tensor:
    var, mu = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    x_hat = (x - mu) / torch.sqrt(var + eps)
    m_var, m_mean = torch.var_mean(mu, dim=1, keepdim=True, correction=1)
    mu_tilde = (mu - m_mean) / torch.sqrt(m_var + eps)
    out = _bc(gamma) * (x_hat + _bc(alpha) * mu_tilde)
    if beta is not None:
        out = out + _bc(beta)
    return F.elu(out) if act else out


def instance_norm_plus(
    x: Tensor,
    gamma: Tensor,
    alpha: Tensor,
    beta: Tensor | None,
    *,
    eps: float = 1e-5,
    act: bool = False,
) -> Tensor:
    """Instance normalisation++ (official form), optionally followed by the ELU.

    ``gamma * ((x - mu) / sqrt(s^2 + eps) + alpha * (mu - m) / sqrt(v^2 + eps)) + beta``,
    with ``mu``, ``s^2`` the spatial mean and (biased) variance of each channel and ``m``,
    ``v^2`` the mean and unbiased variance of the ``mu`` over channels.

    Args:
        x: Input ``(N, C, H, W)``, any memory format.
        gamma, alpha: Scales, shape ``(N, C)`` or ``(C,)``.
        beta: Shift of the same shape, or ``None``.
        eps: Variance floor.
        act: Apply the ELU to the result.

    Returns:
        A tensor like ``x`` (same memory format and dtype; half-precision inputs, as under
        autocast, are normalised in float32).
    """
    if x.dtype in (torch.float16, torch.bfloat16) or gamma.dtype != x.dtype:
        # autocast: statistics and affine in float32, the result in the input's dtype
        dtype = torch.promote_types(x.dtype, torch.float32)
        cast = (None if v is None else v.to(dtype) for v in (x, gamma, alpha, beta))
        return instance_norm_plus(*cast, eps=eps, act=act).to(x.dtype)
    n, c = x.shape[:2]
    gamma, alpha = gamma.expand(n, c), alpha.expand(n, c)
    beta = None if beta is None else beta.expand(n, c)
    if not _fused():
        return _plain_instance_norm_plus(x, gamma, alpha, beta, eps, act)
    if _needs_grad(x, gamma, alpha, beta):
        return _InstanceNormPlus.apply(x, gamma, alpha, beta, eps, act)
    _, d, s, mt, _ = _statistics(x, eps)  # inference: work in the buffer of x - mu
    b = gamma * alpha * mt if beta is None else beta + gamma * alpha * mt
    out = torch.addcmul(_bc(b), d, _bc(gamma * s), out=d)
    return _elu_forward(out, inplace=True) if act else out


# --------------------------------------------------------------------------------------
# 5x5 average pooling
# --------------------------------------------------------------------------------------

_BOX: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _box_filter(x: Tensor) -> Tensor:
    c = x.shape[1]
    key = (c, x.dtype, x.device)
    weight = _BOX.get(key)
    if weight is None:
        weight = _BOX[key] = torch.full((c, 1, 5, 5), 1.0 / 25.0, dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight, padding=2, groups=c)


class _AvgPool5(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return _box_filter(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return avg_pool5(grad)  # the zero-padded symmetric box filter is self-adjoint


def avg_pool5(x: Tensor) -> Tensor:
    """``AvgPool2d(5, stride=1, padding=2)`` counting the padding; stores nothing."""
    if not _fused():
        return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)
    if not _needs_grad(x):
        return _box_filter(x)
    return _AvgPool5.apply(x)


class _MaxPool5(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return F.max_pool2d(x, 5, stride=1, padding=2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        _, indices = F.max_pool2d(x.detach(), 5, stride=1, padding=2, return_indices=True)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, [5, 5], [1, 1], [2, 2], [1, 1], False, indices
        )


def max_pool5(x: Tensor) -> Tensor:
    """``MaxPool2d(5, stride=1, padding=2)`` keeping only its input for the backward pass."""
    if not _fused() or not _needs_grad(x):
        return F.max_pool2d(x, 5, stride=1, padding=2)
    return _MaxPool5.apply(x)


# --------------------------------------------------------------------------------------
# 2x2 mean pooling
# --------------------------------------------------------------------------------------


def _mean_pool2_adjoint(grad: Tensor, size: tuple[int, int]) -> Tensor:
    """The adjoint of 2x2 mean pooling onto an ``size`` input (odd edges get no gradient)."""
    up = F.interpolate(grad * 0.25, scale_factor=2.0, mode="nearest")
    h, w = size
    return F.pad(up, (0, w - up.shape[3], 0, h - up.shape[2]))


class _MeanPool2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.size = (x.shape[2], x.shape[3])
        return F.avg_pool2d(x, 2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return _MeanPool2Adjoint.apply(grad, ctx.size)


class _MeanPool2Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad: Tensor, size: tuple[int, int]) -> Tensor:  # type: ignore[override]
        return _mean_pool2_adjoint(grad, size)

    @staticmethod
    def backward(ctx, gg: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return mean_pool2(gg), None


def mean_pool2(x: Tensor) -> Tensor:
    """``avg_pool2d(x, 2)`` that keeps nothing for its backward pass."""
    if not _fused() or not _needs_grad(x):
        return F.avg_pool2d(x, 2)
    return _MeanPool2.apply(x)
