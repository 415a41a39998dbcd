"""Batch detection over many tomograms: resumable per-run results, one worker per GPU, every output format.

Layout of the output folder::

    OUT/runs/<run>.peaks.csv    every peak of the run with its score (written atomically when the run ends)
    OUT/runs/<run>.json         status: "ok" (seconds, shape, voxel size) or "failed" (the error message)
    OUT/submission.csv          challenge submission (thresholded)          --formats submission
    OUT/peaks.csv               every peak of every run, unthresholded      --formats raw
    OUT/thresholds.csv          the threshold each run's picks were cut at, per class (always, but for the
                                blob baseline without thresholds): per-tomogram rules raise them run by run
    OUT/particles_relion4.star  RELION 4 pixel coordinates, rlnTomoName = run (thresholded)  --formats star4
    OUT/particles_relion5.star  RELION 5 centred Å coordinates (thresholded)                 --formats star5
    OVERLAY/ExperimentRuns/<run>/Picks/cryopoint_0_<particle>.json   --formats copick (OVERLAY: a copick
                                overlay root, --overlay-root; default OUT/overlay)

A rerun skips runs whose ``<run>.json`` says "ok" (unless ``overwrite``), so an interrupted batch loses at
most the tomograms in flight; the combined files are always rebuilt from the per-run results, with this
call's thresholds. Each ``<run>.json`` records what made its peaks (``made_with``: the checkpoint's sha256,
or ``blob``; the window size and TTA in effect; a ``--voxel-size`` override; the tomogram's path). A rerun
whose model or settings differ refuses to mix old and new peaks before any work starts, and names the runs
and what differs: ``overwrite`` redoes them, or write to another folder. Thresholds are not part of it:
per-run peaks are unthresholded, so a new threshold never needs the network again.
"""

from __future__ import annotations

import json
import os
import queue
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryopoint.api import COLUMNS, Detector, check_settings, detect, load
from cryopoint.batch_distributed import Ranks
from cryopoint.checkpoint import sha256
from cryopoint.cli import make_console
from cryopoint.data.polarity import check_polarity_setting
from cryopoint.errors import ConfigError, DataNotFoundError, OutputExistsError, PolarityWarning, StaleResultError
from cryopoint.io import (
    atomic_path,
    atomic_write_text,
    list_runs,
    read_tomogram,
    tomogram_path,
    write_overlay_picks,
    write_star,
    write_submission_csv,
)
from cryopoint.io.copick import write_copick_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.post.thresholds import apply_thresholds
from cryopoint.tomogram import check_voxel_size

__all__ = ["FORMATS", "BatchOptions", "runs_from_root", "runs_from_files", "run_batch"]

FORMATS = ("submission", "raw", "copick", "star4", "star5")
COPICK_USER = "cryopoint"


@dataclass(frozen=True)
class BatchOptions:
    """What to run and write. ``model`` is a checkpoint path or ``"blob"`` (re-loaded in each worker).

    ``adaptive_alpha`` overrides the model's ``post.adaptive_alpha`` (per-tomogram thresholds,
    :mod:`cryopoint.post.adaptive`) and ``noise_tail`` its ``post.noise_tail`` (:mod:`cryopoint.post.noise_tail`)
    where the model's own thresholds apply; None keeps the model's setting. ``polarity`` is
    :func:`cryopoint.detect`'s (a tomogram that looks inverted is noted in its status file as well as warned about).
    """

    model: str
    out_dir: Path
    formats: tuple[str, ...] = ("submission",)
    overlay_root: Path | None = None
    copick_config: Path | None = None
    split: str = "test"
    thresholds: dict[str, float] | float | None = None
    adaptive_alpha: float | None = None
    noise_tail: bool | None = None
    devices: tuple[str, ...] = ()
    tta: bool | None = None
    batch_size: int | None = None
    roi: tuple[int, int, int] | None = None
    voxel_size: float | None = None
    overwrite: bool = False
    polarity: str = "check"


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
            raise ConfigError(f"Two inputs map to run name {run!r}: {found[run]} and {path}; rename one.")
        found[run] = path
    return found


def _status_path(out_dir: Path, run: str) -> Path:
    return out_dir / "runs" / f"{run}.json"


def _peaks_path(out_dir: Path, run: str) -> Path:
    return out_dir / "runs" / f"{run}.peaks.csv"


