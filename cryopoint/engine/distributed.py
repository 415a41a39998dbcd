"""Multi-process (DDP) helpers: set-up from ``torchrun``'s environment, rank-aware sharding and barriers.

``torchrun --nproc-per-node N tools/train.py CFG`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a plain
``python tools/train.py CFG`` runs as a single process (rank 0 of 1) with no process group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "init_distributed",
    "shard_indices",
    "barrier",
    "broadcast_object",
    "gather_objects",
    "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank (0 logs, validates and writes checkpoints).
        world_size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        device: The torch device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init_distributed(device: str = "auto", timeout: timedelta | None = None) -> DistInfo:
    """Join the process group when launched by ``torchrun``; otherwise describe a single process.

    Backend: ``nccl`` on CUDA, ``gloo`` on CPU.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or any torch device string.
        timeout: How long a collective (e.g. a barrier) may wait for the slowest rank (torch's default if None).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=timeout)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shard_indices(indices: list[int], info: DistInfo) -> list[int]:
    """This rank's share of an epoch's sample order: every ``world_size``-th item from ``rank``.

    The list is first trimmed to a multiple of ``world_size`` so that every rank runs the same number of
    steps (DDP would hang otherwise).
    """
    usable = len(indices) - len(indices) % info.world_size
    return indices[info.rank : usable : info.world_size]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (identity in a single process)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
    if not info.distributed:
        return [obj]
    box = [None] * info.world_size
    dist.all_gather_object(box, obj)
    return box


def cleanup(info: DistInfo) -> None:
    """Leave the process group (if this process joined one)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
