"""Reading tomograms from any supported format, and writing MRC files.

Formats: OME-Zarr (``.zarr``, zarr format 2 or 3, see :mod:`cryopoint.io.zarr_store`) and MRC (``.mrc``,
``.rec``, ``.map``, ``.st``) through ``mrcfile``. MRC data is memory-mapped (float32 files stay memory maps;
other modes are converted to float32 in memory). The MRC header origin is ignored: cryopoint's convention
is ``Å = index x voxel_size`` from voxel 0 (see :mod:`cryopoint.coords`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import mrcfile
import numpy as np

from cryopoint.coords import as_voxel_size
from cryopoint.errors import DataNotFoundError, InvalidVolumeError, VoxelSizeError
from cryopoint.io.atomic import atomic_path, refuse_inputs
from cryopoint.io.zarr_store import ome_zarr_geometry, read_ome_zarr
from cryopoint.tomogram import Tomogram, check_volume

__all__ = ["read_tomogram", "tomogram_geometry", "read_mrc", "write_mrc", "MRC_SUFFIXES"]

#: File suffixes read as MRC.
MRC_SUFFIXES: tuple[str, ...] = (".mrc", ".rec", ".map", ".st", ".mrcs")


def _missing(path: Path, expected: str) -> DataNotFoundError:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    nearby = sorted(p.name for p in parent.iterdir())[:30] if parent.is_dir() else []
    return DataNotFoundError(
        f"{path} does not exist (expected {expected}). {parent} contains: {', '.join(nearby) or 'nothing'}."
    )


def _run_name(path: Path) -> str:
    """Run name for a tomogram path: the run folder in the challenge layout, else the file stem."""
    if path.parent.name.startswith("VoxelSpacing") and path.parent.parent.name:
        return path.parent.parent.name
    return path.name.split(".")[0]


def read_mrc(path: str | os.PathLike, voxel_size: float | Sequence[float] | None = None) -> Tomogram:
    """Read an MRC volume, memory-mapped, with the voxel size from its header.

    Args:
        path: ``.mrc``/``.rec``/... file holding one 3-D volume ``(Z, Y, X)``.
        voxel_size: Å per voxel, overriding the header (needed when the header says 0).

    Returns:
        Tomogram; ``data`` is a read-only float32 memory map when the file is float32.

    Raises:
        DataNotFoundError: the file does not exist.
        VoxelSizeError: the header voxel size is 0 and none was passed.
        InvalidVolumeError: not a volume (e.g. a 2-D image), or NaN/Inf voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "an MRC file")
    try:
        with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
            data = mrc.data
            header_vs = mrc.voxel_size  # (x, y, z) record
            header_zyx = (float(header_vs.z), float(header_vs.y), float(header_vs.x))
    except ValueError as err:
        raise InvalidVolumeError(f"{path} is not a valid MRC file: {err}") from None
    if data is None:
        raise InvalidVolumeError(f"{path} has no data block.")
    if data.dtype != np.float32:
        data = np.asarray(data, dtype=np.float32)
    data = check_volume(data, name=str(path))
    vs = _mrc_voxel_size(path, header_zyx, voxel_size)
    return Tomogram(data=data, voxel_size=vs, path=path, name=_run_name(path))


def _mrc_voxel_size(
    path: Path, header_zyx: tuple[float, float, float], voxel_size: float | Sequence[float] | None
) -> tuple[float, float, float]:
    if voxel_size is None:
        if not all(v > 0 for v in header_zyx):
            raise VoxelSizeError(
                f"{path} has voxel size {header_zyx} (z, y, x) in its header: unset. "
                "Pass voxel_size=<Å per voxel> (CLI: --voxel-size); cryopoint does not guess."
            )
        voxel_size = header_zyx
    return as_voxel_size(voxel_size)