def _finished(out_dir: Path, run: str) -> bool:
    path = _status_path(out_dir, run)
    return path.is_file() and json.loads(path.read_text()).get("status") == "ok" and _peaks_path(out_dir, run).is_file()


def made_with(opts: BatchOptions, detector: Detector | str) -> dict[str, Any]:
    """What decides a run's peaks besides its tomogram: the model's sha256 and the settings in effect.

    ``batch_size`` and the device are left out (they change speed and memory, not the picks beyond float
    rounding); so are thresholds, which apply only when the combined outputs are assembled.
    """
    # A polarity that can invert the tomogram changes the peaks; "check" and "dark" never do (and are left out,
    # so results made before the setting existed still resume). With a model, "auto" lets the model confirm an
    # inversion (cryopoint.api._oriented_peaks), so its results are not those of "auto" before it did.
    inverts = {"polarity": opts.polarity} if opts.polarity in ("auto", "bright") else {}
    if isinstance(detector, str):
        return {"model": detector, "voxel_size": opts.voxel_size, **inverts}
    if opts.polarity == "auto":
        inverts = {"polarity": "auto, confirmed by the model"}
    infer = detector.config.infer
    return {
        "model": f"sha256:{sha256(detector.path)}",
        "roi": [int(r) for r in (opts.roi or infer.roi)],
        "tta": bool(infer.tta if opts.tta is None else opts.tta),
        "voxel_size": opts.voxel_size,
        **inverts,
    }


def _with_source(made: dict[str, Any], source: Path | str) -> dict[str, Any]:
    return {**made, "source": str(Path(source).resolve()) if isinstance(source, Path) else None}


def _differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """``["model sha256:ab12... now sha256:cd34...", ...]`` for the entries of ``new`` that ``old`` lacks or differ."""
    if old is None:
        return ["made before cryopoint recorded the model and settings"]
    short = lambda v: f"{v[:19]}..." if isinstance(v, str) and v.startswith("sha256:") else v  # noqa: E731
    return [f"{key} {short(old.get(key))} now {short(value)}" for key, value in new.items() if old.get(key) != value]


