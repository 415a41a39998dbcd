"""The challenge / copick data layout, read and written unchanged::

    ROOT/<split>/static/ExperimentRuns/<run>/VoxelSpacing10.000/<kind>.zarr
    ROOT/<split>/overlay/ExperimentRuns/<run>/Picks/<object>.json              (the challenge's names)
    ROOT/<split>/overlay/ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json  (copick's names)

``ROOT/<split>/overlay`` is a copick *overlay root*: the folder a copick project config names as ``overlay_root``,
holding ``ExperimentRuns/``. :func:`write_overlay_picks` / :func:`read_overlay_picks` take any overlay root, so
picks written there are the picks a copick project with that ``overlay_root`` sees; :func:`write_run_picks` /
:func:`read_picks` are the same for ``ROOT/<split>/overlay``. (Projects on other storage: :mod:`cryopoint.io.copick`.)

Choosing among several picks files of one particle type (``read_picks``): files are first filtered by
``user_id`` / ``session_id`` when given (matched against the JSON fields, which the plain challenge files
also carry). If more than one file per type remains, those with ``user_id == "curation"`` (ground truth)
are kept. If still more than one remains, the choice is ambiguous and a PicksFormatError lists the
candidates: cryopoint never silently merges or picks one.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd

from cryopoint.errors import DataNotFoundError, OutputExistsError, PicksFormatError, UnknownParticleError
from cryopoint.io.atomic import atomic_write_text
from cryopoint.io.picks import check_picks_table, concat_picks, copick_json_text, empty_picks, read_copick_json
from cryopoint.io.tomograms import MRC_SUFFIXES, read_tomogram, tomogram_geometry
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.tomogram import Tomogram

__all__ = [
    "TomogramsByRun",
    "CURATION_USER",
    "list_runs",
    "run_dir",
    "picks_dir",
    "tomogram_path",
    "tomogram_geometries",
    "read_picks",
    "read_truth",
    "write_run_picks",
    "overlay_picks_dir",
    "read_overlay_picks",
    "write_overlay_picks",
]

#: ``user_id`` of curated ground-truth picks in the challenge data.
CURATION_USER = "curation"


def _runs_root(root: Path, split: str, area: str) -> Path:
    return Path(root) / split / area / "ExperimentRuns"


def _listing(folder: Path, limit: int = 30) -> str:
    if not folder.is_dir():
        return "nothing (it does not exist)"
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    more = f" ... (+{len(names) - limit})" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) if names else "nothing"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def list_runs(root: str | os.PathLike, split: str = "train") -> list[str]:
    """Names of the runs of a split (runs with a tomogram folder or a picks folder), sorted.

    Raises:
        DataNotFoundError: the split has neither ``static/ExperimentRuns`` nor ``overlay/ExperimentRuns``.
    """
    root = Path(root)
    folders = [_runs_root(root, split, area) for area in ("static", "overlay")]
    if not any(f.is_dir() for f in folders):
        near = _nearest_existing(folders[0])
        raise DataNotFoundError(
            f"No runs for split {split!r} under {root}: expected {folders[0]} (tomograms) or {folders[1]} "
            f"(picks). {near} contains: {_listing(near)}."
        )
    return sorted({p.name for f in folders if f.is_dir() for p in f.iterdir() if p.is_dir()})


def run_dir(root: str | os.PathLike, run: str, split: str = "train", area: str = "static") -> Path:
    """``ROOT/<split>/<area>/ExperimentRuns/<run>``, checked to exist.

    Raises:
        DataNotFoundError: the run folder is missing (the message lists the runs present).
    """
    folder = _runs_root(Path(root), split, area) / run
    if not folder.is_dir():
        present = ", ".join(list_runs(root, split)) or "none"
        raise DataNotFoundError(f"Run {run!r} not found: expected {folder}. Runs in split {split!r}: {present}.")
    return folder


def picks_dir(root: str | os.PathLike, run: str, split: str = "train") -> Path:
    """``ROOT/<split>/overlay/ExperimentRuns/<run>/Picks``, checked to exist."""
    folder = run_dir(root, run, split, area="overlay") / "Picks"
    if not folder.is_dir():
        raise DataNotFoundError(
            f"Run {run!r} has no picks: expected {folder}. {folder.parent} contains: {_listing(folder.parent)}."
        )
    return folder


def overlay_picks_dir(overlay_root: str | os.PathLike, run: str) -> Path:
    """``<overlay_root>/ExperimentRuns/<run>/Picks``: where copick keeps a run's picks under an overlay root."""
    return Path(overlay_root) / "ExperimentRuns" / run / "Picks"


