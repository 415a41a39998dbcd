"""Batch detection across processes and machines under ``torchrun``: shard the runs, merge on rank 0.

::

    torchrun --nnodes 2 --nproc-per-node 4 --node-rank 0 --rdzv-endpoint HOST:29500 tools/detect.py ... --out /shared/p

:func:`cryopoint.batch.run_batch` takes this path when ``torchrun`` set ``RANK`` and ``WORLD_SIZE``
(:func:`launched_by_torchrun`); without them it is the single-host process pool. Under torchrun:

1. Each process detects on one device: ``--devices`` entry ``LOCAL_RANK`` if given, else GPU ``LOCAL_RANK``
   when CUDA is available, else the CPU (:func:`pick_device`).
2. Every rank checks that it sees a file rank 0 writes under ``OUT/runs/`` (:meth:`Ranks.check_shared`), so a
   multi-machine job with ``--out`` on local disks stops before any work. Rank 0's list of runs left to do
   (not finished in ``OUT/runs/``, or all of them with ``overwrite``) is broadcast, so every rank shares out
   the same list even while others already write; each rank takes every ``world_size``-th run of it
   (:func:`shard`) and detects in them one at a time, writing each run's result atomically to ``OUT/runs/``.
3. Every rank then joins one collective that also gathers the run statuses (a rank with nothing to do joins
   it at once); rank 0 writes the combined outputs from the per-run files and broadcasts the summary, so
   every rank returns the same summary (and ``tools/detect.py`` the same exit code).

The process group is ``nccl`` on GPUs and ``gloo`` on CPU, with a :data:`WAIT` timeout: a rank whose share
is done may wait that long for the slowest one. If a process dies, torchrun stops the others; the runs
already written are kept and a rerun resumes from them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from rich.console import Console

from cryopoint.engine.distributed import DistInfo, broadcast_object, cleanup, gather_objects, init_distributed
from cryopoint.errors import ConfigError
from cryopoint.io import atomic_write_text

__all__ = ["WAIT", "Ranks", "launched_by_torchrun", "pick_device", "shard"]

WAIT = timedelta(days=7)
T = TypeVar("T")


def launched_by_torchrun(env: Mapping[str, str] = os.environ) -> bool:
    """True when ``RANK`` and ``WORLD_SIZE`` are set (torchrun sets both); one without the other is an error."""
    have = [key in env for key in ("RANK", "WORLD_SIZE")]
    if any(have) and not all(have):
        raise ConfigError(
            "Only one of RANK and WORLD_SIZE is set: launch with torchrun (which sets both), or unset it "
            "to run on this machine alone."
        )
    return all(have)


def shard(runs: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s share of ``runs``: every ``world``-th item from ``rank`` (shares differ by at most one).

    Every item lands on exactly one rank; a rank beyond the number of runs gets an empty share.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return list(runs[rank::world])


def pick_device(devices: Sequence[str], local_rank: int, local_world: int, cuda_count: int) -> str:
    """The device of the process with ``local_rank`` on its machine.

    Args:
        devices: ``--devices``: one per process on the machine, or one for all of them; empty for the default.
        local_rank: This process's rank on its machine (torchrun's ``LOCAL_RANK``).
        local_world: Processes on this machine (``--nproc-per-node``).
        cuda_count: Visible CUDA devices.

    Returns:
        ``devices[local_rank]`` (or the single device given), else ``cuda:<local_rank>``, else ``cpu``.
    """
    if devices:
        if len(devices) == 1:
            return devices[0]
        if len(devices) != local_world:
            raise ConfigError(
                f"--devices lists {len(devices)} devices but torchrun starts {local_world} processes per machine: "
                "give one device per process, one device for all of them, or none (GPU <local rank>, else CPU)."
            )
        return devices[local_rank]
    if cuda_count == 0:
        return "cpu"
    if local_rank >= cuda_count:
        raise ConfigError(
            f"torchrun starts {local_world} processes on this machine but it has {cuda_count} GPU(s): "
            f"use --nproc-per-node {cuda_count} (one process per GPU)."
        )
    return f"cuda:{local_rank}"


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun batch, and the steps that need the other ranks."""

    info: DistInfo
    device: str
    owns_group: bool = False

    @classmethod
    def from_env(cls, devices: Sequence[str] = ()) -> Ranks | None:
        """Join torchrun's process group, or None when not launched by torchrun (RANK/WORLD_SIZE unset)."""
        if not launched_by_torchrun():
            return None
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        device = pick_device(devices, local_rank, local_world, torch.cuda.device_count())
        had_group = dist.is_available() and dist.is_initialized()
        info = init_distributed(device, timeout=WAIT)
        return cls(info=info, device=device, owns_group=info.distributed and not had_group)

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def devices(self) -> tuple[str, ...]:
        return (self.device,)

    def check_shared(self, out_dir: Path) -> None:
        """Refuse, on every rank alike, when some rank does not see a file that rank 0 writes under ``out_dir``."""
        if not self.info.distributed:
            return
        probe = out_dir / "runs" / f".shared-{uuid.uuid4().hex}" if self.is_main else None
        if probe is not None:
            atomic_write_text(probe, "rank 0 writes; every rank must see this file\n")
        probe = broadcast_object(probe, self.info)
        seen = gather_objects((socket.gethostname(), probe.is_file()), self.info)
        if self.is_main:
            probe.unlink()
        blind = sorted({host for host, ok in seen if not ok})
        if blind:
            raise ConfigError(
                f"--out {out_dir} is not shared storage: {', '.join(blind)} cannot see the files rank 0 writes "
                "there. Put --out (and the inputs) on a file system every machine mounts at the same path."
            )

    def run(
        self,
        todo: dict[str, Any],
        out_dir: Path,
        process: Callable[[str, Any, Callable[[int, int], None]], dict],
        on_event: Callable[..., None],
        console: Console,
    ) -> dict[str, dict]:
        """Detect in this rank's share of rank 0's ``todo``, then wait for every rank.

        Args:
            todo: ``{run: source}`` left to do, as this rank sees it (rank 0's is used by all).
            out_dir: The output folder, which every rank must see (checked first).
            process: ``process(run, source, step) -> status``; writes the run's results.
            on_event: ``run_batch``'s progress callback (``start``, ``step``, ``done``).
            console: Where each finished run is logged with its rank.

        Returns:
            The status of every run that any rank processed, ``{run: status}``.
        """
        rank, world = self.info.rank, self.info.world_size
        self.check_shared(out_dir)
        items = broadcast_object(list(todo.items()), self.info)
        mine = shard(items, rank, world)
        done: dict[str, dict] = {}
        for i, (run, source) in enumerate(mine, 1):
            on_event("start", 0, run, 0, 0)
            status = process(run, source, lambda d, t, run=run: on_event("step", 0, run, d, t))
            done[run] = status
            on_event("done", 0, run, status, None)
            console.print(f"rank {rank}/{world} ({self.device}) {i}/{len(mine)} {run}: {status['status']}, "
                          f"{status.get('seconds', 0.0):.1f} s")  # fmt: skip
        if not mine:
            console.print(f"rank {rank}/{world} ({self.device}): nothing left to do, waiting for the other ranks")
        merged: dict[str, dict] = {}
        for part in gather_objects(done, self.info):  # every rank waits here for the slowest one
            merged.update(part)
        return merged

    def summary(self, table: T | None) -> T:
        """Rank 0's ``table`` on every rank (rank 0 passes it once the combined outputs are written)."""
        table = broadcast_object(table, self.info)
        if self.owns_group:
            cleanup(self.info)
        return table
