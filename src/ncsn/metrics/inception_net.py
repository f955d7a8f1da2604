"""The FID Inception-v3 network (TensorFlow ``inception-2015-12-05``) and its preprocessing.

The layers are those of the TensorFlow graph used by the reference FID, KID and Inception Score
code (Heusel et al. 2017; Salimans et al. 2016), written with torchvision's layer names so that
the usual PyTorch weights file (pytorch-fid's / torch-fidelity's
``pt_inception-2015-12-05-6726825d.pth``) loads by name. It differs from torchvision's
Inception-v3 where the TensorFlow graph does: average pools ignore the zero padding, the last
block max-pools, batch norm has ``eps = 0.001``, and the classifier has 1008 outputs.

Preprocessing (:func:`fid_preprocess`) follows the TensorFlow graph: uint8 images, gray
repeated to RGB, TF1 bilinear resize to 299x299 (``align_corners=False`` *without* half-pixel
centres: output pixel ``j`` samples input coordinate ``j * in / out``), then ``(x - 128) / 128``,
which maps 0..255 to [-1, 0.9921875].
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ncsn.errors import ShapeError

__all__ = ["INPUT_SIZE", "FIDInceptionV3", "fid_preprocess", "quantize_images", "tf1_resize"]

INPUT_SIZE = 299


def quantize_images(images: torch.Tensor, rgb: bool = True) -> torch.Tensor:
    """Quantise images in [0, 1] to uint8 RGB, as the standard FID protocol does.

    Args:
        images: Float (N, C, H, W) in [0, 1] with C = 1 or 3, or uint8.
        rgb: Repeat gray images to 3 channels.

    Returns:
        uint8 tensor (N, 3, H, W) (or (N, C, H, W) when not ``rgb``) holding
        ``round(clamp(x, 0, 1) * 255)``.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(
            f"images must be (N, C, H, W) with 1 or 3 channels, got {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        q = images
    else:
        q = (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return q.expand(-1, 3, -1, -1) if rgb and q.shape[1] == 1 else q


def _tf1_axis(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of TF1 ``resize_bilinear`` along one axis."""
    src = torch.arange(n_out, device=device, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo.double()
    return lo, hi, frac


def tf1_resize(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Bilinear resize exactly as TensorFlow 1's ``tf.image.resize_bilinear`` (the FID graph).

    Args:
        x: Float (N, C, H, W).
        size: Output height and width.

    Returns:
        Float (N, C, size, size); the identity when the input already has that size.
    """
    if x.shape[-2:] == (size, size):
        return x
    y0, y1, fy = _tf1_axis(x.shape[-2], size, x.device)
    x0, x1, fx = _tf1_axis(x.shape[-1], size, x.device)
    fy, fx = fy.to(x.dtype)[:, None], fx.to(x.dtype)
    top, bottom = x[..., y0, :], x[..., y1, :]
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * fx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * fx
    return top + (bottom - top) * fy


def fid_preprocess(images: torch.Tensor) -> torch.Tensor:
    """The network input of the reference FID: uint8, RGB, 299x299, ``(x - 128) / 128``.

    Args:
        images: Float (N, C, H, W) in [0, 1] (C = 1 or 3, any size) or uint8 (N, 3, H, W).

    Returns:
        Float32 (N, 3, 299, 299) in [-1, 0.9921875].
    """
    x = tf1_resize(quantize_images(images).float())
    return (x - 128.0) / 128.0


class _Conv(nn.Module):
    """Convolution (no bias), batch norm (eps 0.001, inference statistics), ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold the (inference) batch norm into the convolution: ``conv' = s * conv + b``."""
        if isinstance(self.bn, nn.Identity):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        self.conv.weight.mul_(scale[:, None, None, None])
        self.conv.bias = nn.Parameter(self.bn.bias - self.bn.running_mean * scale)
        self.bn = nn.Identity()


def inference_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference only: batch norms folded, channels-last weights.

    The same function within float rounding (features within 1e-5 relative, tested) and 1.29x
    faster on a CPU at one thread (``benchmarks/inception_throughput.py`` times both paths).
    Feed it channels-last input.
    """
    fast = copy.deepcopy(net).eval()
    for module in fast.modules():
        if isinstance(module, _Conv):
            module.fold_batch_norm()
    return fast.to(memory_format=torch.channels_last)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3 'SAME' average pool: the zero padding is not counted."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """Mixed_5b/c/d: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 64, 1)
        self.branch5x5_1 = _Conv(c_in, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class _BlockB(nn.Module):
    """Mixed_6a: grid reduction 35 -> 17."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockC(nn.Module):
    """Mixed_6b..e: factorised 7x7 branches."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 192, 1)
        self.branch7x7_1 = _Conv(c_in, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(c_in, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _BlockD(nn.Module):
    """Mixed_7a: grid reduction 17 -> 8."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(c_in, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(c_in, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """Mixed_7b (average-pooled branch) and Mixed_7c (max-pooled branch, as in the TF graph)."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(c_in, 320, 1)
        self.branch3x3_1 = _Conv(c_in, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(c_in, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        parts = [
            self.branch1x1(x),
            self.branch3x3_2a(a),
            self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b),
            self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ]
        return torch.cat(parts, 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 up to pool3 (2048-d), plus the 1008-way classifier if wanted.

    Args:
        logits: Build the classifier layer ``fc`` (needed for the Inception Score only).

    The input is the output of :func:`fid_preprocess`.
    """

    feature_dim = 2048
    num_logits = 1008

    def __init__(self, logits: bool = True) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, self.num_logits) if logits else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pool3 features (N, 2048) and the logits without the final bias (N, 1008) or None.

        The bias is left out as in the reference Inception Score code, which reads the
        ``MatMul`` before the bias add; softmax over the 1008 outputs gives ``p(y|x)``.
        """
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        features = x.mean(dim=(2, 3))
        logits = None if self.fc is None else features @ self.fc.weight.T
        return features, logits
