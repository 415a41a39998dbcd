"""Any copick project, through the copick package itself (``pip install 'cryopoint[copick]'``).

A copick project is a config file (``project.json``) that names where its runs, tomograms and picks live (local
folders, a CZ cryoET Data Portal dataset, object storage...). These helpers open it with ``copick.from_file`` and
read or write picks with copick's own API, so they work for every project copick can open, not only the challenge's
folder layout (for that, :mod:`cryopoint.io.layout` needs no copick).

Picks tables are cryopoint's (``experiment`` = copick run name, ``particle_type`` = copick object name, ``x, y, z``
in Å, optional ``score``). Reading takes each point's full position (location plus the translation of its
transform, copick's ``full_positions``); files whose ``unit`` is not ``angstrom`` are refused. Choosing among
several picks of one object follows :mod:`cryopoint.io.layout`: ``user_id`` / ``session_id`` filter, then
``curation`` wins, else the choice is ambiguous and an error lists the candidates.

copick is imported only when a helper is called: without it, :class:`~cryopoint.errors.MissingDependencyError`
says what to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryopoint.errors import (
    DataNotFoundError,
    MissingDependencyError,
    OutputExistsError,
    PicksFormatError,
    UnknownParticleError,
)
from cryopoint.io.picks import check_picks_table, concat_picks
from cryopoint.particles import PARTICLE_NAMES

__all__ = [
    "open_copick",
    "copick_runs",
    "copick_tomogram_paths",
    "read_copick_picks",
    "write_copick_picks",
]

CopickConfig = Any  # a config path, or a root that copick.from_file returned
CURATION_USER = "curation"


def open_copick(config: str | os.PathLike | Any) -> Any:
    """The copick root of a project: ``config`` is the path of its config JSON, or an already opened root.

    Raises:
        MissingDependencyError: copick is not installed.
        DataNotFoundError: the config file does not exist.
    """
    if not isinstance(config, (str, os.PathLike)):
        return config
    try:
        import copick
    except ImportError:
        raise MissingDependencyError(
            "Reading a copick project config needs the copick package: pip install 'cryopoint[copick]' "
            "(without copick, --root/--overlay-root read and write the challenge/copick folder layout)."
        ) from None
    path = Path(config)
    if not path.is_file():
        raise DataNotFoundError(f"copick config {path} does not exist; pass the project's JSON config file.")
    return copick.from_file(str(path))


def _run(root: Any, name: str) -> Any:
    run = root.get_run(name)
    if run is None:
        present = ", ".join(sorted(r.name for r in root.runs)) or "none"
        raise DataNotFoundError(f"The copick project has no run {name!r}; its runs: {present}.")
    return run


def copick_runs(config: CopickConfig) -> list[str]:
    """Names of the runs of a copick project, sorted."""
    return sorted(r.name for r in open_copick(config).runs)


def _local_path(tomogram: Any) -> Path | None:
    """The local folder of a copick tomogram, or None when it is not on this machine's filesystem."""
    read_only = getattr(tomogram, "read_only", False)
    fs = getattr(tomogram, "fs_static" if read_only else "fs_overlay", None)
    path = getattr(tomogram, "static_path" if read_only else "overlay_path", None)
    protocols = getattr(fs, "protocol", ())
    protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
    if path is None or not ({"file", "local"} & set(protocols)):
        return None
    return Path(path)


