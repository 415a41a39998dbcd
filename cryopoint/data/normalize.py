"""Per-tomogram robust intensity normalisation, shared by training and inference.

Raw tomograms come in arbitrary units (the challenge's are ~1e-5), with outliers (gold beads, hot voxels,
padding) that would wreck a min/max scaling. The volume is centred on its median and divided by half its
``low``-``high`` percentile range (percentiles from a regular subsample, so the cost stays small on
memory-mapped files), then clipped: ``low``/``high`` land near -1/+1 and only extreme outliers are cut.
"""

from __future__ import annotations

import math

import numpy as np

from cryopoint.errors import InvalidVolumeError

__all__ = ["normalize_volume", "DEFAULT_LOW", "DEFAULT_HIGH", "DEFAULT_CLIP", "DEFAULT_MAX_SAMPLES"]

DEFAULT_LOW = 1.0
DEFAULT_HIGH = 99.0
#: Clip at +-3 half-ranges: for Gaussian-like densities the 1-99 % range is +-2.3 sd, so this cuts beyond ~7 sd.
DEFAULT_CLIP = 3.0
DEFAULT_MAX_SAMPLES = 1_000_000


def _subsample(vol: np.ndarray, max_samples: int) -> np.ndarray:
    """A regular-grid subsample of at most ~``max_samples`` voxels, as float64 (cheap on memmaps)."""
    step = max(1, math.ceil((vol.size / max_samples) ** (1.0 / vol.ndim)))
    return np.asarray(vol[(slice(None, None, step),) * vol.ndim], dtype=np.float64).ravel()


def normalize_volume(
    vol: np.ndarray,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    *,
    clip: float = DEFAULT_CLIP,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> np.ndarray:
    """Robustly normalise a volume: ``clip((vol - median) / ((p_high - p_low) / 2), -clip, clip)``.

    The input is never modified (memmaps and read-only arrays are fine); the result is a new float32 array.

    >>> vol = np.random.default_rng(0).normal(5e-5, 1e-5, (16, 32, 32))
    >>> out = normalize_volume(vol)
    >>> out.dtype, abs(float(np.median(out))) < 0.05, float(np.percentile(out, 99)) > 0.9
    (dtype('float32'), True, True)

    Args:
        vol: Volume of any shape, usually ``(Z, Y, X)``; ndarray, memmap or array-like.
        low: Lower percentile (0-100) of the scale.
        high: Upper percentile (0-100) of the scale.
        clip: Output bound, in half inter-percentile ranges.
        max_samples: Voxels used to estimate the median and percentiles.

    Returns:
        float32 array of ``vol``'s shape, median 0, ``low``/``high`` percentiles near -1/+1.

    Raises:
        InvalidVolumeError: empty, holds NaN/Inf, or constant (nothing to normalise).
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"Need 0 <= low < high <= 100 percentiles; got low={low}, high={high}.")
    vol = vol if isinstance(vol, np.ndarray) else np.asarray(vol)
    if vol.size == 0:
        raise InvalidVolumeError(f"Cannot normalise an empty volume (shape {vol.shape}).")
    sample = _subsample(vol, max_samples)
    if not np.isfinite(sample).all():
        raise InvalidVolumeError("The volume holds NaN or Inf voxels; fix or mask them before normalising.")
    p_low, median, p_high = np.percentile(sample, [low, 50.0, high])
    half_range = (p_high - p_low) / 2.0
    if not half_range > 0:  # mostly one value (e.g. zero padding): fall back to the spread of the whole sample
        half_range = float(sample.std())
    if not half_range > 0:
        raise InvalidVolumeError(
            f"The volume is constant (every sampled voxel is {median:g}); there is no contrast to normalise. "
            "Check that the file holds a reconstruction."
        )
    out = np.array(vol, dtype=np.float32, copy=True)
    out -= np.float32(median)
    out *= np.float32(1.0 / half_range)
    np.clip(out, -clip, clip, out=out)
    if not np.isfinite(out).all():
        raise InvalidVolumeError("The volume holds NaN or Inf voxels; fix or mask them before normalising.")
    return out