def read_tomogram(
    path: str | os.PathLike, level: int = 0, voxel_size: float | Sequence[float] | None = None
) -> Tomogram:
    """Read a tomogram from OME-Zarr (v2 or v3) or MRC, with its voxel size.

    Args:
        path: A ``.zarr`` store (level ``level`` is read) or an MRC-family file.
        level: Multiscale level for OME-Zarr (0 = full resolution); MRC files only have level 0.
        voxel_size: Å per voxel of the returned volume; overrides the file's metadata. Required when the
            file has none (MRC header 0, zarr without multiscales or ``VoxelSpacing`` folder).

    Returns:
        Tomogram with float32 ``data`` ``(Z, Y, X)``, ``voxel_size`` (Å, z, y, x), ``path`` and ``name``
        (the run folder in the challenge layout, else the file stem).

    Raises:
        DataNotFoundError: the path or level does not exist (the message lists what is nearby).
        VoxelSizeError: no usable voxel size.
        InvalidVolumeError: wrong number of dimensions, empty, NaN/Inf voxels, unreadable file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if _is_zarr(path):
        if not path.exists():
            raise _missing(path, "an OME-Zarr store (a .zarr directory)")
        tomo = read_ome_zarr(path, level=level, voxel_size=voxel_size)
        return Tomogram(data=tomo.data, voxel_size=tomo.voxel_size, path=path, name=_run_name(path))
    if suffix in MRC_SUFFIXES:
        if level != 0:
            raise DataNotFoundError(f"{path} is an MRC file: it has only level 0, not level {level}.")
        return read_mrc(path, voxel_size=voxel_size)
    if not path.exists():
        raise _missing(path, f"a tomogram (.zarr or {', '.join(MRC_SUFFIXES)})")
    raise InvalidVolumeError(
        f"{path}: unknown tomogram format {suffix or '(no suffix)'!r}. Supported: .zarr, {', '.join(MRC_SUFFIXES)}."
    )


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or (
        path.is_dir() and any((path / m).exists() for m in (".zgroup", ".zarray", "zarr.json"))
    )


def tomogram_geometry(
    path: str | os.PathLike, level: int = 0, voxel_size: float | Sequence[float] | None = None
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """``(shape (Z, Y, X), voxel size (Å, z, y, x))`` of a tomogram as :func:`read_tomogram` would return it,
    read from the metadata only (cheap for a whole split: no voxels are read).

    Raises:
        DataNotFoundError, VoxelSizeError, InvalidVolumeError: as :func:`read_tomogram`.
    """
    path = Path(path)
    if _is_zarr(path):
        if not path.exists():
            raise _missing(path, "an OME-Zarr store (a .zarr directory)")
        return ome_zarr_geometry(path, level=level, voxel_size=voxel_size)
    if path.suffix.lower() in MRC_SUFFIXES and level == 0 and path.is_file():
        try:
            with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
                header = mrc.header
                shape = (int(header.nz), int(header.ny), int(header.nx))
                header_vs = mrc.voxel_size
                header_zyx = (float(header_vs.z), float(header_vs.y), float(header_vs.x))
        except ValueError as err:
            raise InvalidVolumeError(f"{path} is not a valid MRC file: {err}") from None
        return shape, _mrc_voxel_size(path, header_zyx, voxel_size)
    tomo = read_tomogram(path, level=level, voxel_size=voxel_size)  # raises the same errors as reading
    return tomo.shape, tomo.voxel_size


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size: float | Sequence[float],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write a (z, y, x) volume as float32 MRC with its voxel size, atomically.

    Args:
        path: Target file (``.mrc``, ``.rec``, ...).
        data: Volume ``(Z, Y, X)``, finite.
        voxel_size: Å per voxel, one value or (z, y, x).
        overwrite: Replace an existing file.
        inputs: Paths this run reads from; writing over any of them is refused.

    Returns:
        The written path.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False, or it is one of ``inputs``.
        InvalidVolumeError: not 3-D or NaN/Inf voxels.
    """
    vs = as_voxel_size(voxel_size)
    data = check_volume(np.asarray(data), name="volume to write")
    refuse_inputs(path, inputs)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
            mrc.voxel_size = (vs[2], vs[1], vs[0])  # mrcfile takes (x, y, z)
    return Path(path)
