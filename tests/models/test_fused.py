"""The fast RefineNet layers (ncsn.models.fused) compute what the plain PyTorch layers compute.

Reference: the same network with ``plain_ops()`` (the composed PyTorch operations, as the
official code writes them) and NCHW activations, i.e. plain fp32 eager PyTorch. Outputs must
agree within 1e-5 relative; gradients are checked in float64 with ``gradcheck``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ncsn.acceleration import apply_activation_checkpointing
from ncsn.models import NCSN, NCSNv2
from ncsn.models.fused import (
    avg_pool5,
    elu,
    fused_enabled,
    instance_norm_plus,
    max_pool5,
    mean_pool2,
    plain_ops,
)

SIGMAS = torch.logspace(0, -2, 10)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest elementwise difference relative to the reference's largest magnitude."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max()) if b.abs().max() > 0 else float(a.abs().max())


def official_norm(x, gamma, alpha, beta, act=False):
    """Instance norm++ exactly as ermongroup/ncsn's ConditionalInstanceNorm2dPlus computes it."""
    means = x.mean(dim=(2, 3))
    m = means.mean(dim=-1, keepdim=True)
    v = means.var(dim=-1, keepdim=True)
    means = (means - m) / torch.sqrt(v + 1e-5)
    h = F.instance_norm(x, eps=1e-5)
    h = h + means[..., None, None] * alpha[..., None, None]
    out = gamma[..., None, None] * h + (0 if beta is None else beta[..., None, None])
    return F.elu(out) if act else out


def _norm_inputs(dtype=torch.float64, shape=(2, 4, 4, 5)):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 2 + 3).requires_grad_()
    n, c = shape[:2]
    gamma, alpha, beta = (
        torch.randn(n, c, generator=g, dtype=dtype).requires_grad_() for _ in range(3)
    )
    return x, gamma, alpha, beta


