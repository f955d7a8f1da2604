"""Will it fit? Free memory and the memory a model needs, known before anything is allocated.

:func:`check_model_fits` builds the network with its weights on PyTorch's ``meta`` device
(shapes only, no storage), counts their bytes and, for training, measures the activations of
one example with a forward pass on ``meta`` tensors; a config whose model cannot fit in memory
is refused in one line instead of failing in the allocator (or swapping the machine to a
halt, or being killed by the kernel).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ncsn.errors import ConfigError

__all__ = [
    "available_bytes",
    "build_on_meta",
    "parameter_bytes",
    "activation_bytes",
    "check_model_fits",
    "format_bytes",
]

# Training holds weights, gradients, Adam's two moments and the EMA copy: 5 copies.
TRAIN_COPIES = 5
# More weight tensors than this is no network anyone meant (the bundled models have 86-395).
MAX_TENSORS = 5_000


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory that can still be allocated on ``device`` (None when unknown).

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else free physical pages; CUDA:
    ``torch.cuda.mem_get_info``.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except (RuntimeError, AssertionError):
            return None
    if dev.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in a readable unit (``1.5 GB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.3g} PB"


class _TooManyTensors(Exception):
    pass


class _MetaFactories(TorchFunctionMode):
    """Puts the tensors that layers allocate for their weights on ``meta`` (no storage).

    Only factory calls without an explicit device are redirected, so data a model computes
    from its arguments (noise levels, frequencies) stays real; in-place initialisations of meta
    tensors are skipped (some would run through slow Python reference code). Allocations are
    counted: a model of more than :data:`MAX_TENSORS` weight tensors is stopped while built.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        inplace = name.endswith("_") and not name.endswith("__")
        if inplace and isinstance(target, torch.Tensor) and target.is_meta:
            return target  # in-place initialisation of a meta weight: nothing to compute
        if func in _FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
            self.count += 1
            if self.count > MAX_TENSORS:
                raise _TooManyTensors
        return func(*args, **kwargs)


_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn}


def build_on_meta(build: Callable[[], nn.Module], what: str) -> nn.Module | None:
    """Build a model without storage (every tensor on ``meta``); None when it cannot be."""
    mode = _MetaFactories()
    try:
        with mode:
            model = build()
        return model.to("meta")
    except _TooManyTensors:
        raise ConfigError(
            f"{what}: the model would hold more than {MAX_TENSORS:,} weight tensors; use fewer "
            "blocks, levels or layers"
        ) from None
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta is not checked
        return None


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (works on ``meta`` models)."""
    tensors = [*model.parameters(), *model.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def activation_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Bytes of the outputs of every leaf module in a forward pass of one example.

    Args:
        model: A model on ``meta`` (see :func:`build_on_meta`).
        input_shape: One example's shape (C, H, W).

    Returns:
        The byte count (0 when the model cannot run on ``meta`` tensors).
    """
    total = [0]

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device="meta"), torch.ones(1, device="meta"))
    except Exception:  # noqa: BLE001 - not runnable on meta: no activation estimate
        total[0] = 0
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


def check_model_fits(
    build: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    *,
    what: str,
    batch_size: int = 0,
    device: str | torch.device = "cpu",
) -> None:
    """Refuse a model whose memory needs exceed the free memory, before allocating it.

    The need is a lower bound, so a model that fits is never refused: the weights alone when
    only building it; for training (``batch_size`` > 0) the :data:`TRAIN_COPIES` copies of
    the weights plus half the leaf-module outputs of ``batch_size`` examples (autograd keeps
    more than that).

    Args:
        build: Builds the model.
        input_shape: One example's shape (C, H, W).
        what: How the model is named in the message (e.g. ``model.options``).
        batch_size: Examples per training step (0: only building the model).
        device: Where it will live.

    Raises:
        ConfigError: When even the lower bound exceeds the free memory, or the model would
            hold an absurd number of weight tensors.
    """
    model = build_on_meta(build, what)
    if model is None:
        return
    params = parameter_bytes(model)
    free = available_bytes(device)
    need = TRAIN_COPIES * params if batch_size else params
    if batch_size and (free is None or need <= free):  # the weights alone may settle it
        need += activation_bytes(model, input_shape) * batch_size // 2
    if free is not None and need > free:
        doing = f"training at batch {batch_size}" if batch_size else "building it"
        raise ConfigError(
            f"{what}: the weights take {format_bytes(params)}; {doing} needs at least "
            f"{format_bytes(need)} but {format_bytes(free)} is free on {torch.device(device)}; "
            "use smaller model.options (e.g. ch/ngf), a smaller image_size or batch_size"
        )
