"""A batch worker that dies the way a real one can (killed by the OOM killer, a CUDA fault): no exception,
no message, the process is simply gone while a run is in flight.

It lives in its own module so that a ``spawn`` worker process can import it by name."""

from __future__ import annotations

import os

from cryopoint import batch

CRASH_RUN = "TS_crash"
CRASH_EXIT_CODE = 137  # what a SIGKILLed process reports to a shell


class _DieOnCrashRun:
    """Wraps the task queue: handing out :data:`CRASH_RUN` ends the process at once."""

    def __init__(self, tasks):
        self.tasks = tasks

    def get(self):
        task = self.tasks.get()
        if task is not None and task[0] == CRASH_RUN:
            os._exit(CRASH_EXIT_CODE)
        return task


def crashing_worker(rank, device, opts, tasks, results, made):
    """``cryopoint.batch._worker``, except that whichever worker takes :data:`CRASH_RUN` dies."""
    batch._worker(rank, device, opts, _DieOnCrashRun(tasks), results, made)


class _DieHoldingTheLock:
    """Wraps the task queue: the first ``get`` takes the queue's reader lock and the process dies holding it
    (what a worker killed inside ``Queue.get`` leaves behind)."""

    def __init__(self, tasks):
        self.tasks = tasks

    def get(self):
        self.tasks._rlock.acquire()
        os._exit(CRASH_EXIT_CODE)


def lock_holding_worker(rank, device, opts, tasks, results, made):
    """``cryopoint.batch._worker``, except that worker 0 dies inside its first ``get``, holding its task
    queue's lock: had the queue been shared, every other worker would block on that lock for good."""
    batch._worker(rank, device, opts, _DieHoldingTheLock(tasks) if rank == 0 else tasks, results, made)
