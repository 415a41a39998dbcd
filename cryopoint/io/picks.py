"""Picks tables and copick picks JSON files.

A picks table (see ``docs/design.md``) is a DataFrame with ``experiment`` (run name), ``particle_type``
(catalogue name), ``x, y, z`` (Å, x/y/z order) and optionally ``score``. A copick picks file holds one
particle type of one run::

    {"pickable_object_name": "apo-ferritin", "user_id": "curation", "session_id": "0", "run_name": "TS_5_4",
     "voxel_spacing": null, "unit": "angstrom", "trust_orientation": true,
     "points": [{"location": {"x": 468.5, "y": 5915.9, "z": 604.2},
                 "transformation_": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]], "instance_id": 0}]}

A point's position is its ``location`` plus the translation column of its ``transformation_`` (identity in
the challenge files and in everything cryopoint writes).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryopoint.coords import angstroms_per_unit, as_voxel_size, looks_like_voxels, outside_volume
from cryopoint.errors import (
    DataNotFoundError,
    PicksFormatError,
    PointsOutsideVolumeError,
    PointsOutsideVolumeWarning,
    UnknownParticleError,
)
from cryopoint.io.atomic import atomic_write_text, refuse_inputs
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.tomogram import Tomogram

__all__ = [
    "PICKS_COLUMNS",
    "empty_picks",
    "concat_picks",
    "check_picks_table",
    "read_copick_json",
    "copick_json_text",
    "write_copick_json",
    "check_points_in_volume",
    "check_picks_frame",
]

#: Required columns of a picks table, in order.
PICKS_COLUMNS: tuple[str, ...] = ("experiment", "particle_type", "x", "y", "z")
_IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def empty_picks(with_score: bool = False) -> pd.DataFrame:
    """An empty picks table with the right columns and dtypes."""
    cols: dict[str, Any] = {
        "experiment": pd.Series([], dtype=str),
        "particle_type": pd.Series([], dtype=str),
        **{c: pd.Series([], dtype=np.float64) for c in "xyz"},
    }
    if with_score:
        cols["score"] = pd.Series([], dtype=np.float64)
    return pd.DataFrame(cols)


def concat_picks(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One picks table from per-type tables: empty ones dropped; ``score`` kept only if every table has it."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_picks()
    if not all("score" in p.columns for p in parts):
        parts = [p.drop(columns="score", errors="ignore") for p in parts]
    return pd.concat(parts, ignore_index=True)


def check_picks_table(picks: pd.DataFrame, *, need_experiment: bool = True, source: str = "picks") -> pd.DataFrame:
    """Validate a picks table: required columns, finite Å coordinates, catalogue particle names.

    Returns:
        ``picks`` unchanged.

    Raises:
        PicksFormatError: missing columns or non-finite coordinates.
        UnknownParticleError: a particle type is not in the catalogue (the message lists the valid names).
    """
    need = PICKS_COLUMNS if need_experiment else PICKS_COLUMNS[1:]
    missing = [c for c in need if c not in picks.columns]
    if missing:
        raise PicksFormatError(
            f"{source} lacks column(s) {', '.join(missing)}; a picks table needs {', '.join(need)} "
            f"(x, y, z in Å). Columns present: {', '.join(map(str, picks.columns)) or 'none'}."
        )
    try:
        xyz = picks[["x", "y", "z"]].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PicksFormatError(f"{source}: x, y, z must be numbers (Å): {exc}") from exc
    if not np.all(np.isfinite(xyz)):
        raise PicksFormatError(f"{source} has NaN/Inf coordinates in {int((~np.isfinite(xyz)).any(1).sum())} rows.")
    unknown = sorted(set(picks["particle_type"]) - set(PARTICLE_NAMES), key=str)
    if unknown:
        raise UnknownParticleError(
            f"{source} has unknown particle type(s) {', '.join(map(repr, unknown))}. "
            f"Valid names: {', '.join(PARTICLE_NAMES)}."
        )
    return picks


def _point_xyz(point: Any, path: Path, i: int) -> tuple[float, float, float]:
    try:
        loc = point["location"]
        xyz = np.array([float(loc[k]) for k in "xyz"])
    except (KeyError, TypeError, ValueError) as err:
        raise PicksFormatError(
            f"{path}: point {i} has no valid location ({type(err).__name__}: {err}); each point needs "
            '"location": {"x": Å, "y": Å, "z": Å}.'
        ) from None
    transform = point.get("transformation_")
    if transform is not None:
        mat = np.asarray(transform, dtype=np.float64)
        if mat.shape != (4, 4):
            raise PicksFormatError(f"{path}: point {i} has a transformation_ of shape {mat.shape}, expected 4x4.")
        xyz = xyz + mat[:3, 3]
    if not np.all(np.isfinite(xyz)):
        raise PicksFormatError(f"{path}: point {i} has a non-finite location {xyz.tolist()}.")
    return float(xyz[0]), float(xyz[1]), float(xyz[2])


_PIXEL_UNITS = ("pixel", "pixels", "px", "voxel", "voxels")


def _angstroms_per_file_unit(
    meta: dict[str, Any], path: Path, voxel_size: float | Sequence[float] | None
) -> np.ndarray:
    """Å per unit of the file's positions, along x, y, z: from its ``unit`` (copick's default: angstrom)."""
    unit = meta.get("unit")
    if unit is None:
        return np.ones(3)
    if str(unit).strip().lower() in _PIXEL_UNITS:
        spacing = meta.get("voxel_spacing")
        if spacing is not None:
            try:
                return np.asarray(as_voxel_size(float(spacing)))[::-1].copy()
            except (TypeError, ValueError):
                raise PicksFormatError(
                    f'{path} gives positions in unit {unit!r} with an invalid "voxel_spacing" {spacing!r}: set it '
                    "to the Å per voxel of the tomogram the picks were made on."
                ) from None
        if voxel_size is None:
            raise PicksFormatError(
                f'{path} gives its positions in unit {unit!r} (voxels), and has no "voxel_spacing" saying how large '
                "a voxel is. Pass voxel_size=<Å per voxel of the tomogram the picks were made on>, or set "
                '"voxel_spacing" in the file; cryopoint does not guess.'
            )
        return np.asarray(as_voxel_size(voxel_size))[::-1].copy()
    factor = angstroms_per_unit(unit)
    if factor is None:
        raise PicksFormatError(
            f"{path} gives its positions in unit {unit!r}, which cryopoint cannot convert to Å. Use angstrom "
            '(copick\'s default), another length unit (nanometer, ...), or "pixel" with "voxel_spacing".'
        )
    return np.full(3, factor)


def read_copick_json(
    path: str | os.PathLike, run: str | None = None, *, voxel_size: float | Sequence[float] | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Read one copick picks file, positions converted to Å.

    Positions are in the file's ``unit``: ``angstrom`` (copick's default, also when absent), another length
    unit (converted), or ``pixel`` (multiplied by the file's ``voxel_spacing``, else by ``voxel_size``,
    else refused).

    Args:
        path: The JSON file.
        run: Run name for the ``experiment`` column (the run whose folder holds the file); defaults to the
            file's ``run_name``. A file whose ``run_name`` names another run is refused.
        voxel_size: Å per voxel (one value or z, y, x) of the tomogram the picks were made on, used for a
            file in pixels without its own ``voxel_spacing``.

    Returns:
        ``(meta, picks)``: the file's top-level fields except ``points``, and a picks table in Å (``score``
        column only when every point has one). The particle type is ``pickable_object_name``, or the file
        name's last ``_``-separated part when that field is missing.

    Raises:
        DataNotFoundError: the file does not exist.
        PicksFormatError: not valid JSON, not an object, no ``points`` list, a malformed point, a unit that
            cannot be converted to Å, or a ``run_name`` other than ``run``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Picks file {path} does not exist.")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicksFormatError(f"{path} is not valid JSON: {err}. Fix or remove the file.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("points"), list):
        raise PicksFormatError(
            f'{path} is not a copick picks file: expected a JSON object with a "points" list '
            f"(keys present: {', '.join(doc) if isinstance(doc, dict) else type(doc).__name__})."
        )
    meta = {k: v for k, v in doc.items() if k != "points"}
    name = meta.get("pickable_object_name") or path.stem.rsplit("_", 1)[-1]
    meta["pickable_object_name"] = name
    own_run = meta.get("run_name")
    if run is not None and own_run not in (None, "") and str(own_run) != str(run):
        raise PicksFormatError(
            f"{path} lies in run {run!r}'s folder but says run_name {own_run!r}: its positions are probably in "
            f"the frame of {own_run!r}'s tomogram (a file copied between runs, or a renamed run folder). Move it "
            f"to {own_run!r}'s Picks folder, or, if the points belong to {run!r}, set its run_name to {run!r}."
        )
    experiment = run if run is not None else own_run or ""
    points = doc["points"]
    xyz = np.array([_point_xyz(p, path, i) for i, p in enumerate(points)], dtype=np.float64).reshape(-1, 3)
    xyz = xyz * _angstroms_per_file_unit(meta, path, voxel_size)
    table = pd.DataFrame(
        {
            "experiment": pd.Series([experiment] * len(points), dtype=str),
            "particle_type": pd.Series([name] * len(points), dtype=str),
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
        }
    )
    if points and all(isinstance(p, dict) and p.get("score") is not None for p in points):
        table["score"] = np.array([float(p["score"]) for p in points], dtype=np.float64)
    return meta, table


def copick_json_text(picks: pd.DataFrame, particle_type: str, run: str, user_id: str, session_id: str) -> str:
    """The copick JSON text for the rows of ``picks`` (one particle type of one run).

    Each point gets its ``location`` (Å), an identity ``transformation_``, ``instance_id`` 0..N-1 and a
    ``score`` when ``picks`` has a ``score`` column.
    """
    get_particle(particle_type)
    has_score = "score" in picks.columns
    points = []
    for i, row in enumerate(picks.itertuples(index=False)):
        point: dict[str, Any] = {
            "location": {k: float(getattr(row, k)) for k in "xyz"},
            "transformation_": _IDENTITY,
            "instance_id": i,
        }
        if has_score:
            point["score"] = float(row.score)
        points.append(point)
    doc = {
        "pickable_object_name": particle_type,
        "user_id": user_id,
        "session_id": str(session_id),
        "run_name": run,
        "voxel_spacing": None,
        "unit": "angstrom",
        "trust_orientation": True,
        "points": points,
    }
    return json.dumps(doc, indent=1)


def write_copick_json(
    path: str | os.PathLike,
    picks: pd.DataFrame,
    particle_type: str,
    run: str,
    *,
    user_id: str = "curation",
    session_id: str = "0",
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write the ``particle_type`` rows of ``picks`` as one copick picks file, atomically.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False, or it is one of ``inputs``.
        UnknownParticleError: ``particle_type`` is not in the catalogue.
    """
    check_picks_table(picks, need_experiment=False)
    refuse_inputs(path, inputs)
    rows = picks[picks["particle_type"] == particle_type]
    return atomic_write_text(path, copick_json_text(rows, particle_type, run, user_id, session_id), overwrite=overwrite)


