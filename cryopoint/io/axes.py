"""OME-NGFF axes to cryopoint's frame: which stored axis is z, y and x, and the scale in Å.

Pure functions on the metadata (no zarr here): :mod:`cryopoint.io.zarr_store` reads the store and applies
the :class:`AxesLayout` this module returns. A store may list its axes in any order (``x, y, z``,
``t, c, z, y, x``...) and in any length unit (``nanometer``, ``micrometer``...); cryopoint's volumes are
always ``(z, y, x)`` with the voxel size in Å. Metadata that cannot be read that way is refused with a
message saying what was found, never guessed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryopoint.coords import angstroms_per_unit
from cryopoint.errors import InvalidVolumeError, VoxelSizeError

__all__ = ["AxesLayout", "zyx_layout"]

_SPACE = ("z", "y", "x")


@dataclass(frozen=True)
class AxesLayout:
    """How a stored array becomes a ``(z, y, x)`` volume.

    Attributes:
        index: One entry per stored axis: ``slice(None)`` for a space axis, ``0`` for a dropped length-1
            axis (time, channel).
        transpose: Order that brings the kept axes to ``(z, y, x)`` (``np.transpose`` argument).
        voxel_size: Å per voxel along (z, y, x), or None when the metadata has no scale.
    """

    index: tuple[Any, ...]
    transpose: tuple[int, int, int]
    voxel_size: tuple[float, float, float] | None

    def shape(self, stored_shape: Sequence[int]) -> tuple[int, int, int]:
        """The ``(Z, Y, X)`` shape of a stored array of shape ``stored_shape``."""
        kept = [int(n) for n, i in zip(stored_shape, self.index) if isinstance(i, slice)]
        return tuple(kept[i] for i in self.transpose)  # type: ignore[return-value]

    def apply(self, array: Any) -> np.ndarray:
        """Read ``array`` (numpy or zarr) as a C-ordered float32 ``(z, y, x)`` volume."""
        data = np.asarray(array[self.index], dtype=np.float32)
        if self.transpose != (0, 1, 2):
            data = np.ascontiguousarray(data.transpose(self.transpose))
        return data


def _axis(entry: Any) -> tuple[str, str | None, str | None]:
    """(name, type, unit) of one OME-NGFF axis: a dict (0.4, 0.5) or a bare name (0.3)."""
    if isinstance(entry, dict):
        unit = entry.get("unit")
        return str(entry.get("name", "")), entry.get("type"), None if unit is None else str(unit)
    return str(entry), None, None


def zyx_layout(
    axes: Sequence[Any] | None, scale: Sequence[float] | None, shape: Sequence[int], *, source: str = "store"
) -> AxesLayout:
    """Read OME-NGFF ``axes`` and a level's ``scale`` as cryopoint's ``(z, y, x)`` volume in Å.

    Args:
        axes: The multiscale's ``axes`` (dicts with ``name``, ``type``, ``unit``, or bare names), or None
            when the metadata has none: then the last three axes are z, y, x (OME-NGFF before 0.4).
        scale: The level's scale, one value per stored axis, in the axes' units; None when the caller has
            its own voxel size (units are then not consulted) or the metadata has none.
        shape: The stored array's shape.
        source: Names the store in error messages.

    Returns:
        The layout; ``voxel_size`` converted to Å and ordered (z, y, x).

    Raises:
        InvalidVolumeError: the axes do not match the array, are not three space axes named z, y, x, or a
            non-space axis (time, channel) holds more than one entry.
        VoxelSizeError: a space axis has a unit that is not a length, or the scale has the wrong length.

    Warns:
        UserWarning: a space axis has no unit; its scale is read as Å.

    >>> axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "xyz"]
    >>> layout = zyx_layout(axes, [1.0, 1.0, 2.0], (30, 20, 10))
    >>> layout.transpose, layout.voxel_size, layout.shape((30, 20, 10))
    ((2, 1, 0), (20.0, 10.0, 10.0), (10, 20, 30))
    """
    ndim = len(shape)
    if not axes and ndim < 3:
        raise InvalidVolumeError(f"{source} must be a 3-D array indexed (z, y, x); got shape {tuple(shape)}.")
    if axes:
        parsed = [_axis(a) for a in axes]
    else:
        parsed = [(f"dim_{i}", None, None) for i in range(ndim - 3)] + [(n, "space", None) for n in _SPACE]
    found = ", ".join(f"{n} ({t or 'no type'}, {u or 'no unit'})" for n, t, u in parsed)
    if len(parsed) != ndim:
        raise InvalidVolumeError(
            f"{source}: the OME-NGFF metadata lists {len(parsed)} axes ({found}) but the array has {ndim} "
            f"dimensions (shape {tuple(shape)}). Fix the metadata's axes."
        )
    names = [n.lower() for n, _, _ in parsed]
    space = [i for i, (n, t, _) in enumerate(parsed) if t == "space" or (t is None and n.lower() in _SPACE)]
    if sorted(names[i] for i in space) != sorted(_SPACE):
        raise InvalidVolumeError(
            f"{source}: cryopoint reads three space axes named z, y, x; the metadata's axes are {found}. "
            "Rename the axes in the store's multiscales metadata."
        )
    index: list[Any] = []
    for i, (n, t, _) in enumerate(parsed):
        if i in space:
            index.append(slice(None))
        elif shape[i] == 1:
            index.append(0)
        else:
            raise InvalidVolumeError(
                f"{source}: axis {n!r} ({t or 'no type'}) has {shape[i]} entries; cryopoint reads one 3-D volume "
                f"(axes {found}). Store each {t or 'entry'} as its own tomogram."
            )
    kept = [names[i] for i in space]  # space axes in stored order
    transpose = tuple(kept.index(a) for a in _SPACE)
    if scale is None:
        return AxesLayout(tuple(index), transpose, None)  # type: ignore[arg-type]
    if len(scale) != ndim:
        raise VoxelSizeError(
            f"{source}: the scale {list(scale)} has {len(scale)} values for {ndim} axes ({found}). Fix the "
            "metadata, or pass voxel_size=<Å per voxel> (CLI: --voxel-size)."
        )
    angstrom, unitless = {}, []
    for i in space:
        name, _, unit = parsed[i]
        factor = 1.0 if unit is None else angstroms_per_unit(unit)
        if factor is None:
            raise VoxelSizeError(
                f"{source}: axis {name!r} has unit {unit!r}, not a length cryopoint can convert to Å (axes "
                f"{found}). Use a length unit such as angstrom, nanometer or micrometer, or pass "
                "voxel_size=<Å per voxel> (CLI: --voxel-size)."
            )
        if unit is None:
            unitless.append(name)
        angstrom[name.lower()] = float(scale[i]) * factor
    if unitless:
        warnings.warn(
            f"{source}: axes {', '.join(unitless)} have no unit; their scale is read as Å. Add "
            '"unit": "angstrom" (or the true unit) to the axes, or pass voxel_size=.',
            UserWarning,
            stacklevel=4,
        )
    voxel_size = tuple(angstrom[a] for a in _SPACE)
    return AxesLayout(tuple(index), transpose, voxel_size)  # type: ignore[arg-type]