def tomogram_path(
    root: str | os.PathLike, run: str, split: str = "train", kind: str = "denoised", voxel_spacing: float = 10.0
) -> Path:
    """Path of a run's tomogram: ``.../<run>/VoxelSpacing<spacing:.3f>/<kind>.zarr`` (or ``<kind>.mrc`` etc.).

    Args:
        root: Dataset root (holds ``train/``, ``test/``).
        run: Run name, e.g. ``"TS_5_4"``.
        split: ``"train"`` or ``"test"`` (any folder name under root).
        kind: Reconstruction type: ``denoised``, ``wbp``, ``ctfdeconvolved``, ``isonetcorrected``.
        voxel_spacing: The folder's nominal spacing in Å (10.0 -> ``VoxelSpacing10.000``). The true voxel
            size is read from the tomogram's metadata by :func:`cryopoint.io.read_tomogram`.

    Raises:
        DataNotFoundError: run, spacing folder or tomogram missing (lists the runs, spacings or kinds present).
    """
    spacing_dir = run_dir(root, run, split) / f"VoxelSpacing{voxel_spacing:.3f}"
    if not spacing_dir.is_dir():
        raise DataNotFoundError(
            f"No voxel spacing {voxel_spacing:.3f} for run {run!r}: expected {spacing_dir}. "
            f"Present: {_listing(spacing_dir.parent)}."
        )
    for suffix in (".zarr", *MRC_SUFFIXES):
        candidate = spacing_dir / f"{kind}{suffix}"
        if candidate.exists():
            return candidate
    raise DataNotFoundError(
        f"No {kind!r} tomogram for run {run!r}: expected {spacing_dir / (kind + '.zarr')}. "
        f"Present: {_listing(spacing_dir)}."
    )


def _select(files: dict[str, list[tuple[Path, dict]]], user_id: str | None, session_id: str | None) -> dict:
    chosen = {}
    for name, candidates in files.items():
        if user_id is not None:
            candidates = [c for c in candidates if str(c[1].get("user_id")) == str(user_id)]
        if session_id is not None:
            candidates = [c for c in candidates if str(c[1].get("session_id")) == str(session_id)]
        if len(candidates) > 1:
            curated = [c for c in candidates if c[1].get("user_id") == CURATION_USER]
            candidates = curated or candidates
        if len(candidates) > 1:
            listing = ", ".join(
                f"{p.name} (user {m.get('user_id')!r}, session {m.get('session_id')!r})" for p, m in candidates
            )
            raise PicksFormatError(
                f"Several picks files for {name!r}: {listing}. Pass user_id= and/or session_id= to choose one."
            )
        if candidates:
            chosen[name] = candidates[0]
    return chosen


def read_picks(
    root: str | os.PathLike,
    run: str,
    split: str = "train",
    user_id: str | None = None,
    session_id: str | None = None,
    *,
    unknown: str = "raise",
) -> pd.DataFrame:
    """All picks of one run as a picks table (``experiment = run``; ``score`` when every file has one).

    Reads ``Picks/<object>.json`` and ``Picks/<user>_<session>_<object>.json``; see the module docstring
    for how one file per particle type is chosen.

    Args:
        root: Dataset root.
        run: Run name.
        split: Split folder.
        user_id: Keep only files with this ``user_id``.
        session_id: Keep only files with this ``session_id``.
        unknown: ``"raise"`` on particle types outside the catalogue, or ``"skip"`` them (copick projects
            may hold other objects, e.g. membranes).

    Returns:
        Picks table with columns ``experiment, particle_type, x, y, z`` (Å) [+ ``score``], sorted by type.

    Raises:
        DataNotFoundError: no run or no picks folder (lists what exists).
        PicksFormatError: malformed file, or an ambiguous choice between files.
        UnknownParticleError: a file's particle type is not in the catalogue (with ``unknown="raise"``).
    """
    return _read_picks_folder(picks_dir(root, run, split), run, user_id, session_id, unknown)