def check_points_in_volume(picks: pd.DataFrame, tomogram: Tomogram, on_outside: str = "raise") -> pd.DataFrame:
    """Check that every pick lies inside the tomogram's volume.

    A point is inside when its voxel position (``Å / voxel_size``, :func:`cryopoint.coords.angstrom_to_voxel`)
    is within ``[-0.5, size - 0.5]`` along each axis, i.e. inside the outermost voxels' extent.

    Args:
        picks: Picks table (x, y, z in Å).
        tomogram: The tomogram the picks belong to.
        on_outside: ``"raise"`` (PointsOutsideVolumeError) or ``"drop"`` (drop them and warn with
            PointsOutsideVolumeWarning).

    Returns:
        ``picks`` (all inside) or the rows inside.
    """
    if on_outside not in ("raise", "drop"):
        raise ValueError(f'on_outside must be "raise" or "drop", got {on_outside!r}.')
    inside = ~outside_volume(picks[["x", "y", "z"]].to_numpy(dtype=np.float64), tomogram.shape, tomogram.voxel_size)
    n_out = int((~inside).sum())
    if not n_out:
        return picks
    extent = _angstrom_range(tomogram.shape, tomogram.voxel_size)
    first = picks.loc[~inside, ["x", "y", "z"]].iloc[0].to_dict()
    message = (
        f"{n_out} of {len(picks)} picks lie outside tomogram {tomogram.name or tomogram.path} "
        f"(shape z, y, x {tomogram.shape}, voxel size {tomogram.voxel_size} Å, Å range {extent}); first: {first}. "
        "Check the voxel size and that coordinates are in Å (not voxels)."
    )
    if on_outside == "raise":
        raise PointsOutsideVolumeError(message)
    warnings.warn(f"Dropping them. {message}", PointsOutsideVolumeWarning, stacklevel=2)
    return picks[inside]


