"""What several subcommands share when they run: the ``--device`` and the ``--data-root``."""

from __future__ import annotations

import dataclasses

import torch

from ncsn.config import Config
from ncsn.errors import NCSNError

__all__ = ["resolve_device", "with_data_root"]


def resolve_device(name: str) -> str:
    """Resolve ``--device``: ``auto`` or a torch device that works here, else one line."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    fix = "use --device cpu (or auto)"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise NCSNError(f"--device {name!r} is not a device name; {fix}") from None
    if dev.type == "meta":
        raise NCSNError(f"--device {name} holds no data, so nothing can be computed on it; {fix}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise NCSNError(f"--device {name}: no MPS (Apple GPU) device is available here; {fix}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NCSNError(f"--device {name}: no CUDA device is available here; {fix}")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise NCSNError(f"--device {name}: this machine has {n} CUDA device(s), cuda:0..{n - 1}")
    try:
        torch.zeros(1, device=dev).add_(1).cpu()
    except Exception as e:  # noqa: BLE001 - any failure means the device is unusable here
        why = (str(e).splitlines() or [type(e).__name__])[0].split(". ")[0][:100]
        raise NCSNError(f"--device {name} cannot be used here ({why}); {fix}") from None
    return str(dev)


def with_data_root(cfg: Config, root: str | None) -> Config:
    """``cfg`` with ``data.root`` set to ``--data-root`` when it is given."""
    if root is None:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=root))
