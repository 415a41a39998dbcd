"""RELION STAR picks files (through ``starfile``), RELION 4 and RELION 5 conventions.

How cryopoint's convention (``Å = index x voxel_size``, voxel centres at integer 0-based indices, see
:mod:`cryopoint.coords`) maps to RELION, per axis ``a`` in x, y, z with ``vs_a`` the voxel size and ``n_a``
the tomogram size in voxels along that axis:

* RELION 4 (``version=4``): ``rlnCoordinate<A> = Å_a / px``, pixels of size ``px`` = the run's voxel size (so
  our 0-based voxel index along ``a``; for anisotropic voxels ``px`` is the smallest of the three). ``px`` is
  written as ``rlnTomoTiltSeriesPixelSize`` in a ``data_optics`` block, one optics group per run
  (``rlnOpticsGroup``, ``rlnOpticsGroupName`` = the run), as RELION 4/5 tomography files state the unit of
  ``rlnCoordinate<A>``: converters such as copick's read ``Å = rlnCoordinate x rlnTomoTiltSeriesPixelSize`` instead
  of guessing tilt-series vs tomogram pixels. (For RELION itself, whose tomograms.star gives the tilt series' own
  pixel size, multiply the coordinates by ``px / tilt-series pixel size``, or use RELION 5 output.)
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
_PIXEL = "rlnTomoTiltSeriesPixelSize"
_GROUP = "rlnOpticsGroup"
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


def _pixel_size(voxel_size: PerRun, run: str) -> float:
    """The one pixel size (Å) that RELION 4 coordinates of ``run`` are written in: its (smallest) voxel size."""
    return float(min(as_voxel_size(_for_run(voxel_size, run, "voxel size"))))


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
    groups = np.zeros(len(picks), dtype=np.int64)
    optics = []
    for group, run in enumerate(picks["experiment"].unique(), start=1):
        rows = (picks["experiment"] == run).to_numpy()
        if version == 4:
            pixel = _pixel_size(voxel_size, run)
            coords[rows] = xyz[rows] / pixel
            groups[rows] = group
            optics.append({_GROUP: group, "rlnOpticsGroupName": str(run), _PIXEL: pixel})
        else:
            coords[rows] = xyz[rows] - _xyz_centre(shape, voxel_size, run)
    names = _V4 if version == 4 else _V5
    out = pd.DataFrame({"rlnTomoName": picks["experiment"].astype(str)})
    for i, col in enumerate(names):
        out[col] = coords[:, i]
    out["rlnClassNumber"] = [get_particle(n).label + 1 for n in picks["particle_type"]]
    if "score" in picks.columns:
        out[_SCORE] = picks["score"].to_numpy(dtype=np.float64)
    blocks = {"particles": out}
    if version == 4:
        out[_GROUP] = groups
        optics_table = pd.DataFrame(optics, columns=[_GROUP, "rlnOpticsGroupName", _PIXEL])
        blocks = {"optics": optics_table, "particles": out}
    with atomic_path(path, overwrite=overwrite) as tmp:
        starfile.write(blocks, tmp, float_format="%.6f")
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


def _stated_pixel_sizes(blocks: Any, particles: pd.DataFrame, path: Path) -> np.ndarray | None:
    """Per-particle ``rlnTomoTiltSeriesPixelSize`` (Å) from the file's optics block, or None when it states none."""
    optics = next(
        (b for b in blocks.values() if isinstance(b, pd.DataFrame) and _PIXEL in b.columns and b is not particles),
        None,
    )
    if optics is None or not len(optics):
        return None
    sizes = optics[_PIXEL].to_numpy(dtype=np.float64)
    if len(optics) == 1:
        return np.full(len(particles), sizes[0])
    for key in (_GROUP, "rlnOpticsGroupName"):
        if key in particles.columns and key in optics.columns:
            lookup = dict(zip(optics[key].astype(str), sizes))
            keys = particles[key].astype(str)
            unknown = sorted(set(keys) - set(lookup))
            if unknown:
                raise PicksFormatError(f"{path}: particles refer to optics groups {unknown} missing from data_optics.")
            return np.array([lookup[k] for k in keys], dtype=np.float64)
    raise PicksFormatError(f"{path}: several optics groups, but the particles have no {_GROUP} saying which.")


def read_star(
    path: str | os.PathLike,
    voxel_size: float | Sequence[float] | Mapping[str, Any] | None = None,
    shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    particle_type: str | None = None,
) -> pd.DataFrame:
    """Read a RELION 4 or 5 STAR picks file into a picks table (Å, cryopoint convention).

    The version is detected from the columns (RELION 4 coordinates win when both are present). RELION 4
    coordinates are multiplied by the ``rlnTomoTiltSeriesPixelSize`` of their optics group when the file has a
    ``data_optics`` block stating it (as :func:`write_star` and copick write), else by ``voxel_size``.

    Args:
        path: The ``.star`` file.
        voxel_size: As in :func:`write_star`; required for RELION 5, and for RELION 4 files without a pixel size.
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
    blocks = starfile.read(path, always_dict=True)
    block = _particles_block(blocks, path)
    if "rlnTomoName" not in block.columns:
        raise PicksFormatError(f"{path} has no rlnTomoName column: cannot tell which tomogram each pick is in.")
    version = 4 if set(_V4) <= set(block.columns) else 5
    coords = block[list(_V4 if version == 4 else _V5)].to_numpy(dtype=np.float64)
    runs = block["rlnTomoName"].astype(str).to_numpy()
    stated = _stated_pixel_sizes(blocks, block, path) if version == 4 else None
    if stated is not None:  # the file says what its pixels are
        xyz = coords * stated[:, None]
    else:
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