def _check_stale(inputs: dict[str, Path | str], opts: BatchOptions, made: dict[str, Any]) -> None:
    """Refuse to resume into results made by another model or other settings (before any run starts)."""
    stale = {}
    for run, source in inputs.items():
        if _finished(opts.out_dir, run):
            old = json.loads(_status_path(opts.out_dir, run).read_text()).get("made_with")
            diff = _differences(old, _with_source(made, source))
            if diff:
                stale[run] = diff
    if stale:
        runs = list(stale)
        shown = ", ".join(runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
        raise StaleResultError(
            f"{opts.out_dir} already holds results of {len(runs)} run(s) made differently: {shown} "
            f"({'; '.join(stale[runs[0]])}). Resuming would mix their peaks with this model's. Pass --overwrite "
            "(overwrite=True) to redo them, or write to another --out."
        )


def process_run(
    run: str,
    source: Path | str,
    detector: Detector | str,
    opts: BatchOptions,
    device: str,
    progress: Callable[[int, int], None] | None = None,
    made: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Detect in one tomogram and write its per-run results; never raises for bad input (returns the status).

    ``made`` is :func:`made_with` for ``detector`` and ``opts`` (computed here when not given).
    """
    start = time.perf_counter()
    made = made_with(opts, detector) if made is None else made
    status: dict[str, Any] = {"run": run, "source": str(source), "device": device}
    status["made_with"] = _with_source(made, source)
    if not isinstance(detector, str):
        status["model_path"] = str(detector.path)
    try:
        if not isinstance(source, Path):
            raise DataNotFoundError(source)
        tomo = read_tomogram(source, voxel_size=opts.voxel_size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PolarityWarning)
            peaks = detect(
                tomo,
                detector,
                thresholds=0.0,
                device=device,
                tta=opts.tta,
                batch_size=opts.batch_size,
                roi=opts.roi,
                progress=progress,
                polarity=opts.polarity,
            )
        for w in caught:  # shown as usual, and kept with the run's results
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if issubclass(w.category, PolarityWarning):
                status["polarity_warning"] = str(w.message)
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


def _worker(rank: int, device: str, opts: BatchOptions, tasks: Any, results: Any, made: dict) -> None:
    """One process per device: load the model once, then take runs from ``tasks`` until a None arrives."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, len(opts.devices))))
    detector = opts.model if opts.model == "blob" else load(opts.model)
    while (task := tasks.get()) is not None:
        run, source = task
        results.put(("start", rank, run, 0, 0))
        step = lambda d, t, run=run: results.put(("step", rank, run, d, t))  # noqa: E731
        status = process_run(run, source, detector, opts, device, step, made)
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


def _run_parallel(todo: dict, opts: BatchOptions, on_event: Callable[..., None], made: dict) -> None:
    """Each run on one worker process per device; no queue is shared between workers.

    A worker killed while it holds a queue's lock (os._exit, the OOM killer: inside a ``get``, or while its
    feeder thread writes) leaves that lock taken for good; with shared queues every other worker would block on
    it and the batch would hang. So each worker has its own task and results queues and holds one run at a
    time, handed out here: a dead worker can only take its own run with it. That run fails at once (with a
    recorded reason) and the surviving workers take the rest.
    """
    before = {run: _stamp(_status_path(opts.out_dir, run)) for run in todo}
    ctx = torch.multiprocessing.get_context("spawn")
    tasks = [ctx.Queue() for _ in opts.devices]
    results = [ctx.Queue() for _ in opts.devices]
    workers = [
        ctx.Process(target=_worker, args=(i, d, opts, tasks[i], results[i], made)) for i, d in enumerate(opts.devices)
    ]
    for w in workers:
        w.start()
    pending = list(todo.items())  # runs not handed out yet, in order
    holding: dict[int, str | None] = {}  # worker -> the run it was handed (None: told to stop)

    def hand_out(i: int) -> None:
        holding[i] = pending[0][0] if pending else None
        tasks[i].put(pending.pop(0) if pending else None)

    def lost(run: str, rank: int = 0) -> None:
        on_event("done", rank, run, _lost_run_status(run, opts, before[run]), None)
        remaining.discard(run)

    remaining = set(todo)
    for i in range(len(workers)):
        hand_out(i)
    while remaining:
        got = False
        for i, q in enumerate(results):
            try:
                kind, rank, run, a, b = q.get_nowait()
            except queue.Empty:
                continue
            got = True
            on_event(kind, rank, run, a, b)
            if kind == "done":
                remaining.discard(run)
                hand_out(i)
        if got:
            continue
        for i, w in enumerate(workers):
            if not w.is_alive() and results[i].empty() and holding[i] is not None:  # died holding a run
                lost(holding[i], i)
                holding[i] = None
        if not any(w.is_alive() for w in workers) and all(q.empty() for q in results):
            for run in [r for r, _ in pending if r in remaining]:  # every worker is gone: do not hang
                lost(run)
            break
        time.sleep(0.05)
    for w in workers:
        w.join()


def _run_thresholds(
    peaks: pd.DataFrame, status: dict, opts: BatchOptions, detector: Detector | str
) -> dict[str, float] | None:
    """The thresholds one run's picks are cut at: ``--threshold``/``--thresholds`` if given, else the detector's
    own for that tomogram (raised per tomogram where its config asks, exactly as ``detect`` would), else None
    (the blob baseline has no tuned thresholds: every peak is kept)."""
    if isinstance(opts.thresholds, (int, float)):
        return {name: float(opts.thresholds) for name in PARTICLE_NAMES}
    if opts.thresholds is not None:
        return dict(opts.thresholds)
    if isinstance(detector, str):
        return None
    return detector.thresholds_for(peaks, status["shape"], status["voxel_size"])


def _thresholds_table(used: dict[str, dict[str, float] | None], detector: Detector | str, opts: BatchOptions):
    """``experiment, particle_type, threshold, tuned``: per run and class the threshold applied and, where the
    model's own thresholds apply, the tuned one it started from (a per-tomogram rule raised it if higher)."""
    own = None if isinstance(detector, str) or opts.thresholds is not None else detector.default_thresholds
    rows = [
        {"experiment": run, "particle_type": name, "threshold": thr, "tuned": own.get(name) if own else None}
        for run, thresholds in used.items()
        if thresholds is not None
        for name, thr in thresholds.items()
    ]
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "threshold", "tuned"])