def read_overlay_picks(
    overlay_root: str | os.PathLike,
    run: str,
    user_id: str | None = None,
    session_id: str | None = None,
    *,
    unknown: str = "raise",
) -> pd.DataFrame:
    """All picks of one run under a copick overlay root (``<overlay_root>/ExperimentRuns/<run>/Picks``).

    As :func:`read_picks` (same choice between files, same table), for the overlay root a copick project config
    names, e.g. the ``--overlay-root`` of ``tools/detect.py``.

    Raises:
        DataNotFoundError: the run has no picks folder there (lists what exists).
    """
    folder = overlay_picks_dir(overlay_root, run)
    if not folder.is_dir():
        near = _nearest_existing(folder)
        raise DataNotFoundError(
            f"No picks for run {run!r} under overlay root {overlay_root}: expected {folder}. "
            f"{near} contains: {_listing(near)}."
        )
    return _read_picks_folder(folder, run, user_id, session_id, unknown)


def _read_picks_folder(
    folder: Path, run: str, user_id: str | None, session_id: str | None, unknown: str
) -> pd.DataFrame:
    if unknown not in ("raise", "skip"):
        raise ValueError(f'unknown must be "raise" or "skip", got {unknown!r}.')
    files: dict[str, list[tuple[Path, dict]]] = {}
    tables: dict[Path, pd.DataFrame] = {}
    for path in sorted(folder.glob("*.json")):
        meta, table = read_copick_json(path, run=run)
        name = meta["pickable_object_name"]
        if name not in PARTICLE_NAMES:
            if unknown == "skip":
                continue
            raise UnknownParticleError(
                f"{path}: unknown particle type {name!r}. Valid names: {', '.join(PARTICLE_NAMES)}. "
                'Pass unknown="skip" to ignore other objects.'
            )
        files.setdefault(name, []).append((path, meta))
        tables[path] = table
    chosen = _select(files, user_id, session_id)
    parts = [tables[chosen[name][0]] for name in PARTICLE_NAMES if name in chosen]
    return concat_picks(parts)


