"""RELION STAR picks files (through ``starfile``), RELION 4 and RELION 5 conventions.

How cryopoint's convention (``Å = index x voxel_size``, voxel centres at integer 0-based indices, see
:mod:`cryopoint.coords`) maps to RELION, per axis ``a`` in x, y, z with ``vs_a`` the voxel size and ``n_a``
the tomogram size in voxels along that axis:

* RELION 4 (``version=4``): ``rlnCoordinate<A> = Å_a / vs_a``, i.e. our 0-based voxel index along ``a``
  (pixels, unbinned by cryopoint: the pixel size is the tomogram's voxel size).
* RELION 5 (``version=5``): ``rlnCenteredCoordinate<A>Angst = Å_a - (n_a / 2) x vs_a``: Å relative to the
  tomogram centre, the centre being ``size / 2 x pixel size`` as RELION 5 defines it. So voxel index
  ``n_a / 2`` maps to 0 Å (for even ``n_a`` that is the first voxel past the middle).

Both versions write one ``data_particles`` block with ``rlnTomoName`` (the run), ``rlnClassNumber``
(catalogue label + 1, RELION classes are 1-based) and ``rlnAutopickFigureOfMerit`` (the score, when the
table has one): standard RELION labels only, so RELION reads the file and the particle type round-trips.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import starfile

from cryopoint.coords import as_voxel_size
from cryopoint.errors import DataNotFoundError, PicksFormatError, UnknownParticleError
from cryopoint.io.atomic import atomic_path, refuse_inputs
from cryopoint.io.picks import check_picks_table
from cryopoint.particles import PARTICLES, get_particle

__all__ = ["write_star", "read_star"]

_V4 = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_V5 = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_SCORE = "rlnAutopickFigureOfMerit"

PerRun = Any  # one value for every run, or a mapping run -> value


def _for_run(value: PerRun, run: str, what: str) -> Any:
    if isinstance(value, Mapping):
        if run not in value:
            raise PicksFormatError(f"No {what} for run {run!r}; given for: {', '.join(map(str, value))}.")
        return value[run]
    return value


def _xyz_vs(voxel_size: PerRun, run: str) -> np.ndarray:
    return np.asarray(as_voxel_size(_for_run(voxel_size, run, "voxel size"))[::-1])  # (x, y, z)


def _xyz_centre(shape: PerRun, voxel_size: PerRun, run: str) -> np.ndarray:
    if shape is None:
        raise PicksFormatError("RELION 5 coordinates are relative to the tomogram centre: pass shape=(z, y, x).")
    zyx = np.asarray(_for_run(shape, run, "shape"), dtype=np.float64)
    if zyx.shape != (3,):
        raise PicksFormatError(f"shape must be (z, y, x) voxels, got {zyx.tolist()}.")
    return zyx[::-1] / 2.0 * _xyz_vs(voxel_size, run)


def write_star(
    path: str | os.PathLike,
    picks: pd.DataFrame,
    version: int = 4,
    voxel_size: float | Sequence[float] | Mapping[str, Any] | None = None,
    shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write picks as a RELION STAR file, atomically.

    Args:
        path: Target ``.star``.
        picks: Picks table (``experiment, particle_type, x, y, z`` in Å, optional ``score``).
        version: 4 (``rlnCoordinateX/Y/Z``, pixels) or 5 (``rlnCenteredCoordinateX/Y/ZAngst``).
        voxel_size: Å per voxel (z, y, x) of the tomograms, or a mapping run -> voxel size. Required.
        shape: Tomogram shape (z, y, x) in voxels, or a mapping run -> shape. Required for version 5.
        overwrite: Replace an existing file.
        inputs: Paths this run reads from; writing over any of them is refused.

    Raises:
        VoxelSizeError: no voxel size. PicksFormatError: bad table or missing shape for version 5.
        OutputExistsError: the file exists and ``overwrite`` is False, or it is one of ``inputs``.
    """
    if version not in (4, 5):
        raise ValueError(f"RELION STAR version must be 4 or 5, got {version!r}.")
    check_picks_table(picks, source="STAR picks")
    refuse_inputs(path, inputs)
    picks = picks.reset_index(drop=True)
    xyz = picks[["x", "y", "z"]].to_numpy(dtype=np.float64)
    coords = np.empty_like(xyz)
    for run in picks["experiment"].unique():
        rows = (picks["experiment"] == run).to_numpy()
        if version == 4:
            coords[rows] = xyz[rows] / _xyz_vs(voxel_size, run)
        else:
            coords[rows] = xyz[rows] - _xyz_centre(shape, voxel_size, run)
    names = _V4 if version == 4 else _V5
    out = pd.DataFrame({"rlnTomoName": picks["experiment"].astype(str)})
    for i, col in enumerate(names):
        out[col] = coords[:, i]
    out["rlnClassNumber"] = [get_particle(n).label + 1 for n in picks["particle_type"]]
    if "score" in picks.columns:
        out[_SCORE] = picks["score"].to_numpy(dtype=np.float64)
    with atomic_path(path, overwrite=overwrite) as tmp:
        starfile.write({"particles": out}, tmp, float_format="%.6f")
    return Path(path)


