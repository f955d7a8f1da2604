"""A budget on what building a model may allocate, checked before each allocation.

A config read from an untrusted place (a checkpoint's metadata) can ask for a network of any
size: ``ngf: 100000`` or ``num_res_blocks: 10000000``. :func:`allocation_budget` watches the
tensor factories (``torch.empty``, ``torch.zeros``, ...) and module creation while a model
is built and stops the build, before the memory is taken, as soon as it asks for more than
the budget.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.module import register_module_module_registration_hook
from torch.overrides import TorchFunctionMode

__all__ = ["BudgetExceeded", "allocation_budget", "build_for_checkpoint"]


class BudgetExceeded(Exception):
    """A build asked for more tensors, elements or modules than its budget allows."""


# factories whose first argument(s) give the size of the tensor they allocate
_SIZED = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.rand,
    torch.randn,
    torch.full,
    torch.empty_strided,
}


def _numel_requested(func: Any, args: tuple, kwargs: dict) -> int | None:
    """Elements a sized factory call will allocate (None: not a sized factory)."""
    if func not in _SIZED:
        return None
    size = kwargs.get("size", args[0] if args else ())
    if isinstance(size, int) and func is not torch.full:
        size = [a for a in args if isinstance(a, int)]  # torch.empty(3, 4)
    if isinstance(size, int):
        size = [size]
    try:
        return math.prod(int(s) for s in size)
    except (TypeError, ValueError):
        return None


class _Budget(TorchFunctionMode):
    def __init__(self, max_elements: int, max_tensors: int):
        super().__init__()
        self.left_elements, self.left_tensors = max_elements, max_tensors

    def _spend(self, elements: int) -> None:
        self.left_elements -= elements
        self.left_tensors -= 1
        if self.left_elements < 0 or self.left_tensors < 0:
            raise BudgetExceeded("the model asks for more memory than its weights take")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        n = _numel_requested(func, args, kwargs)
        if n is not None:
            self._spend(n)  # before allocating
        out = func(*args, **kwargs)
        if n is None and func in (torch.tensor, torch.as_tensor, torch.linspace, torch.arange):
            self._spend(out.numel())
        return out


@contextlib.contextmanager
def allocation_budget(max_elements: int, max_tensors: int, max_modules: int) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` if the code inside allocates more than this.

    Args:
        max_elements: Total elements of all tensors made by factories.
        max_tensors: Number of tensors made by factories.
        max_modules: Number of sub-modules registered.
    """
    left = [max_modules]

    def count_module(module, name, submodule):
        left[0] -= 1
        if left[0] < 0:
            raise BudgetExceeded("the model has more layers than its weights describe")

    handle = register_module_module_registration_hook(count_module)
    try:
        with _Budget(max_elements, max_tensors):
            yield
    finally:
        handle.remove()


def build_for_checkpoint(
    build: Callable[[], torch.nn.Module], n_tensors: int, n_elements: int, path: Path | str
) -> torch.nn.Module:
    """Build the model a checkpoint's stored config describes, within what the file holds.

    Args:
        build: Builds the model (e.g. ``lambda: build_model(cfg)``).
        n_tensors: Tensors the checkpoint stores for the model (or in all).
        n_elements: Their elements.
        path: The checkpoint, for messages.

    Raises:
        CheckpointError: The config asks for a larger model than the file holds, or cannot
            build one at all.
    """
    from ncsn.errors import CheckpointError, NCSNError

    try:
        with allocation_budget(2 * n_elements + 2**20, 2 * n_tensors + 64, 4 * n_tensors + 64):
            return build()
    except BudgetExceeded as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit its own config: {e} ({n_elements} values stored); "
            "the file was damaged or edited"
        ) from None
    except NCSNError:
        raise
    except (TypeError, ValueError, RuntimeError, MemoryError) as e:
        raise CheckpointError(
            f"checkpoint {path}: its stored config cannot build a model ({e}); the file was "
            "damaged or edited"
        ) from None