def read_truth(
    root: str | os.PathLike,
    split: str = "train",
    runs: Sequence[str] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    *,
    unknown: str = "raise",
) -> pd.DataFrame:
    """Ground-truth picks of a whole split in one table (for scoring).

    Args:
        root: Dataset root.
        split: Split folder.
        runs: Runs to read; default: every run with a picks folder.
        user_id: As in :func:`read_picks`.
        session_id: As in :func:`read_picks`.
        unknown: As in :func:`read_picks` (``"skip"`` ignores other copick objects, e.g. membranes).

    Returns:
        Picks table over all runs (``experiment`` = run name), without ``score``.
    """
    if runs is None:
        overlay = _runs_root(Path(root), split, "overlay")
        list_runs(root, split)  # raises with a listing when the split is missing
        runs = sorted(p.parent.name for p in overlay.glob("*/Picks") if p.is_dir())
    parts = [read_picks(root, run, split, user_id, session_id, unknown=unknown) for run in runs]
    parts = [p.drop(columns="score", errors="ignore") for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty_picks()


def write_run_picks(
    root: str | os.PathLike,
    run: str,
    picks: pd.DataFrame,
    split: str = "train",
    user_id: str = CURATION_USER,
    session_id: str = "0",
    *,
    naming: str = "auto",
    particle_types: Iterable[str] = PARTICLE_NAMES,
    overwrite: bool = False,
) -> list[Path]:
    """Write a run's picks in the dataset layout (``ROOT/<split>/overlay/ExperimentRuns/<run>/Picks``).

    :func:`write_overlay_picks` with the overlay root ``ROOT/<split>/overlay``; the arguments are the same.
    """
    return write_overlay_picks(
        _runs_root(Path(root), split, "overlay").parent,
        run,
        picks,
        user_id,
        session_id,
        naming=naming,
        particle_types=particle_types,
        overwrite=overwrite,
    )


def write_overlay_picks(
    overlay_root: str | os.PathLike,
    run: str,
    picks: pd.DataFrame,
    user_id: str = CURATION_USER,
    session_id: str = "0",
    *,
    naming: str = "auto",
    particle_types: Iterable[str] = PARTICLE_NAMES,
    overwrite: bool = False,
) -> list[Path]:
    """Write a run's picks under a copick overlay root: one copick JSON per particle type, each atomically.

    The files land in ``<overlay_root>/ExperimentRuns/<run>/Picks/``, where a copick project whose config names
    ``overlay_root`` finds them.

    Args:
        overlay_root: The copick overlay root (holds ``ExperimentRuns/``; created as needed).
        run: Run name.
        picks: Picks table (Å); an ``experiment`` column, if present, must equal ``run``. A ``score`` column
            is written per point.
        user_id: copick ``user_id`` (``"curation"`` = ground truth).
        session_id: copick ``session_id`` (``"0"`` marks machine-made picks in copick).
        naming: ``"challenge"``: ``<object>.json``; ``"copick"``: ``<user>_<session>_<object>.json``;
            ``"auto"``: challenge names for ``user_id == "curation"``, copick names otherwise (so
            predictions never collide with the ground-truth files).
        particle_types: Types to write a file for, empty ones included (default: the whole catalogue, as
            the challenge ships six files per run).
        overwrite: Replace existing files. Without it, nothing is written if any target exists.

    Returns:
        The written paths.

    Raises:
        OutputExistsError: a target exists and ``overwrite`` is False.
        PicksFormatError, UnknownParticleError: invalid table.
    """
    if naming not in ("auto", "challenge", "copick"):
        raise ValueError(f'naming must be "auto", "challenge" or "copick", got {naming!r}.')
    check_picks_table(picks, need_experiment=False)
    if "experiment" in picks.columns:
        others = sorted(set(picks["experiment"]) - {run})
        if others:
            raise PicksFormatError(
                f"write_run_picks({run!r}) got picks of other runs too: {', '.join(map(str, others))}. "
                "Select the run's rows first (picks[picks.experiment == run])."
            )
    types = list(dict.fromkeys([*particle_types, *picks["particle_type"]]))
    for name in types:
        get_particle(name)
    plain = naming == "challenge" or (naming == "auto" and user_id == CURATION_USER)
    folder = overlay_picks_dir(overlay_root, run)
    targets = {t: folder / (f"{t}.json" if plain else f"{user_id}_{session_id}_{t}.json") for t in types}
    existing = [p.name for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{folder} already has {', '.join(existing)}; pass overwrite=True to replace them.")
    for name, path in targets.items():
        rows = picks[picks["particle_type"] == name]
        atomic_write_text(path, copick_json_text(rows, name, run, user_id, session_id), overwrite=True)
    return list(targets.values())


class TomogramsByRun(Mapping[str, Tomogram]):
    """Run name → tomogram of a dataset split, read on first access.

    Figures that need a few tomograms (the report's failure gallery and slices) can take a whole split without
    loading it: a full-size tomogram is ~290 MB, a test split has hundreds. Only the ``keep`` most recently used
    tomograms stay in memory.

    >>> tomos = TomogramsByRun("data", ["TS_5_4", "TS_69_2"])  # doctest: +SKIP
    >>> tomos["TS_5_4"].voxel_size  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        runs: Iterable[str],
        *,
        split: str = "train",
        kind: str = "denoised",
        keep: int = 2,
    ) -> None:
        self._root, self._split, self._kind, self._keep = Path(root), split, kind, max(1, keep)
        self._runs = list(dict.fromkeys(runs))
        self._cache: OrderedDict[str, Tomogram] = OrderedDict()

    def __getitem__(self, run: str) -> Tomogram:
        if run not in self._runs:
            raise KeyError(run)
        if run in self._cache:
            self._cache.move_to_end(run)
        else:
            self._cache[run] = read_tomogram(tomogram_path(self._root, run, split=self._split, kind=self._kind))
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return self._cache[run]

    def __contains__(self, run: object) -> bool:  # Mapping's default would read the tomogram to answer
        return run in self._runs

    def __iter__(self) -> Iterator[str]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)


def tomogram_geometries(
    root: str | os.PathLike,
    runs: Iterable[str],
    split: str = "train",
    kind: str = "denoised",
    *,
    missing: str = "skip",
) -> dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]]:
    """Run → ``(shape (Z, Y, X), voxel size (Å, z, y, x))`` of its tomogram, from the metadata only.

    What :func:`cryopoint.io.picks.check_picks_frame` needs to check picks against their tomograms without
    reading a voxel.

    Args:
        missing: ``"skip"`` runs without a tomogram, or ``"raise"`` (DataNotFoundError).
    """
    if missing not in ("skip", "raise"):
        raise ValueError(f'missing must be "skip" or "raise", got {missing!r}.')
    found = {}
    for run in runs:
        try:
            found[run] = tomogram_geometry(tomogram_path(root, run, split=split, kind=kind))
        except DataNotFoundError:
            if missing == "raise":
                raise
    return found
