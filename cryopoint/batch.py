"""Batch detection over many tomograms: resumable per-run results, one worker per GPU, every output format.

Layout of the output folder::

    OUT/runs/<run>.peaks.csv    every peak of the run with its score (written atomically when the run ends)
    OUT/runs/<run>.json         status: "ok" (seconds, shape, voxel size) or "failed" (the error message)
    OUT/submission.csv          challenge submission (thresholded)          --formats submission
    OUT/peaks.csv               every peak of every run, unthresholded      --formats raw
    OUT/particles_relion4.star  RELION 4 pixel coordinates, rlnTomoName = run (thresholded)  --formats star4
    OUT/particles_relion5.star  RELION 5 centred Å coordinates (thresholded)                 --formats star5
    OVERLAY/<split>/overlay/ExperimentRuns/<run>/Picks/cryopoint_0_<particle>.json   --formats copick

A rerun skips runs whose ``<run>.json`` says "ok" (unless ``overwrite``), so an interrupted batch loses at
most the tomograms in flight; the combined files are always rebuilt from the per-run results.
"""

from __future__ import annotations

import json
import os
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryopoint.api import COLUMNS, Detector, detect, load
from cryopoint.errors import DataNotFoundError
from cryopoint.io import (
    atomic_path,
    atomic_write_text,
    list_runs,
    read_tomogram,
    tomogram_path,
    write_run_picks,
    write_star,
    write_submission_csv,
)
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.thresholds import apply_thresholds

__all__ = ["FORMATS", "BatchOptions", "runs_from_root", "runs_from_files", "run_batch"]

FORMATS = ("submission", "raw", "copick", "star4", "star5")
COPICK_USER = "cryopoint"


@dataclass(frozen=True)
class BatchOptions:
    """What to run and write. ``model`` is a checkpoint path or ``"blob"`` (re-loaded in each worker)."""

    model: str
    out_dir: Path
    formats: tuple[str, ...] = ("submission",)
    overlay_root: Path | None = None
    split: str = "test"
    thresholds: dict[str, float] | float | None = None
    devices: tuple[str, ...] = ()
    tta: bool | None = None
    batch_size: int | None = None
    roi: tuple[int, int, int] | None = None
    voxel_size: float | None = None
    overwrite: bool = False


def runs_from_root(root: str | os.PathLike, split: str, runs: Sequence[str] = (), kind: str = "denoised") -> dict:
    """``{run: tomogram path}`` for the runs of a challenge/copick-layout split (all, or ``runs``).

    A run whose tomogram is missing maps to the ``DataNotFoundError`` text, so it fails alone.
    """
    names = list(runs) or list_runs(root, split)
    found: dict[str, Path | str] = {}
    for run in names:
        try:
            found[run] = tomogram_path(root, run, split=split, kind=kind)
        except DataNotFoundError as exc:
            found[run] = str(exc)
    return found


