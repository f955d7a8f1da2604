"""Execution options of a training step that change speed or memory, not the maths.

- :func:`autocast`: bfloat16 autocast for the network (``training.precision: bf16``);
- :func:`apply_activation_checkpointing`: recompute each block in the backward pass
  (``training.activation_checkpointing``);
- :func:`compile_or_eager`: ``torch.compile`` with a trial step, falling back to eager with one
  warning line (``training.compile``); :func:`compiling` tells code that must step aside
  (hand-written autograd functions, data-dependent checks) that it is being traced;
- channels-last memory format (``training.channels_last``) is applied by the training setup
  with ``model.to(memory_format=torch.channels_last)``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ncsn.errors import ConfigError

__all__ = [
    "autocast",
    "check_precision",
    "checkpoint_blocks",
    "apply_activation_checkpointing",
    "compile_or_eager",
    "compiling",
]

_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 on a CUDA device without bfloat16 support (one line, naming the fix)."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"training.precision=bf16: {torch.cuda.get_device_name(device)} has no bfloat16 "
            "support; use training.precision=fp32"
        )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a forward pass: bfloat16 for ``bf16``, nothing for ``fp32``."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def checkpoint_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules whose activations :func:`apply_activation_checkpointing` recomputes.

    A model may list them itself with a ``checkpoint_blocks()`` method. Otherwise the blocks
    are the modules held in ``nn.ModuleList``/``nn.ModuleDict`` containers at any depth
    (outermost first, containers opened, parameter-free modules skipped): the residual and
    refine blocks of the RefineNets, the residual blocks and resampling convolutions of the
    U-Net. A model without such containers (the MLP) checkpoints its top-level children.

    Args:
        model: The score network.

    Returns:
        The block modules.
    """
    hook = getattr(model, "checkpoint_blocks", None)
    if callable(hook):
        return list(hook())
    found: list[nn.Module] = []

    def visit(module: nn.Module, in_container: bool) -> None:
        for child in module.children():
            if isinstance(child, _CONTAINERS):
                visit(child, True)
            elif in_container:
                if any(True for _ in child.parameters()):
                    found.append(child)
            else:
                visit(child, False)

    visit(model, False)
    if not found:
        found = [c for c in model.children() if any(True for _ in c.parameters())]
    return found


def _checkpointed(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # evaluation and sampling: nothing to save
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Make every block of ``model`` recompute its activations in the backward pass.

    Each block's ``forward`` is replaced (on the instance) by one running the original
    under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``, which stores only the
    block's inputs; gradients are unchanged. Weights and ``state_dict`` keys are untouched.
    Deep-copy the model before calling this if you need an unwrapped copy.

    Args:
        model: The score network (modified in place).

    Returns:
        The number of blocks wrapped.
    """
    n = 0
    for block in checkpoint_blocks(model):
        if getattr(block, "_ncsn_checkpointed", False):
            continue
        block.forward = _checkpointed(block.forward)
        block._ncsn_checkpointed = True
        n += 1
    return n


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing the caller (always False on PyTorch < 2.3, which
    lacks ``torch.compiler.is_compiling``)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling is not None and is_compiling())


def compile_or_eager(
    net: nn.Module,
    trial: Callable[[nn.Module], None],
    warn: Callable[[str], None],
) -> tuple[nn.Module, bool]:
    """``torch.compile(net)``, tried once; ``net`` itself where compiling fails.

    Compilation happens lazily at the first call, so ``trial`` runs one forward and backward
    pass with the compiled module; any exception there (no C++ compiler, an unsupported
    operation, an old PyTorch) gives one warning line through ``warn`` and the eager module.

    Args:
        net: The module to compile.
        trial: Runs a forward and backward pass with the module it is given.
        warn: Receives the warning line.

    Returns:
        ``(module, compiled)``.
    """
    try:
        compiled = torch.compile(net)
        trial(compiled)
        return compiled, True
    except Exception as e:  # whatever the compiler raises, eager still works
        first = (str(e).strip().splitlines() or [""])[0][:160]
        warn(
            f"warning: training.compile: torch.compile failed here ({type(e).__name__}: "
            f"{first}); training continues eagerly"
        )
        with contextlib.suppress(Exception):
            torch._dynamo.reset()
        return net, False
