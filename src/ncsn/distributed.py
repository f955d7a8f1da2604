"""Several training processes (``torchrun``): the process group, ranks and small collectives.

``ncsn train`` started by ``torchrun`` finds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address in its environment and joins a process group: gloo for CPU tensors, NCCL
for CUDA ones. Without those variables (or with ``WORLD_SIZE=1``) everything here is a no-op,
so one code path serves one process and many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "init_distributed", "env_rank"]

# rank 0 writes checkpoints and sample grids while the others wait; a sample grid of the
# paper's CIFAR-10 network on a CPU takes well over the default 30 minutes
TIMEOUT = timedelta(hours=4)


def env_rank() -> int:
    """This process's rank as ``torchrun`` set it (0 without ``torchrun``)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class Dist:
    """Where this process stands among the training processes.

    Attributes:
        rank: Global rank (0 logs, samples and writes checkpoints).
        world_size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        device: The device this process computes on.
        owns_group: Whether :func:`init_distributed` created the process group (and
            :meth:`close` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes."""
        return self.rank == 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``t`` over all processes (``t`` itself with one)."""
        return self._reduce(t, dist.ReduceOp.SUM) if self.enabled else t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum of ``t`` over all processes (``t`` itself with one)."""
        return self._reduce(t, dist.ReduceOp.MAX) if self.enabled else t

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        c = t.to(self._comm_device())
        dist.all_reduce(c, op=op)
        return c.to(t.device)

    def barrier(self) -> None:
        """Wait until every process gets here (an all-reduce, so it works on gloo and NCCL)."""
        if self.enabled:
            dist.all_reduce(torch.zeros(1, device=self._comm_device()))

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (pickled; meant for small objects and states)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def close(self) -> None:
        """Leave the process group if this module created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(device: torch.device) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    A process group the caller initialised already is used as it is. With CUDA, each process
    takes the GPU ``cuda:LOCAL_RANK`` unless ``device`` names an index.

    Args:
        device: The device asked for (``cpu``, ``cuda`` or ``cuda:N``).

    Returns:
        The :class:`Dist` of this process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    have_group = dist.is_available() and dist.is_initialized()
    if world <= 1 and not have_group:
        return Dist(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not have_group:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
        owns = True
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)