def copick_tomogram_paths(
    config: CopickConfig, runs: Sequence[str] = (), tomo_type: str = "denoised", voxel_spacing: float | None = None
) -> dict[str, Path | str]:
    """``{run: local tomogram path}`` of a copick project, for batch detection (:func:`cryopoint.batch.run_batch`).

    A run whose tomogram cannot be had maps to the message saying why, so that run fails alone, as in
    :func:`cryopoint.batch.runs_from_root`.

    Args:
        config: Path of the copick config, or an opened root.
        runs: Runs to take (default: every run of the project).
        tomo_type: Reconstruction (copick ``tomo_type``), e.g. ``denoised``, ``wbp``.
        voxel_spacing: copick voxel spacing in Å; default: the run's only one (an error when it has several).
    """
    root = open_copick(config)
    found: dict[str, Path | str] = {}
    for name in list(runs) or copick_runs(root):
        try:
            run = _run(root, name)
            spacings = {float(vs.voxel_size): vs for vs in run.voxel_spacings}
            if voxel_spacing is None and len(spacings) != 1:
                raise DataNotFoundError(
                    f"Run {name!r} has voxel spacings {sorted(spacings) or 'none'}; choose one (--voxel-spacing)."
                )
            spacing = spacings.get(float(voxel_spacing)) if voxel_spacing is not None else next(iter(spacings.values()))
            if spacing is None:
                raise DataNotFoundError(
                    f"Run {name!r} has no voxel spacing {voxel_spacing}; present: {sorted(spacings)}."
                )
            tomograms = spacing.get_tomograms(tomo_type)
            if not tomograms:
                kinds = sorted({t.tomo_type for t in spacing.tomograms}) or "none"
                raise DataNotFoundError(f"Run {name!r} has no {tomo_type!r} tomogram; present: {kinds}.")
            path = _local_path(tomograms[0])
            if path is None:
                raise DataNotFoundError(
                    f"The {tomo_type!r} tomogram of run {name!r} is not on this machine's filesystem; cryopoint reads "
                    "tomograms from local copick projects (copy or mount the data, or pass --files)."
                )
            found[name] = path
        except DataNotFoundError as exc:
            found[name] = str(exc)
    return found


def _choose(candidates: list[Any], name: str, run: str) -> Any:
    """One of the picks of one object (already filtered by user and session): the only one, or curation's."""
    if len(candidates) > 1:
        candidates = [p for p in candidates if p.user_id == CURATION_USER] or candidates
    if len(candidates) > 1:
        listing = ", ".join(f"(user {p.user_id!r}, session {p.session_id!r})" for p in candidates)
        raise PicksFormatError(
            f"Run {run!r} has several picks of {name!r}: {listing}. Pass user_id= and/or session_id= to choose one."
        )
    return candidates[0]


def _table(picks: Any, run: str) -> pd.DataFrame:
    points = picks.points or []  # loads the stored file: until then copick's meta holds only the name's fields
    unit = getattr(picks.meta, "unit", "angstrom") or "angstrom"
    if str(unit).lower() not in ("angstrom", "å", "a"):
        raise PicksFormatError(
            f"Picks of {picks.pickable_object_name!r} in run {run!r} (user {picks.user_id!r}, session "
            f"{picks.session_id!r}) are in {unit!r}, not angstrom; convert them to Å first."
        )
    xyz = picks.full_positions().reshape(-1, 3) if points else np.zeros((0, 3))
    table = pd.DataFrame(
        {
            "experiment": pd.Series([run] * len(points), dtype=str),
            "particle_type": pd.Series([picks.pickable_object_name] * len(points), dtype=str),
            "x": xyz[:, 0].astype(np.float64),
            "y": xyz[:, 1].astype(np.float64),
            "z": xyz[:, 2].astype(np.float64),
        }
    )
    if points and all(getattr(p, "score", None) is not None for p in points):
        table["score"] = np.array([float(p.score) for p in points], dtype=np.float64)
    return table