def _angstrom_range(shape: Sequence[int], voxel_size: Sequence[float]) -> str:
    return ", ".join(
        f"{a}: [{-0.5 * v:.1f}, {(n - 0.5) * v:.1f}]" for a, n, v in zip("xyz", shape[::-1], voxel_size[::-1])
    )


def check_picks_frame(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    geometry: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    *,
    outside: str = "warn",
) -> None:
    """Check that predictions and truth are in the Å frame of their tomograms before scoring them.

    Scoring picks in the wrong frame gives 0 without an error; this catches the usual causes, per run:

    * predictions that look like voxel indices (:func:`cryopoint.coords.looks_like_voxels`: all within the
      tomogram's size in voxels while the truth lies beyond): refused when every run checked looks so, else
      a warning names the runs;
    * truth or predictions outside the tomogram (:func:`cryopoint.coords.outside_volume`): truth there can
      only count as misses, predictions there only as false positives; counted per run.

    Args:
        predictions: Picks table (``experiment``, ``x, y, z`` Å).
        truth: Ground-truth picks table.
        geometry: Run → ``(shape (Z, Y, X), voxel size (Å, z, y, x))`` of its tomogram
            (:func:`cryopoint.io.tomograms.tomogram_geometry`); runs missing here are not checked.
        outside: ``"warn"`` (UserWarning) or ``"raise"`` (PointsOutsideVolumeError) for points outside.

    Raises:
        PicksFormatError: the predictions look like voxels in every run checked.
        PointsOutsideVolumeError: points outside their tomogram and ``outside="raise"``.
    """
    if outside not in ("warn", "raise"):
        raise ValueError(f'outside must be "warn" or "raise", got {outside!r}.')

    def rows(table: pd.DataFrame, run: str) -> np.ndarray:
        return table.loc[table["experiment"] == run, ["x", "y", "z"]].to_numpy(dtype=np.float64)

    voxel_like, checked, out_lines = [], [], []
    for run in sorted(geometry):
        shape, vs = geometry[run]
        pred, true = rows(predictions, run), rows(truth, run)
        if len(pred) and len(true):
            checked.append(run)
            if looks_like_voxels(pred, true, shape, vs):
                size = ", ".join(f"{a} <= {n}" for a, n in zip("xyz", shape[::-1]))
                box = np.asarray(shape[::-1], dtype=np.float64) * 1.01  # as looks_like_voxels counts
                beyond = int((~np.all((true >= -1.0) & (true <= box), axis=1)).sum())
                voxel_like.append(
                    f"{run}: all {len(pred)} predictions lie within {size} (the tomogram's size in voxels, "
                    f"voxel size {vs[-1]:.4g} Å) while {beyond} of {len(true)} true particles lie beyond"
                )
        for what, xyz in (("true particles", true), ("predictions", pred)):
            n_out = int(outside_volume(xyz, shape, vs).sum()) if len(xyz) else 0
            if n_out:
                out_lines.append(
                    f"{run}: {n_out} of {len(xyz)} {what} lie outside its tomogram (Å range "
                    f"{_angstrom_range(shape, vs)})"
                )
    if voxel_like:
        message = (
            "Coordinates look like voxels: multiply by the voxel size to get Å (x, y, z). "
            + "; ".join(voxel_like)
            + "."
        )
        if len(voxel_like) == len(checked):
            raise PicksFormatError(message)
        warnings.warn(f"In {len(voxel_like)} of {len(checked)} runs: {message}", UserWarning, stacklevel=2)
    if out_lines:
        message = (
            "Points outside their tomogram (true particles there count as misses, predictions as false "
            "positives): " + "; ".join(out_lines) + ". Check the voxel size, that positions are in Å from "
            "voxel 0 (not voxels, not centred), and that each run's picks belong to its tomogram."
        )
        if outside == "raise":
            raise PointsOutsideVolumeError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