def _assemble(
    runs: Sequence[str], statuses: dict[str, dict], opts: BatchOptions, detector: Detector | str
) -> pd.DataFrame:
    """Combined outputs from the per-run peak files of the runs that finished; returns the thresholded picks."""
    ok = [r for r in runs if statuses[r].get("status") == "ok"]
    frames = [pd.read_csv(_peaks_path(opts.out_dir, r), dtype={"experiment": str}) for r in ok]
    empty = pd.DataFrame(columns=["experiment", *COLUMNS])
    peaks = pd.concat(frames, ignore_index=True) if frames else empty
    used = {r: _run_thresholds(f, statuses[r], opts, detector) for r, f in zip(ok, frames)}
    cut = [f if used[r] is None else apply_thresholds(f, used[r]) for r, f in zip(ok, frames)]
    picks = pd.concat(cut, ignore_index=True) if cut else empty
    out = opts.out_dir
    table = _thresholds_table(used, detector, opts)
    if len(table):
        with atomic_path(out / "thresholds.csv") as tmp:
            table.to_csv(tmp, index=False)
    else:  # every peak kept (the blob baseline): no cut to record, and none left from an earlier call
        (out / "thresholds.csv").unlink(missing_ok=True)
    if "raw" in opts.formats:
        with atomic_path(out / "peaks.csv") as tmp:
            peaks.to_csv(tmp, index=False)
    if "submission" in opts.formats:
        write_submission_csv(out / "submission.csv", picks, overwrite=True)
    if "copick" in opts.formats and opts.copick_config is not None:  # into the project, through copick's API
        rows = picks[picks["experiment"].isin(ok)]
        write_copick_picks(opts.copick_config, rows, user_id=COPICK_USER, runs=ok, overwrite=True)
    elif "copick" in opts.formats:
        for run in ok:
            rows = picks[picks["experiment"] == run]
            root = opts.overlay_root or out / "overlay"
            write_overlay_picks(root, run, rows, user_id=COPICK_USER, overwrite=True)
    geometry = {
        "voxel_size": {run: statuses[run]["voxel_size"] for run in ok},
        "shape": {run: statuses[run]["shape"] for run in ok},
    }
    for version in (4, 5):
        if f"star{version}" in opts.formats:
            write_star(out / f"particles_relion{version}.star", picks, version=version, overwrite=True, **geometry)
    return picks


