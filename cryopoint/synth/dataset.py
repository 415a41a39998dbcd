"""Write synthetic runs in the challenge layout (OME-Zarr v2 tomograms + copick picks JSON)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from rich.progress import Progress

from cryopoint.errors import ConfigError, OutputExistsError
from cryopoint.io.layout import write_run_picks
from cryopoint.io.zarr_store import write_ome_zarr
from cryopoint.synth.params import REAL_SHAPE, get_preset
from cryopoint.synth.simulate import simulate_kinds

__all__ = ["generate_dataset", "run_names", "run_rng"]

_SPLITS = ("train", "test")


def run_names(runs: int, seed: int, split: str = "train") -> list[str]:
    """Challenge-like but clearly synthetic run names: ``TS_SYN<seed>_<i>`` (train), ``TS_SYNT<seed>_<i>`` (test).

    >>> run_names(2, seed=0)
    ['TS_SYN0_1', 'TS_SYN0_2']
    """
    tag = "SYN" if split == "train" else "SYNT"
    return [f"TS_{tag}{seed}_{i + 1}" for i in range(runs)]


def run_rng(seed: int, split: str, name: str) -> np.random.Generator:
    """The random generator of one run: a function of ``(seed, split, run name)`` only."""
    return np.random.default_rng([seed, _SPLITS.index(split), zlib.crc32(name.encode())])


def generate_dataset(
    out: str | os.PathLike,
    *,
    runs: int | Sequence[str],
    shape: Sequence[int] = REAL_SHAPE,
    seed: int = 0,
    preset: str = "realistic",
    split: str = "train",
    overwrite: bool = False,
    workers: int = -1,
    processes: int = 1,
    **overrides,
) -> list[str]:
    """Simulate runs and write them under ``out`` in the challenge layout.

    Writes ``out/<split>/static/ExperimentRuns/<run>/VoxelSpacing10.000/<kind>.zarr`` for every reconstruction
    kind of ``params.kinds`` (``denoised`` by default; OME-NGFF 0.4, zarr v2, levels 0/1/2, voxel size
    10.012444 Å in the metadata) and
    ``out/<split>/overlay/ExperimentRuns/<run>/Picks/<particle>.json`` (copick JSON in Å, one file per class).
    Each run's randomness comes from ``(seed, split, run name)`` only, so a run is identical whether it is
    generated alone or with others, and ``train`` and ``test`` never share a volume.

    >>> generate_dataset("data/synth", runs=2, shape=(64, 128, 128), preset="easy")  # doctest: +SKIP
    ['TS_SYN0_1', 'TS_SYN0_2']

    Args:
        out: Dataset root.
        runs: Number of runs (named by :func:`run_names`) or explicit run names.
        shape: Tomogram shape (Z, Y, X) in voxels; the challenge's is (184, 630, 630).
        seed: Dataset seed.
        preset: ``"realistic"`` (default, the benchmark data), ``"easy"`` or ``"randomized"``.
        split: ``"train"`` or ``"test"``.
        overwrite: Replace existing runs of the same names.
        workers: FFT threads (-1 = all cores).
        processes: Runs simulated at once, each in its own process with one FFT thread (``workers`` is then
            ignored). Every run is the same whatever the number; memory grows with it (one run's volumes per
            process), so raise it for many small runs on a machine with many cores.
        **overrides: :class:`~cryopoint.synth.params.SynthParams` fields to change, e.g. ``snr=0.3``.

    Returns:
        The run names written.

    Raises:
        ConfigError: unknown preset/parameter, bad split, run count or process count.
        OutputExistsError: a run exists and ``overwrite`` is False.
    """
    if split not in _SPLITS:
        raise ConfigError(f"split must be one of {_SPLITS}; got {split!r}.")
    if processes < 1:
        raise ConfigError(f"processes must be at least 1; got {processes}.")
    if isinstance(runs, int):
        if runs < 1:
            raise ConfigError(f"runs must be at least 1; got {runs}.")
        names = run_names(runs, seed, split)
    else:
        names = [str(r) for r in runs]
    params = get_preset(preset, **overrides)
    runs_root = Path(out) / split
    voxel_dirs = {n: runs_root / "static/ExperimentRuns" / n / "VoxelSpacing10.000" for n in names}
    picks_dirs = {n: runs_root / "overlay/ExperimentRuns" / n / "Picks" for n in names}
    existing = [
        n
        for n in names
        if any((voxel_dirs[n] / f"{k}.zarr").exists() for k in params.kinds) or any(picks_dirs[n].glob("*.json"))
    ]
    if existing and not overwrite:  # checked up front: no minutes of simulation, no half-written dataset
        raise OutputExistsError(
            f"{runs_root} already holds run(s) {', '.join(existing)}; pass overwrite=True (CLI: --overwrite) "
            "to replace them, or choose another --out or --seed."
        )
    job = dict(out=Path(out), shape=tuple(shape), params=params, seed=seed, split=split, overwrite=overwrite)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"simulating {len(names)} {preset} run(s)", total=len(names))
        if processes == 1 or len(names) == 1:
            for name in names:
                _write_run(name, voxel_dirs[name], workers=workers, **job)
                progress.advance(task)
        else:
            # spawn, not fork: the caller may hold threads (torch, FFT pools) that a forked child would inherit locked
            with ProcessPoolExecutor(min(processes, len(names)), mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_write_run, name, voxel_dirs[name], workers=1, **job) for name in names]
                for future in as_completed(futures):
                    future.result()  # re-raises a worker's error here
                    progress.advance(task)
    return names


def _write_run(
    name: str, voxel_dir: Path, *, out: Path, shape, params, seed: int, split: str, overwrite: bool, workers: int
) -> None:
    """Simulate one run and write its tomograms (under ``voxel_dir``) and picks (a module-level function, so worker
    processes run it)."""
    volumes, picks = simulate_kinds(shape, params, run_rng(seed, split, name), workers=workers)
    for kind, volume in volumes.items():
        write_ome_zarr(voxel_dir / f"{kind}.zarr", volume, params.voxel_size, overwrite=overwrite)
    write_run_picks(out, name, picks, split=split, overwrite=overwrite)
