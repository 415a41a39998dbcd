"""Coordinate conventions: the one place where voxel indices and ångström meet.

Convention (used everywhere in cryopoint):

* Arrays are indexed ``(z, y, x)``; a voxel's centre sits at its integer index.
* Physical positions are in Å in ``(x, y, z)`` order, as in copick / challenge picks files.
* ``Å = index x voxel_size`` along each axis: the centre of voxel 0 is at 0 Å. There is no half-voxel
  offset; a slip of half a voxel would cost 5 Å, a sixth of apo-ferritin's match distance.
* ``voxel_size`` is always given per array axis, ``(z, y, x)``, in Å.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryopoint.errors import VoxelSizeError

__all__ = [
    "ANGSTROM_COLUMNS",
    "VOXEL_COLUMNS",
    "as_voxel_size",
    "voxel_to_angstrom",
    "angstrom_to_voxel",
]

#: Columns holding Å positions in every picks table (x, y, z order, as in picks files).
ANGSTROM_COLUMNS: tuple[str, str, str] = ("x", "y", "z")
#: Columns holding voxel positions (array order z, y, x) in picks tables that carry them.
VOXEL_COLUMNS: tuple[str, str, str] = ("z_vox", "y_vox", "x_vox")


def as_voxel_size(voxel_size: float | Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Normalise a voxel size to a ``(z, y, x)`` tuple of positive floats in Å.

    >>> as_voxel_size(10.012444)
    (10.012444, 10.012444, 10.012444)

    Raises:
        VoxelSizeError: missing, not 1 or 3 values, zero, negative or not finite.
    """
    if voxel_size is None:
        raise VoxelSizeError("No voxel size given: pass voxel_size=<Å per voxel> (e.g. 10.012444).")
    arr = np.atleast_1d(np.asarray(voxel_size, dtype=np.float64)).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3:
        raise VoxelSizeError(f"Voxel size must be one value or three (z, y, x); got {arr.size} values: {arr}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise VoxelSizeError(
            f"Voxel size must be positive and finite (Å per voxel); got {tuple(arr)}. "
            "If the file has no voxel size in its header, pass voxel_size= (or --voxel-size) explicitly."
        )
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def voxel_to_angstrom(zyx: np.ndarray, voxel_size: float | Sequence[float]) -> np.ndarray:
    """Voxel indices ``(N, 3)`` in (z, y, x) → positions ``(N, 3)`` in Å in (x, y, z) order.

    >>> voxel_to_angstrom(np.array([[1.0, 2.0, 3.0]]), 10.0)
    array([[30., 20., 10.]])
    """
    vs = np.asarray(as_voxel_size(voxel_size))
    zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
    return (zyx * vs)[:, ::-1].copy()


def angstrom_to_voxel(xyz: np.ndarray, voxel_size: float | Sequence[float]) -> np.ndarray:
    """Positions ``(N, 3)`` in Å in (x, y, z) order → fractional voxel indices ``(N, 3)`` in (z, y, x).

    The exact inverse of :func:`voxel_to_angstrom`.

    >>> angstrom_to_voxel(np.array([[30.0, 20.0, 10.0]]), 10.0)
    array([[1., 2., 3.]])
    """
    vs = np.asarray(as_voxel_size(voxel_size))
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return xyz[:, ::-1] / vs
