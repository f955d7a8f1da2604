"""Tests for the building blocks in ``ncsn.models.layers``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncsn.models.layers import CondInstanceNorm2dPlus, InstanceNorm2dPlus, ResidualBlock
from ncsn.models.refine_blocks import CRPBlock, MSFBlock, RCUBlock, RefineBlock
from ncsn.models.sigma import as_sigma_batch, validate_sigmas


def _reference_in_plus(x, gamma, alpha, beta, eps=1e-5):
    """Instance norm++ as the official code computes it (not the paper's Appendix A text):
    alpha inside the gamma product, the channel variance of the means unbiased."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    s = torch.sqrt(x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps)
    m = mu.mean(dim=1, keepdim=True)
    v = torch.sqrt(mu.var(dim=1, keepdim=True, unbiased=True) + eps)
    return gamma * ((x - mu) / s + alpha * (mu - m) / v) + beta


def test_cond_instance_norm_plus_matches_formula():
    torch.manual_seed(0)
    norm = CondInstanceNorm2dPlus(4, num_classes=3)
    with torch.no_grad():
        norm.embed.weight.normal_()
    x = torch.randn(2, 4, 5, 6) * 3 + 1
    y = torch.tensor([2, 0])
    params = norm.embed.weight[y][:, :, None, None]
    gamma, alpha, beta = params[:, :4], params[:, 4:8], params[:, 8:]
    expected = _reference_in_plus(x, gamma, alpha, beta)
    torch.testing.assert_close(norm(x, y), expected, rtol=1e-4, atol=1e-4)


def test_cond_instance_norm_plus_init_and_size():
    torch.manual_seed(0)
    norm = CondInstanceNorm2dPlus(64, num_classes=10)
    w = norm.embed.weight
    assert w.shape == (10, 192)
    assert abs(w[:, :128].mean().item() - 1.0) < 0.01
    assert 0.01 < w[:, :128].std().item() < 0.03
    assert torch.all(w[:, 128:] == 0)
    assert CondInstanceNorm2dPlus(8, 10, bias=False).embed.weight.shape == (10, 16)


def test_instance_norm_plus_matches_formula():
    torch.manual_seed(0)
    norm = InstanceNorm2dPlus(3)
    with torch.no_grad():
        norm.beta.normal_()
    x = torch.randn(2, 3, 4, 4)
    expected = _reference_in_plus(
        x, norm.gamma[None, :, None, None], norm.alpha[None, :, None, None],
        norm.beta[None, :, None, None],
    )  # fmt: skip
    torch.testing.assert_close(norm(x), expected, rtol=1e-4, atol=1e-4)
    assert InstanceNorm2dPlus(3, bias=False).beta is None


def _norm(c):
    return InstanceNorm2dPlus(c)


def _zero_(*convs: torch.nn.Conv2d) -> None:
    with torch.no_grad():
        for conv in convs:
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()


@pytest.mark.parametrize(
    ("cin", "cout", "resample", "dilation", "out_size", "has_shortcut"),
    [
        (8, 8, None, 1, 16, False),
        (8, 16, None, 1, 16, True),
        (8, 16, "down", 1, 8, True),
        (16, 16, "down", 2, 16, True),
        (16, 16, None, 4, 16, False),
    ],
)
def test_residual_block_is_shortcut_plus_branch(
    cin, cout, resample, dilation, out_size, has_shortcut
):
    """out = shortcut(x) + branch(x): with the branch's last conv zeroed only the shortcut
    remains (the identity, a 1x1 conv + 2x2 mean pool, or a dilated 3x3 conv)."""
    torch.manual_seed(0)
    block = ResidualBlock(cin, cout, _norm, resample, dilation)
    x = torch.randn(2, cin, 16, 16)
    out = block(x)
    assert out.shape == (2, cout, out_size, out_size)
    assert (block.shortcut is not None) == has_shortcut
    conv2 = block.conv2.conv if resample == "down" and dilation == 1 else block.conv2
    _zero_(conv2)
    with torch.no_grad():
        skip = block(x)
        if not has_shortcut:
            expected = x
        elif resample == "down" and dilation == 1:
            expected = F.avg_pool2d(block.shortcut.conv(x), 2)
        else:
            expected = block.shortcut(x)
    torch.testing.assert_close(skip, expected)
    assert (out - skip).abs().mean() > 0.01  # the branch contributes before zeroing


@pytest.mark.parametrize("norm", [_norm, None])
def test_refinenet_blocks_are_residual_around_their_convs(norm):
    """With every conv zeroed, an RCU is the identity, a CRP block is ELU and a start/end
    RefineBlock (RCUs -> CRP -> RCUs) is ELU; before zeroing the convs contribute."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 8, 8)
    rcu, crp = RCUBlock(8, 2, 2, norm), CRPBlock(8, 2, norm, "avg")
    refine = RefineBlock([8], 8, norm, start=True, end=True)
    with torch.no_grad():
        assert (rcu(x) - x).abs().mean() > 0.01 and (crp(x) - F.elu(x)).abs().mean() > 0.01
        assert (refine([x]) - F.elu(x)).abs().mean() > 0.01
        _zero_(*rcu.convs, *crp.convs, *(m for m in refine.modules() if isinstance(m, nn.Conv2d)))
        torch.testing.assert_close(rcu(x), x)
        torch.testing.assert_close(crp(x), F.elu(x))
        torch.testing.assert_close(refine([x]), F.elu(x))
    fine = torch.randn(2, 4, 16, 16)
    assert MSFBlock([4, 8], 6, norm)([fine, x], None, (16, 16)).shape == (2, 6, 16, 16)
    assert RefineBlock([4, 8], 6, norm)([fine, x]).shape == (2, 6, 16, 16)


def test_refine_blocks_without_norm_have_no_norm_parameters():
    block = RefineBlock([4, 8], 6, None, pool="max")
    assert not [n for n, _ in block.named_parameters() if "norm" in n]
    assert isinstance(block.crp.pool, torch.nn.MaxPool2d)


def _identity_conv(conv):
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = torch.eye(conv.weight.shape[0])


def test_crp_average_pool_counts_the_zero_padding():
    """NCSN's CRP averages over 25 cells at the border too (the padding counts as zeros)."""
    crp = CRPBlock(1, 1, None, "avg")
    _identity_conv(crp.convs[0])
    x = torch.ones(1, 1, 6, 6)  # ELU(1) = 1
    out = crp(x) - x  # the pooled path
    assert out[0, 0, 0, 0].item() == pytest.approx(9 / 25)  # corner: 3x3 of the 5x5 inside
    assert out[0, 0, 2, 2].item() == pytest.approx(1.0)
    crp_max = CRPBlock(1, 1, None, "max")
    _identity_conv(crp_max.convs[0])
    assert (crp_max(x) - x)[0, 0, 0, 0].item() == pytest.approx(1.0)


def test_msf_resizes_with_aligned_corners():
    msf = MSFBlock([1], 1, None)
    _identity_conv(msf.convs[0])
    with torch.no_grad():
        msf.convs[0].bias.zero_()
    coarse = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    out = msf([coarse], None, (3, 3))
    # align_corners=True keeps the corner values and puts exact midpoints between them
    assert out[0, 0, 0].tolist() == [0.0, 0.5, 1.0]
    assert out[0, 0, 2].tolist() == [2.0, 2.5, 3.0]


def test_as_sigma_batch_and_validate():
    x = torch.zeros(3, 2)
    assert as_sigma_batch(0.5, x).shape == (3,)
    assert as_sigma_batch(torch.ones(3, 1, 1, 1), x).shape == (3,)
    assert validate_sigmas([2.0, 1.0]).dtype == torch.float32
    assert validate_sigmas([], allow_empty=True).numel() == 0
