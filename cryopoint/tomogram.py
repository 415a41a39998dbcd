"""The ``Tomogram`` value: a (z, y, x) float32 volume that always carries its voxel size."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryopoint.coords import as_voxel_size
from cryopoint.errors import InvalidVolumeError, VoxelSizeError

__all__ = ["Tomogram", "check_volume", "check_voxel_size", "PLAUSIBLE_VOXEL_SIZE"]

#: Voxel sizes (Å) a tomogram can plausibly have: from unbinned super-resolution data to heavily binned overviews.
#: Anything outside is almost surely a wrong unit (nm, m) or an empty header, and would run for hours or find nothing.
PLAUSIBLE_VOXEL_SIZE = (1.0, 100.0)


def check_voxel_size(voxel_size: float | tuple[float, ...], *, what: str = "Voxel size") -> tuple[float, float, float]:
    """Normalise a voxel size to ``(z, y, x)`` Å and check it lies in :data:`PLAUSIBLE_VOXEL_SIZE`.

    Raises:
        VoxelSizeError: missing, not positive, or outside the plausible range (the message guesses the unit).
    """
    vs = as_voxel_size(voxel_size)
    low, high = PLAUSIBLE_VOXEL_SIZE
    if all(low <= v <= high for v in vs):
        return vs
    worst = min(vs) if min(vs) < low else max(vs)
    if 1e-10 <= worst <= 1e-8:
        guess = " It looks like metres: multiply by 1e10."
    elif 0.1 <= worst < low:
        guess = " If it is in nm, multiply by 10."
    else:
        guess = ""
    raise VoxelSizeError(
        f"{what} {vs} Å per voxel (z, y, x) is outside the plausible {low:g}-{high:g} Å for a tomogram.{guess} "
        "Pass it in Å (voxel_size=..., CLI --voxel-size), e.g. 10.012444 for the CZII data."
    )


def check_volume(data: np.ndarray, *, name: str = "tomogram", allow_nonfinite: bool = False) -> np.ndarray:
    """Validate a volume: 3-D, non-empty, finite. Returns it unchanged (no copy).

    Raises:
        InvalidVolumeError: with a message saying what is wrong and what to do.
    """
    if data.ndim != 3:
        squeezable = data.ndim > 3 and all(s == 1 for s in data.shape[:-3])
        hint = " Squeeze the leading axes (e.g. data[0])." if squeezable else ""
        raise InvalidVolumeError(
            f"{name} must be a 3-D array indexed (z, y, x); got {data.ndim}-D with shape {tuple(data.shape)}.{hint}"
        )
    if data.size == 0:
        raise InvalidVolumeError(f"{name} is empty (shape {tuple(data.shape)}).")
    if not allow_nonfinite and np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InvalidVolumeError(
                f"{name} has {bad} NaN/Inf voxels of {data.size}. Fix the reconstruction, or replace them "
                "(e.g. np.nan_to_num(data, nan=np.nanmedian(data))) before detection."
            )
    return data


@dataclass(frozen=True)
class Tomogram:
    """A tomogram and its geometry.

    Attributes:
        data: Volume indexed (z, y, x). float32 for volumes read by cryopoint (may be a memory map).
        voxel_size: Å per voxel along (z, y, x), within :data:`PLAUSIBLE_VOXEL_SIZE` (else ``VoxelSizeError``).
        path: Where it was read from, if anywhere.
        name: Run / experiment name (defaults to the file stem).
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float]
    path: Path | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        if not self.name and self.path is not None:
            object.__setattr__(self, "name", Path(self.path).name.split(".")[0])
        what = f"Voxel size of tomogram {self.name}" if self.name else "Voxel size"
        object.__setattr__(self, "voxel_size", check_voxel_size(self.voxel_size, what=what))
        if self.data.ndim != 3:
            check_volume(self.data)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def extent(self) -> tuple[float, float, float]:
        """Physical size in Å along (z, y, x)."""
        return tuple(s * v for s, v in zip(self.shape, self.voxel_size))  # type: ignore[return-value]