def _particles_block(data: Any, path: Path) -> pd.DataFrame:
    blocks = data if isinstance(data, dict) else {"": data}
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and (set(_V4) <= set(block.columns) or set(_V5) <= set(block.columns)):
            return block
    found = {name: list(b.columns) for name, b in blocks.items() if isinstance(b, pd.DataFrame)}
    raise PicksFormatError(
        f"{path} has no particle block with {', '.join(_V4)} (RELION 4) or {', '.join(_V5)} (RELION 5). "
        f"Blocks found: {found or 'none'}."
    )


def read_star(
    path: str | os.PathLike,
    voxel_size: float | Sequence[float] | Mapping[str, Any] | None = None,
    shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    particle_type: str | None = None,
) -> pd.DataFrame:
    """Read a RELION 4 or 5 STAR picks file into a picks table (Å, cryopoint convention).

    The version is detected from the columns (RELION 4 coordinates win when both are present).

    Args:
        path: The ``.star`` file.
        voxel_size: As in :func:`write_star`; required for both versions.
        shape: As in :func:`write_star`; required for RELION 5.
        particle_type: Type for every row when the file has no ``rlnClassNumber`` (e.g. a file of one species).

    Returns:
        Picks table ``experiment, particle_type, x, y, z`` (+ ``score`` from ``rlnAutopickFigureOfMerit``).

    Raises:
        DataNotFoundError: the file does not exist.
        PicksFormatError: no coordinate block, no ``rlnTomoName``, no particle type.
        UnknownParticleError: a class number or ``particle_type`` outside the catalogue.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"STAR file {path} does not exist.")
    block = _particles_block(starfile.read(path, always_dict=True), path)
    if "rlnTomoName" not in block.columns:
        raise PicksFormatError(f"{path} has no rlnTomoName column: cannot tell which tomogram each pick is in.")
    version = 4 if set(_V4) <= set(block.columns) else 5
    coords = block[list(_V4 if version == 4 else _V5)].to_numpy(dtype=np.float64)
    runs = block["rlnTomoName"].astype(str).to_numpy()
    xyz = np.empty_like(coords)
    for run in np.unique(runs):
        rows = runs == run
        if version == 4:
            xyz[rows] = coords[rows] * _xyz_vs(voxel_size, run)
        else:
            xyz[rows] = coords[rows] + _xyz_centre(shape, voxel_size, run)
    if particle_type is not None:
        types = [get_particle(particle_type).name] * len(block)
    elif "rlnClassNumber" in block.columns:
        by_class = {p.label + 1: p.name for p in PARTICLES}
        unknown = sorted(set(int(c) for c in block["rlnClassNumber"]) - set(by_class))
        if unknown:
            raise UnknownParticleError(
                f"{path}: rlnClassNumber {unknown} matches no particle type; classes are "
                + ", ".join(f"{k}={v}" for k, v in by_class.items())
                + ". Pass particle_type= for a file of one species."
            )
        types = [by_class[int(c)] for c in block["rlnClassNumber"]]
    else:
        raise PicksFormatError(f"{path} has no rlnClassNumber: pass particle_type= to name the species.")
    table = pd.DataFrame({"experiment": runs, "particle_type": types, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    if _SCORE in block.columns:
        table["score"] = block[_SCORE].to_numpy(dtype=np.float64)
    return table
