"""cryopoint's exception hierarchy: every error a user can trigger says what went wrong and what to do.

Each class also derives from the matching built-in (``FileNotFoundError``, ``ValueError``, ...) so that
callers who catch the built-ins keep working.
"""

from __future__ import annotations

__all__ = [
    "CryopointError",
    "DataNotFoundError",
    "MissingDependencyError",
    "InvalidVolumeError",
    "VoxelSizeError",
    "PicksFormatError",
    "UnknownParticleError",
    "PointsOutsideVolumeError",
    "PointsOutsideVolumeWarning",
    "ConfigError",
    "CheckpointError",
    "OutputExistsError",
    "StaleResultError",
    "AdjustedSettingWarning",
    "ResampleWarning",
]


class CryopointError(Exception):
    """Base class of every error cryopoint raises on purpose."""


class DataNotFoundError(CryopointError, FileNotFoundError):
    """A path, run, tomogram or picks file does not exist where it was expected."""


class MissingDependencyError(CryopointError, ImportError):
    """An optional package (copick), or another version of one (zarr 3 for zarr format 3), is needed for this."""


class InvalidVolumeError(CryopointError, ValueError):
    """A volume has the wrong number of dimensions, is empty, or holds NaN/Inf voxels."""


class VoxelSizeError(CryopointError, ValueError):
    """The voxel size is missing, zero, negative, or does not match the model."""


class PicksFormatError(CryopointError, ValueError):
    """A picks file or table is malformed (bad JSON, missing keys, wrong columns)."""


class UnknownParticleError(CryopointError, ValueError):
    """A particle name is not in the catalogue."""


class PointsOutsideVolumeError(CryopointError, ValueError):
    """Points lie outside the volume they are said to belong to."""


class PointsOutsideVolumeWarning(UserWarning):
    """Points outside the volume were dropped (used where dropping is the documented behaviour)."""


class ConfigError(CryopointError, ValueError):
    """A config has an unknown key, a wrong type, or an invalid value."""


class CheckpointError(CryopointError, ValueError):
    """A checkpoint is missing, unreadable, or lacks what cryopoint needs to rebuild the model."""


class OutputExistsError(CryopointError, FileExistsError):
    """An output would overwrite an input or an existing result without permission."""


class StaleResultError(OutputExistsError):
    """Results already in an output folder were made by another model or other settings."""


class AdjustedSettingWarning(UserWarning):
    """A setting was changed to one that works (the message says from what to what, and why)."""


class PolarityWarning(UserWarning):
    """A tomogram looks inverted (protein brighter than the ice); the message says what was done and how to choose."""


class ResampleWarning(UserWarning):
    """A tomogram is resampled by a large factor to the model's voxel size (its particles look unlike training)."""
