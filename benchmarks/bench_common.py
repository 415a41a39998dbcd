"""Helpers shared by the benchmark scripts: peak memory of a block, and a one-line machine description.

``benchmarks`` is a package: run each script from the repository root as ``python -m benchmarks.NAME``,
and import these helpers as ``from benchmarks.bench_common import ...`` (no ``sys.path`` changes anywhere).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
import time
from pathlib import Path

import torch

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if platform.system() == "Linux" else None


class PeakRSS:
    """Peak resident memory (MiB, ``.mib``) of this process above its level at entry, sampled in a thread.

    On entry, memory freed earlier is handed back to the OS (``malloc_trim``) so that the resident size can
    rise again; with CUDA, ``.gpu_mib`` is the peak CUDA allocation during the block (else 0). Linux only
    (reads ``/proc/self/statm``).

    Args:
        interval: Seconds between samples; a block shorter than one sample is still measured at exit.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval

    def __enter__(self) -> PeakRSS:
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.mib = (self.peak - self.base) / 2**20
        self.gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine(device: str = "cpu") -> str:
    """``"x86_64, 2 CPU cores, torch threads 2, no GPU"`` (or the CUDA device's name)."""
    gpu = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, {gpu}"


def peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM, reset at exec unlike ``ru_maxrss``), GiB; NaN off Linux."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def timed_detect(volume, detector, voxel_size: float, device: str, **kwargs) -> dict:
    """``cryopoint.detect`` on ``volume`` with wall time, window count and (CUDA) peak GPU memory.

    On CUDA a small warm-up detection runs first and the peak-memory counter is reset after it. Returns
    ``{"picks", "seconds", "windows", "peak_gpu_gb"}`` (``peak_gpu_gb`` None off CUDA).
    """
    import numpy as np

    from cryopoint.api import detect

    cuda = device.startswith("cuda")
    if cuda:
        detect(np.asarray(volume[:64, :256, :256]), detector, voxel_size=voxel_size, device=device)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    windows: list[int] = []
    start = time.perf_counter()
    picks = detect(volume, detector, voxel_size=voxel_size, device=device,
                   progress=lambda done, total: windows.append(total), **kwargs)  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    return {
        "picks": picks,
        "seconds": time.perf_counter() - start,
        "windows": windows[-1] if windows else 0,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def run_in_child(target, *args):
    """Run ``target(*args, queue)`` in a spawned process (its own peak memory) and return what it put."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    result = out.get()
    proc.join()
    return result


def add_variant_option(parser, what: str) -> None:
    """``--variant NAME OVERRIDE...`` (repeatable): a recipe variant, a name then config overrides."""
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "OVERRIDE"),
        help=f"a recipe variant: a name, then config overrides (e.g. --variant 'hard negatives' "
        f"data.hard_negative_fraction=0.15); {what} (repeatable)",
    )


def slug(name: str) -> str:
    """A name as a folder or file stem: lower case, runs of anything but letters and digits as one ``-``."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_variants(parser, given: list[list[str]], reserved: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """``{name: overrides}`` from ``--variant`` values; a parser error for a reserved name or no KEY=VALUE."""
    variants = {}
    for name, *overrides in given:
        if name in reserved or not overrides or not all("=" in o for o in overrides):
            parser.error(f"--variant {name!r} needs a name (not {', '.join(reserved) or '-'}) and KEY=VALUE overrides.")
        variants[name] = overrides
    return variants


def per_run_counts(truth, picks, runs: list[str]):
    """Exact-metric counts per run and class: an array ``(len(runs), 3, n_classes)`` of true positives,
    predictions and true particles (classes in ``PARTICLE_NAMES`` order), from ``cryopoint.metric.score``
    on each run alone. ``picks`` are thresholded already; a run without picks counts no predictions."""
    import numpy as np

    from cryopoint.metric import score

    out = []
    for run in runs:
        table = score(truth[truth.experiment == run], picks[picks.experiment == run]).table
        out.append(table[["tp", "n_pred", "n_true"]].to_numpy(dtype=np.float64).T)
    return np.stack(out) if out else np.zeros((0, 3, 0))


def bootstrap_fbeta_gap(
    a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.9, beta: float = 4.0, weights=None
) -> dict:
    """Per-class F-beta of method ``a`` minus method ``b`` on the same runs, with a paired bootstrap interval.

    ``a`` and ``b`` are :func:`per_run_counts` arrays over the same runs. Each resample draws runs with
    replacement (the same draw for both methods and all classes) and pools its counts as the metric pools;
    the interval is the central ``level`` of the resampled gaps. Runs, not particles, are resampled: particles
    of one tomogram share its imaging, so they are not independent.

    ``weights`` (one per class, e.g. the challenge's): the same for the weighted score (scalars).

    Returns:
        ``{"a", "b", "gap", "lo", "hi"}``, each an array over classes (``a``/``b``/``gap`` on all runs).
    """
    import numpy as np

    from cryopoint.metric import fbeta_from_counts

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[1] != 3 or len(a) == 0:
        raise ValueError(f"need two (runs, 3, classes) count arrays over the same runs; got {a.shape} and {b.shape}")

    def fbeta(counts, weights):
        tp, n_pred, n_true = (weights @ counts[:, i, :] for i in range(3))
        return fbeta_from_counts(tp, n_true, n_pred, beta)[2]

    ones = np.ones((1, len(a)))
    fa, fb = fbeta(a, ones)[0], fbeta(b, ones)[0]
    draws = np.random.default_rng(seed).multinomial(len(a), np.full(len(a), 1.0 / len(a)), size=n_boot)
    gaps = fbeta(a, draws) - fbeta(b, draws)
    if weights is not None:  # the weighted score instead of per-class F-beta
        w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        fa, fb, gaps = fa @ w, fb @ w, gaps @ w
    lo, hi = np.quantile(gaps, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"a": fa, "b": fb, "gap": fa - fb, "lo": lo, "hi": hi}


def own_picks(detector, peaks, geometry: dict):
    """The picks ``detector`` keeps by default, as ``cryopoint.detect`` would keep them: per run, its
    thresholds for that tomogram (``Detector.thresholds_for``: raised per tomogram where it adapts).

    ``peaks``: every peak (``experiment`` = run); ``geometry``: ``{run: (shape, voxel_size)}`` of each tomogram.
    """
    import pandas as pd

    from cryopoint.post.thresholds import apply_thresholds

    kept = [
        apply_thresholds(group, detector.thresholds_for(group, *geometry[run]))
        for run, group in peaks.groupby("experiment", sort=False)
    ]
    return pd.concat(kept, ignore_index=True) if kept else peaks.iloc[:0]


def score_cells(picks, truth) -> dict:
    """Weighted F-beta of thresholded ``picks`` (``score``) and, per class, F-beta (``NAME``) and recall
    (``NAME recall``), from the exact metric."""
    from cryopoint.metric import score
    from cryopoint.particles import PARTICLE_NAMES

    res = score(truth, picks)
    out = {"score": float(res.score)}
    for n in PARTICLE_NAMES:
        out[n] = float(res.table.loc[n, "fbeta"])
        out[f"{n} recall"] = float(res.table.loc[n, "recall"])
    return out