def _flood_notes(
    runs: Sequence[str], statuses: dict[str, dict], picks: pd.DataFrame, opts: BatchOptions, detector: Detector | str
) -> list[str]:
    """One line per run and class whose picks are far denser than the model's thresholds keep on its reference
    data (:meth:`Detector.flooded`); none for explicit thresholds, the blob baseline or a model without one."""
    if isinstance(detector, str) or opts.thresholds is not None:
        return []
    lines = []
    for run in runs:
        st = statuses[run]
        if st.get("status") != "ok":
            continue
        mine = picks[picks["experiment"] == run]
        for name, (n, ratio) in detector.flooded(mine, st["shape"], st["voxel_size"]).items():
            lines.append(f"{run}: {n} {name} picks, {ratio:.1f}x the density its thresholds keep on reference data")
    return lines


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

    Raises:
        ConfigError, VoxelSizeError, UnknownParticleError: a bad format, setting, voxel size or threshold class.
        DataNotFoundError, CheckpointError: no usable checkpoint at ``opts.model``.
        OutputExistsError: ``opts.out_dir`` is a file.
        StaleResultError: finished runs in ``opts.out_dir`` were made by another model or other settings
            (and not ``opts.overwrite``).

        All of these are raised before any tomogram is processed.
    """
    unknown = sorted(set(opts.formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"Unknown output format(s) {unknown}; choose from {', '.join(FORMATS)}.")
    check_settings(batch_size=opts.batch_size, roi=opts.roi)
    check_polarity_setting(opts.polarity)
    if opts.voxel_size is not None:
        check_voxel_size(opts.voxel_size, what="--voxel-size")
    if isinstance(opts.thresholds, dict):
        for name in opts.thresholds:
            get_particle(name)
    if Path(opts.out_dir).exists() and not Path(opts.out_dir).is_dir():
        raise OutputExistsError(f"--out {opts.out_dir} is a file; give a folder (created if missing).")
    ranks = Ranks.from_env(opts.devices)  # under torchrun: this process's device and its share of the runs
    devices = ranks.devices if ranks else opts.devices or tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    devices = devices or ("cpu",)
    opts = BatchOptions(**{**opts.__dict__, "devices": devices, "out_dir": Path(opts.out_dir)})
    console = console or make_console()
    detector = opts.model if opts.model == "blob" else load(opts.model)  # a bad checkpoint fails before any run
    if opts.adaptive_alpha is not None and not isinstance(detector, str):
        detector = detector.with_adaptive_alpha(opts.adaptive_alpha)
    if opts.noise_tail is not None and not isinstance(detector, str):
        detector = detector.with_noise_tail(opts.noise_tail)
    made = made_with(opts, detector)
    if not opts.overwrite:
        _check_stale(inputs, opts, made)
    statuses: dict[str, dict] = {}
    todo = {}
    for run, source in inputs.items():
        if _finished(opts.out_dir, run) and not opts.overwrite:
            statuses[run] = {**json.loads(_status_path(opts.out_dir, run).read_text()), "skipped": True}
        else:
            todo[run] = source
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=ranks is not None) as bar:  # fmt: skip
        overall = bar.add_task("tomograms", total=len(todo))
        lanes = [bar.add_task(f"{d}: waiting", total=None) for d in devices]

        log = not console.is_terminal  # no live bars in a log: one line per tomogram and per quarter of its windows
        quarter = [0] * len(devices)

        def on_event(kind: str, rank: int, run: str, a: Any, b: Any) -> None:
            if kind == "start":
                bar.reset(lanes[rank], description=f"{devices[rank]}: {run}", total=None)
                quarter[rank] = 0
                if log:
                    console.print(f"{run}: started on {devices[rank]}")
            elif kind == "step":
                bar.update(lanes[rank], completed=a, total=b)
                if log and b and 4 * a // b > quarter[rank] and a < b:
                    quarter[rank] = 4 * a // b
                    console.print(f"{run}: {a}/{b} windows")
            else:
                statuses[run] = a
                bar.advance(overall)
                if a["status"] == "failed":
                    console.print(f"[red]{run} failed[/]: {a['error']}")
                elif log:
                    console.print(f"{run}: {a.get('peaks', 0)} peaks in {a.get('seconds', 0):.1f} s")

        if ranks:
            work = lambda run, source, step: process_run(run, source, detector, opts, devices[0], step, made)  # noqa: E731
            statuses.update(ranks.run(todo, opts.out_dir, work, on_event, console))
        elif len(devices) > 1 and len(todo) > 1:
            _run_parallel(todo, opts, on_event, made)
        elif todo:
            for run, source in todo.items():
                on_event("start", 0, run, 0, 0)
                step = lambda d, t, run=run: on_event("step", 0, run, d, t)  # noqa: E731
                status = process_run(run, source, detector, opts, devices[0], step, made)
                on_event("done", 0, run, status, None)
    runs = list(inputs)
    if ranks and not ranks.is_main:
        return ranks.summary(None)  # rank 0 writes the combined outputs from every rank's per-run files
    if (
        opts.model == "blob"
        and opts.thresholds is None
        and {"submission", "copick", "star4", "star5"} & set(opts.formats)
    ):
        console.print(
            "The blob baseline has no tuned thresholds: the picks files hold every peak. Tune them on labelled runs "
            "(tools/tune_thresholds.py --predictions OUT/peaks.csv ...) and pass --thresholds thresholds.yaml."
        )
    picks = _assemble(runs, statuses, opts, detector)
    console.print(_summary_table(runs, statuses, picks))
    flooded = _flood_notes(runs, statuses, picks, opts, detector)
    if flooded:
        console.print("[yellow]Many more picks than the model keeps on data like its training data:[/]")
        for line in flooded:
            console.print(f"  {line}")
        console.print(
            "Unless the sample is that crowded, most of these are likely false positives: the thresholds sit low for "
            "this data (docs/models.md, 'Thresholds: how generic they are'). Raise them per tomogram with "
            "--noise-tail or --adaptive 0.5, or recalibrate from a few labelled tomograms: tools/tune_thresholds.py "
            "... --checkpoint MODEL --save-as mine.pt. The picks files are written unchanged."
        )
    summary = pd.DataFrame([
        {"run": r, "status": "skipped" if statuses[r].get("skipped") else statuses[r]["status"],
         "seconds": statuses[r].get("seconds", 0.0), "error": statuses[r].get("error", "")}
        for r in runs
    ])  # fmt: skip
    return ranks.summary(summary) if ranks else summary