@pytest.mark.parametrize("act", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_instance_norm_plus_matches_official_form_and_gradients(act, bias):
    x, gamma, alpha, beta = _norm_inputs()
    beta = beta if bias else None
    out = instance_norm_plus(x, gamma, alpha, beta, act=act)
    assert rel_err(out, official_norm(x, gamma, alpha, beta, act)) < 1e-12

    def f(x, gamma, alpha, beta):
        return instance_norm_plus(x, gamma, alpha, beta, act=act)

    inputs = (x, gamma, alpha, beta)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_instance_norm_plus_channels_last_and_inference_paths_agree():
    x, gamma, alpha, beta = (t.detach().float() for t in _norm_inputs(shape=(4, 8, 9, 9)))
    ref = official_norm(x, gamma, alpha, beta, act=True)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = instance_norm_plus(xc, gamma, alpha, beta, act=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(out, ref) < 1e-6
    x.requires_grad_()
    assert rel_err(instance_norm_plus(x, gamma, alpha, beta, act=True), ref) < 1e-6


def test_unconditional_parameters_broadcast_over_the_batch():
    x, _, _, _ = _norm_inputs()
    gamma, alpha, beta = (torch.randn(4, dtype=torch.float64, requires_grad=True) for _ in "abc")
    assert torch.autograd.gradcheck(
        lambda x, g, a, b: instance_norm_plus(x, g, a, b, act=True), (x, gamma, alpha, beta)
    )
    ref = official_norm(x, gamma.expand(2, 4), alpha.expand(2, 4), beta.expand(2, 4))
    assert rel_err(instance_norm_plus(x, gamma, alpha, beta), ref) < 1e-12


def test_elu_and_pools_match_pytorch_and_differentiate_twice():
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    for fast, plain in (
        (elu, F.elu),
        (avg_pool5, lambda t: F.avg_pool2d(t, 5, 1, 2, count_include_pad=True)),
        (mean_pool2, lambda t: F.avg_pool2d(t, 2)),
        (max_pool5, lambda t: F.max_pool2d(t, 5, 1, 2)),
    ):
        assert rel_err(fast(x), plain(x)) < 1e-14
        assert torch.autograd.gradcheck(fast, (x,))
        assert torch.autograd.gradgradcheck(fast, (x,))


def test_plain_ops_switch_restores_itself():
    assert fused_enabled()
    with plain_ops():
        assert not fused_enabled()
    assert fused_enabled()


# ------------------------------------------------------------------------- whole networks


def _pair(cls, channels, size, **kw):
    torch.manual_seed(0)
    fast = cls(channels, size, SIGMAS, channels_last=True, **kw)
    plain = cls(channels, size, SIGMAS, channels_last=False, **kw)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _plain_forward(model, x, sigma):
    with plain_ops():
        return model(x, sigma)


@pytest.mark.parametrize(
    ("cls", "channels", "size", "ngf"),
    [(NCSN, 1, 28, 64), (NCSN, 3, 32, 128), (NCSNv2, 3, 32, 128)],
    ids=["ncsn-mnist", "ncsn-cifar10", "ncsnv2-cifar10"],
)
def test_paper_networks_match_plain_eager_fp32(cls, channels, size, ngf):
    """The paper's widths: outputs within 1e-5 relative of plain fp32 eager PyTorch."""
    fast, plain = _pair(cls, channels, size, ngf=ngf)
    x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    sigma = SIGMAS[[0, 7]]
    with torch.inference_mode():
        ref = _plain_forward(plain, x, sigma)
        out = fast(x, sigma)
    assert out.is_contiguous()
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("cls", [NCSN, NCSNv2])
def test_gradients_match_plain_eager(cls):
    fast, plain = _pair(cls, 3, 16, ngf=8)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    sigma = SIGMAS[[0, 4, 9]]
    target = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ((fast(x, sigma) - target) ** 2).sum().backward()
    ((_plain_forward(plain, x, sigma) - target) ** 2).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        assert p.grad is not None, name
        assert rel_err(p.grad, q.grad) < 1e-4, name


def test_input_gradient_with_create_graph_matches_plain():
    """Losses that differentiate the score w.r.t. the input (sliced score matching); in
    float64, where the comparison is free of float32 rounding."""
    fast, plain = (m.double() for m in _pair(NCSN, 1, 12, ngf=4))
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    v = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    grads = []
    for model, ctx in ((fast, torch.enable_grad), (plain, plain_ops)):
        with ctx():
            xi = x.clone().requires_grad_()
            (gx,) = torch.autograd.grad((model(xi, 0.1) * v).sum(), xi, create_graph=True)
            (gx**2).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for g, h in zip(*grads, strict=True):
        assert (g is None) == (h is None)  # the output biases do not reach the input gradient
        if g is not None:
            assert rel_err(g, h) < 1e-9


@pytest.mark.parametrize("cls", [NCSN, NCSNv2])
def test_compile_traces_one_graph_and_trains_like_eager(cls):
    """``training.compile``: dynamo sees the plain composition, so the network is one graph
    (NCSNv2 broke it at the sigma check) and every training step works (the traced fused
    functions made NCSN's second compiled backward pass fail), with eager's gradients."""
    from torch._dynamo.utils import counters

    fast, _ = _pair(cls, 3, 16, ngf=8)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    sigma, target = SIGMAS[[0, 4, 9]], torch.randn(3, 3, 16, 16)
    torch._dynamo.reset()
    counters.clear()
    grads = []
    compiled = torch.compile(fast, backend="eager")
    for net in (compiled, compiled, fast):  # two compiled steps, then eager
        fast.zero_grad()
        ((net(x, sigma) - target) ** 2).sum().backward()
        grads.append([p.grad for p in fast.parameters()])
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"], dict(counters["graph_break"])
    for step in grads[:2]:
        for g, h in zip(step, grads[2], strict=True):
            assert rel_err(g, h) < 1e-4


@pytest.mark.parametrize("cls", [NCSN, NCSNv2])
def test_activation_checkpointing_gives_the_same_gradients(cls):
    """``training.activation_checkpointing`` recomputes every residual block and every part
    of the refine blocks (the models' ``checkpoint_blocks`` hook); gradients are unchanged."""
    fast, _ = _pair(cls, 1, 12, ngf=4)
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(6))
    grads = []
    for on in (False, True):
        if on:  # 8 residual blocks; refine blocks: 1 + 2 + 2 + 2 RCUs, 3 fusions, 4 + 4 more
            assert apply_activation_checkpointing(fast) == 8 + 7 + 3 + 4 + 4
        fast.zero_grad()
        fast(x, 0.5).square().sum().backward()
        grads.append([p.grad.clone() for p in fast.parameters()])
    for g, h in zip(*grads, strict=True):
        assert torch.equal(g, h)


def test_bf16_autocast_normalises_in_float32():
    """Under CPU autocast the convolutions run in bfloat16; the instance norms compute their
    statistics in float32, so the output stays within bfloat16 rounding of float32."""
    fast, _ = _pair(NCSN, 3, 16, ngf=8)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref = fast(x, 0.1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fast(x, 0.1)
    assert out.dtype == torch.bfloat16
    assert rel_err(out.float(), ref) < 5e-2
    xb = torch.randn(2, 4, 5, 5).bfloat16()
    gamma = torch.ones(2, 4)
    y = instance_norm_plus(xb, gamma, gamma, None)
    assert y.dtype == torch.bfloat16
    assert rel_err(y.float(), instance_norm_plus(xb.float(), gamma, gamma, None)) < 1e-2