def runs_from_files(paths: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{run: path}`` for tomogram files; the run is the challenge run folder or else the file stem."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        run = path.parent.parent.name if path.parent.name.startswith("VoxelSpacing") else path.name.split(".")[0]
        if run in found:
            raise ValueError(f"Two inputs map to run name {run!r}: {found[run]} and {path}; rename one.")
        found[run] = path
    return found


def _status_path(out_dir: Path, run: str) -> Path:
    return out_dir / "runs" / f"{run}.json"


def _peaks_path(out_dir: Path, run: str) -> Path:
    return out_dir / "runs" / f"{run}.peaks.csv"


def _finished(out_dir: Path, run: str) -> bool:
    path = _status_path(out_dir, run)
    return path.is_file() and json.loads(path.read_text()).get("status") == "ok" and _peaks_path(out_dir, run).is_file()


def process_run(
    run: str,
    source: Path | str,
    detector: Detector | str,
    opts: BatchOptions,
    device: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Detect in one tomogram and write its per-run results; never raises for bad input (returns the status)."""
    start = time.perf_counter()
    status: dict[str, Any] = {"run": run, "source": str(source), "device": device}
    try:
        if not isinstance(source, Path):
            raise DataNotFoundError(source)
        tomo = read_tomogram(source, voxel_size=opts.voxel_size)
        peaks = detect(
            tomo,
            detector,
            thresholds=0.0,
            device=device,
            tta=opts.tta,
            batch_size=opts.batch_size,
            roi=opts.roi,
            progress=progress,
        )
    except Exception as exc:  # one bad tomogram must not stop the batch: record why and go on
        status.update(status="failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
        if not isinstance(exc, (ValueError, FileNotFoundError)):
            status["traceback"] = traceback.format_exc()
    else:
        peaks.insert(0, "experiment", run)
        with atomic_path(_peaks_path(opts.out_dir, run)) as tmp:
            peaks.to_csv(tmp, index=False)
        status.update(status="ok", seconds=time.perf_counter() - start, shape=list(tomo.shape),
                      voxel_size=list(tomo.voxel_size), peaks=len(peaks))  # fmt: skip
    atomic_write_text(_status_path(opts.out_dir, run), json.dumps(status, indent=1))
    return status


def _worker(rank: int, device: str, opts: BatchOptions, tasks: Any, results: Any) -> None:
    """One process per device: load the model once, then take runs from ``tasks`` until a None arrives."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, len(opts.devices))))
    detector = opts.model if opts.model == "blob" else load(opts.model)
    while (task := tasks.get()) is not None:
        run, source = task
        results.put(("start", rank, run, 0, 0))
        step = lambda d, t, run=run: results.put(("step", rank, run, d, t))  # noqa: E731
        status = process_run(run, source, detector, opts, device, step)
        results.put(("done", rank, run, status, None))


def _stamp(path: Path) -> tuple[int, int] | None:
    """Identity of a file version (each atomic rewrite is a new inode), or None when absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _lost_run_status(run: str, opts: BatchOptions, before: tuple[int, int] | None) -> dict[str, Any]:
    """Status of a run whose worker process died without reporting it.

    A worker killed right after finishing a run can take that run's "done" message with it, so the run's own
    record decides when this batch rewrote it (``before``: its stamp when the batch started); otherwise the
    run failed, and that is recorded in its status file like any other failure.
    """
    path = _status_path(opts.out_dir, run)
    if _finished(opts.out_dir, run) and _stamp(path) != before:
        return json.loads(path.read_text())
    status = {
        "run": run,
        "status": "failed",
        "error": "worker process died (killed, e.g. out of memory) before this run finished; rerun to retry it",
    }
    atomic_write_text(path, json.dumps(status, indent=1))
    return status


def _run_parallel(todo: dict, opts: BatchOptions, on_event: Callable[..., None]) -> None:
    before = {run: _stamp(_status_path(opts.out_dir, run)) for run in todo}
    ctx = torch.multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for item in todo.items():
        tasks.put(item)
    for _ in opts.devices:
        tasks.put(None)
    workers = [ctx.Process(target=_worker, args=(i, d, opts, tasks, results)) for i, d in enumerate(opts.devices)]
    for w in workers:
        w.start()
    remaining = set(todo)
    while remaining:
        try:
            kind, rank, run, a, b = results.get(timeout=5)
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                for run in sorted(remaining):  # every worker is gone (some died, e.g. out of memory): do not hang
                    on_event("done", 0, run, _lost_run_status(run, opts, before[run]), None)
                break
            continue
        on_event(kind, rank, run, a, b)
        if kind == "done":
            remaining.discard(run)
    for w in workers:
        w.join()


def _thresholds(opts: BatchOptions, detector: Detector | str) -> dict[str, float]:
    """``--threshold`` for every class if given, else the detector's defaults (none for the blob baseline)."""
    if isinstance(opts.thresholds, (int, float)):
        return {name: float(opts.thresholds) for name in PARTICLE_NAMES}
    if opts.thresholds is not None:
        return dict(opts.thresholds)
    return {} if isinstance(detector, str) else detector.default_thresholds


def _assemble(
    runs: Sequence[str], statuses: dict[str, dict], opts: BatchOptions, thresholds: dict[str, float]
) -> pd.DataFrame:
    """Combined outputs from the per-run peak files of the runs that finished; returns the thresholded picks."""
    ok = [r for r in runs if statuses[r].get("status") == "ok"]
    frames = [pd.read_csv(_peaks_path(opts.out_dir, r), dtype={"experiment": str}) for r in ok]
    peaks = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["experiment", *COLUMNS])
    picks = apply_thresholds(peaks, thresholds) if thresholds else peaks
    out = opts.out_dir
    if "raw" in opts.formats:
        with atomic_path(out / "peaks.csv") as tmp:
            peaks.to_csv(tmp, index=False)
    if "submission" in opts.formats:
        write_submission_csv(out / "submission.csv", picks, overwrite=True)
    if "copick" in opts.formats:
        for run in ok:
            rows = picks[picks["experiment"] == run]
            root = opts.overlay_root or out / "overlay"
            write_run_picks(root, run, rows, split=opts.split, user_id=COPICK_USER, overwrite=True)
    geometry = {
        "voxel_size": {run: statuses[run]["voxel_size"] for run in ok},
        "shape": {run: statuses[run]["shape"] for run in ok},
    }
    for version in (4, 5):
        if f"star{version}" in opts.formats:
            write_star(out / f"particles_relion{version}.star", picks, version=version, overwrite=True, **geometry)
    return picks


def _summary_table(runs: Sequence[str], statuses: dict[str, dict], picks: pd.DataFrame) -> Table:
    table = Table(title="cryopoint detect")
    for col in ("run", "status", "seconds", *PARTICLE_NAMES, "total"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    counts = picks.groupby(["experiment", "particle_type"]).size() if len(picks) else pd.Series(dtype=int)
    for run in runs:
        st = statuses[run]
        per = [int(counts.get((run, name), 0)) for name in PARTICLE_NAMES] if st["status"] == "ok" else []
        cells = [str(c) for c in per] + [str(sum(per))] if per else ["-"] * (len(PARTICLE_NAMES) + 1)
        text = "done before" if st.get("skipped") else st["status"]
        colour = "green" if st["status"] == "ok" else "red"
        table.add_row(run, f"[{colour}]{text}[/]", f"{st.get('seconds', 0):.1f}", *cells)
    return table


def run_batch(inputs: dict[str, Path | str], opts: BatchOptions, console: Console | None = None) -> pd.DataFrame:
    """Detect in every input tomogram, resuming finished runs, and write the requested formats.

    Args:
        inputs: ``{run: tomogram path}`` (a string value is an error message: that run fails).
        opts: Model, output folder, formats, devices (default: every CUDA device, else ``("cpu",)``).
        console: Where progress and the summary table go.

    Returns:
        One row per run: ``run, status, seconds, error`` (status ``ok``, ``skipped`` = done before, or ``failed``).
    """
    unknown = sorted(set(opts.formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"Unknown output format(s) {unknown}; choose from {', '.join(FORMATS)}.")
    devices = opts.devices or tuple(f"cuda:{i}" for i in range(torch.cuda.device_count())) or ("cpu",)
    opts = BatchOptions(**{**opts.__dict__, "devices": devices, "out_dir": Path(opts.out_dir)})
    console = console or Console()
    detector = opts.model if opts.model == "blob" else load(opts.model)  # a bad checkpoint fails before any run
    statuses: dict[str, dict] = {}
    todo = {}
    for run, source in inputs.items():
        if _finished(opts.out_dir, run) and not opts.overwrite:
            statuses[run] = {**json.loads(_status_path(opts.out_dir, run).read_text()), "skipped": True}
        else:
            todo[run] = source
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:  # fmt: skip
        overall = bar.add_task("tomograms", total=len(todo))
        lanes = [bar.add_task(f"{d}: waiting", total=None) for d in devices]

        def on_event(kind: str, rank: int, run: str, a: Any, b: Any) -> None:
            if kind == "start":
                bar.reset(lanes[rank], description=f"{devices[rank]}: {run}", total=None)
            elif kind == "step":
                bar.update(lanes[rank], completed=a, total=b)
            else:
                statuses[run] = a
                bar.advance(overall)
                if a["status"] == "failed":
                    console.print(f"[red]{run} failed[/]: {a['error']}")

        if len(devices) > 1 and len(todo) > 1:
            _run_parallel(todo, opts, on_event)
        elif todo:
            for run, source in todo.items():
                on_event("start", 0, run, 0, 0)
                step = lambda d, t, run=run: on_event("step", 0, run, d, t)  # noqa: E731
                on_event("done", 0, run, process_run(run, source, detector, opts, devices[0], step), None)
    runs = list(inputs)
    picks = _assemble(runs, statuses, opts, _thresholds(opts, detector))
    console.print(_summary_table(runs, statuses, picks))
    return pd.DataFrame([
        {"run": r, "status": "skipped" if statuses[r].get("skipped") else statuses[r]["status"],
         "seconds": statuses[r].get("seconds", 0.0), "error": statuses[r].get("error", "")}
        for r in runs
    ])  # fmt: skip
