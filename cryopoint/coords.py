"""Coordinate conventions: the one place where voxel indices and ångström meet.

Convention (used everywhere in cryopoint):

* Arrays are indexed ``(z, y, x)``; a voxel's centre sits at its integer index.
* Physical positions are in Å in ``(x, y, z)`` order, as in copick / challenge picks files.
* ``Å = index x voxel_size`` along each axis: the centre of voxel 0 is at 0 Å. There is no half-voxel
  offset; a slip of half a voxel would cost 5 Å, a sixth of apo-ferritin's match distance.
* ``voxel_size`` is always given per array axis, ``(z, y, x)``, in Å.
* A map at output stride ``s`` (a heatmap, a target, a segmentation) has voxel ``i`` centred on
  full-resolution voxel ``i x s + (s - 1) / 2``, the centre of the ``s`` voxels it pools
  (:func:`stride_to_full` / :func:`full_to_stride`). Targets are drawn and peaks are read with this pair.

Files that say their positions or scales are in other length units are converted with
:func:`angstroms_per_unit`; :func:`looks_like_voxels` catches Å columns that hold voxel indices.
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
    "angstroms_per_unit",
    "outside_volume",
    "looks_like_voxels",
    "stride_to_full",
    "full_to_stride",
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


def stride_to_full(idx, stride: int):
    """Index (any float or array) on a map at output stride ``stride`` → full-resolution voxel index.

    >>> stride_to_full(3, 2)
    6.5
    """
    return idx * stride + (stride - 1) / 2


def full_to_stride(idx, stride: int):
    """Full-resolution voxel index → (fractional) index at output stride ``stride``; inverse of
    :func:`stride_to_full`.

    >>> full_to_stride(6.5, 2)
    3.0
    """
    return (idx - (stride - 1) / 2) / stride


# Å per unit: the OME-NGFF (UDUNITS-2) length names, their plurals and British spellings, and short forms.
_METRIC = {"femto": 1e-5, "pico": 1e-2, "nano": 10.0, "micro": 1e4, "milli": 1e7, "centi": 1e8, "deci": 1e9, "": 1e10}
_ANGSTROMS_PER_UNIT: dict[str, float] = {
    **{f"{prefix}{m}{s}": v for prefix, v in _METRIC.items() for m in ("meter", "metre") for s in ("", "s")},
    **{"angstrom": 1.0, "angstroms": 1.0, "ångström": 1.0, "ångströms": 1.0, "å": 1.0, "micron": 1e4, "microns": 1e4},
    **{"fm": 1e-5, "pm": 1e-2, "nm": 10.0, "um": 1e4, "\u00b5m": 1e4, "\u03bcm": 1e4, "mm": 1e7, "cm": 1e8, "m": 1e10},
}


def angstroms_per_unit(unit: str) -> float | None:
    """How many Å one ``unit`` is (``"nanometer"`` → 10), or None for a name that is not a length unit.

    Accepts the OME-NGFF / UDUNITS-2 names (``angstrom``, ``nanometer``, ``micrometer``, ...), plurals,
    ``metre`` spellings and short forms (``Å``, ``nm``, ``µm``, ``um``, ``mm``), case-insensitively.

    >>> angstroms_per_unit("nanometer"), angstroms_per_unit("µm"), angstroms_per_unit("pixel")
    (10.0, 10000.0, None)
    """
    return _ANGSTROMS_PER_UNIT.get(str(unit).strip().lower())


def outside_volume(
    xyz: np.ndarray, shape: Sequence[int], voxel_size: float | Sequence[float], *, tolerance: float = 1e-6
) -> np.ndarray:
    """Which Å positions ``(N, 3)`` (x, y, z) lie outside a ``(Z, Y, X)`` volume: a bool mask ``(N,)``.

    Inside means within the outermost voxels' extent, ``[-0.5, size - 0.5]`` voxels along each axis
    (``tolerance`` voxels of slack for rounding on the faces).

    >>> outside_volume(np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 40.0]]), (3, 3, 3), 10.0)
    array([False,  True])
    """
    zyx = angstrom_to_voxel(xyz, voxel_size)
    upper = np.asarray(shape, dtype=np.float64) - 0.5 + tolerance
    return ~np.all((zyx >= -0.5 - tolerance) & (zyx <= upper), axis=1)


def looks_like_voxels(
    xyz: np.ndarray, reference_xyz: np.ndarray, shape: Sequence[int], voxel_size: float | Sequence[float]
) -> bool:
    """Whether positions meant to be Å (x, y, z) are probably voxel indices of a ``(Z, Y, X)`` volume.

    True when every position lies within the volume's size counted in voxels (``0 <= x <= 1.01 X`` and so on,
    a box ``1 / voxel_size**3`` of the volume), while at least half of ``reference_xyz`` (positions known to be
    Å, such as the ground truth of the same tomogram) lies beyond that box. Positions in Å would have to crowd
    into that corner while the particles are elsewhere, which scores 0 either way. Voxel sizes below 1.5 Å
    make the two frames too alike to tell apart (False), as do empty inputs.

    >>> truth = np.array([[3000.0, 3000.0, 900.0], [5000.0, 1000.0, 400.0]])
    >>> [looks_like_voxels(pred, truth, (184, 630, 630), 10.0) for pred in (truth / 10, truth)]
    [True, False]
    """
    vs = np.asarray(as_voxel_size(voxel_size))
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    ref = np.asarray(reference_xyz, dtype=np.float64).reshape(-1, 3)
    if vs.min() < 1.5 or not len(xyz) or not len(ref):
        return False
    box = np.asarray(shape, dtype=np.float64)[::-1] * 1.01  # the volume's size in voxels, along x, y, z

    def in_box(p: np.ndarray) -> np.ndarray:
        return np.all((p >= -1.0) & (p <= box), axis=1)

    return bool(in_box(xyz).all() and (~in_box(ref)).mean() >= 0.5)
