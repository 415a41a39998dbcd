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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryopoint.coords import angstrom_to_voxel
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
    "check_picks_table",
    "read_copick_json",
    "copick_json_text",
    "write_copick_json",
    "check_points_in_volume",
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


def read_copick_json(path: str | os.PathLike, run: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Read one copick picks file.

    Args:
        path: The JSON file.
        run: Run name for the ``experiment`` column; defaults to the file's ``run_name``.

    Returns:
        ``(meta, picks)``: the file's top-level fields except ``points``, and a picks table (``score``
        column only when every point has one). The particle type is ``pickable_object_name``, or the file
        name's last ``_``-separated part when that field is missing.

    Raises:
        DataNotFoundError: the file does not exist.
        PicksFormatError: not valid JSON, not an object, no ``points`` list, or a malformed point.
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
    experiment = run if run is not None else meta.get("run_name") or ""
    points = doc["points"]
    xyz = np.array([_point_xyz(p, path, i) for i, p in enumerate(points)], dtype=np.float64).reshape(-1, 3)
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
    zyx = angstrom_to_voxel(picks[["x", "y", "z"]].to_numpy(dtype=np.float64), tomogram.voxel_size)
    tol = 1e-6  # voxels: points exactly on the outer faces count as inside despite rounding
    upper = np.asarray(tomogram.shape, dtype=np.float64) - 0.5 + tol
    inside = np.all((zyx >= -0.5 - tol) & (zyx <= upper), axis=1)
    n_out = int((~inside).sum())
    if not n_out:
        return picks
    extent = ", ".join(
        f"{a}: [{-0.5 * v:.1f}, {(n - 0.5) * v:.1f}]"
        for a, n, v in zip("xyz", tomogram.shape[::-1], tomogram.voxel_size[::-1])
    )
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