def read_copick_picks(
    config: CopickConfig,
    runs: str | Sequence[str] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    *,
    unknown: str = "raise",
) -> pd.DataFrame:
    """Picks of a copick project as one picks table, read through copick's API.

    Args:
        config: Path of the copick config, or an opened root.
        runs: One run, several, or None for every run of the project.
        user_id: Keep only picks with this ``user_id``.
        session_id: Keep only picks with this ``session_id``.
        unknown: ``"raise"`` on objects outside cryopoint's catalogue, or ``"skip"`` them (membranes etc.).

    Returns:
        Picks table ``experiment, particle_type, x, y, z`` (Å) [+ ``score`` when every point has one].

    Raises:
        MissingDependencyError: copick is not installed. DataNotFoundError: no such run.
        PicksFormatError: picks not in Å, or an ambiguous choice. UnknownParticleError: see ``unknown``.
    """
    if unknown not in ("raise", "skip"):
        raise ValueError(f'unknown must be "raise" or "skip", got {unknown!r}.')
    root = open_copick(config)
    names = [runs] if isinstance(runs, str) else list(runs) if runs is not None else copick_runs(root)
    parts = []
    for name in names:
        run = _run(root, name)
        by_object: dict[str, list[Any]] = {}
        for picks in run.picks:
            if user_id is not None and str(picks.user_id) != str(user_id):
                continue
            if session_id is not None and str(picks.session_id) != str(session_id):
                continue
            by_object.setdefault(picks.pickable_object_name, []).append(picks)
        for obj in sorted(by_object):
            if obj not in PARTICLE_NAMES:
                if unknown == "skip":
                    continue
                raise UnknownParticleError(
                    f"Run {name!r} has picks of {obj!r}, which is not one of cryopoint's particle types "
                    f'({", ".join(PARTICLE_NAMES)}). Pass unknown="skip" to ignore other objects.'
                )
            parts.append(_table(_choose(by_object[obj], obj, name), name))
    return concat_picks(parts)


def write_copick_picks(
    config: CopickConfig,
    picks: pd.DataFrame,
    user_id: str = "cryopoint",
    session_id: str = "0",
    *,
    runs: Iterable[str] | None = None,
    overwrite: bool = False,
) -> list[Any]:
    """Write a picks table into a copick project through copick's API: one picks object per run and type.

    Every particle type of cryopoint's catalogue that the project declares as a pickable object gets a picks
    object in each run, empty ones included (so a rerun leaves no stale picks); ``score`` is stored per point
    when the table has it. ``session_id`` ``"0"`` marks machine-made picks in copick.

    Args:
        config: Path of the copick config, or an opened root.
        picks: Picks table with ``experiment`` = run name (Å).
        user_id: copick ``user_id`` of the new picks.
        session_id: copick ``session_id``.
        runs: Runs to write (default: those in ``picks``); a run without picks gets empty picks objects.
        overwrite: Replace existing picks of this user and session. Without it nothing is written if any exist.

    Returns:
        The copick picks objects written.

    Raises:
        DataNotFoundError: a run is not in the project. UnknownParticleError: the table has a type the project
        does not declare. OutputExistsError: picks of this user and session exist and ``overwrite`` is False.
    """
    check_picks_table(picks)
    root = open_copick(config)
    names = list(dict.fromkeys([*(runs or []), *picks["experiment"].astype(str)]))
    declared = {o.name for o in root.pickable_objects}
    missing = sorted(set(picks["particle_type"]) - declared)
    if missing:
        raise UnknownParticleError(
            f"The copick project declares no pickable object {', '.join(missing)} (it has "
            f"{', '.join(sorted(declared)) or 'none'}); add them to its config's pickable_objects."
        )
    types = [t for t in PARTICLE_NAMES if t in declared]
    targets = [(_run(root, name), t) for name in names for t in types]  # every run checked before writing any
    existing = [(r.name, t) for r, t in targets if r.get_picks(object_name=t, user_id=user_id, session_id=session_id)]
    if existing and not overwrite:
        listing = ", ".join(f"{r}/{t}" for r, t in existing[:10])
        raise OutputExistsError(
            f"The copick project already has picks of user {user_id!r}, session {session_id!r}: {listing}; "
            "pass overwrite=True (CLI: --overwrite) to replace them."
        )
    written = []
    for run, name in targets:
        rows = picks[(picks["experiment"].astype(str) == run.name) & (picks["particle_type"] == name)]
        obj = run.new_picks(name, session_id, user_id, exist_ok=True)
        scores = rows["score"].to_numpy(dtype=np.float64) if "score" in rows.columns else None
        obj.from_numpy(rows[["x", "y", "z"]].to_numpy(dtype=np.float64).reshape(-1, 3), scores=scores)
        written.append(obj)
    return written
