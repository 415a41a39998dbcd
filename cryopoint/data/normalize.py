"""Per-tomogram robust intensity normalisation, shared by training and inference.

Raw tomograms come in arbitrary units (the challenge's are ~1e-5), with outliers (gold beads, hot voxels,
padding), vacuum above and below the ice, big vesicles and other clutter. A min/max scaling is wrecked by
the first, and even whole-volume percentiles are skewed by all of them: 2 % of voxels in gold beads move the
99th percentile onto the beads, and 30 % of slices in vacuum move the median and widen the range. So the
statistics come from the ice only, and are robust ones:

* **Where.** The search region is the central ``xy_fraction`` of the field along y and x (by default the
  middle 80 %: reconstruction borders carry the artefacts of a field of view that shifts with tilt, of
  tapering and of padding, while real reconstructions are centred on the specimen), over the whole z range.
  Within it, the **ice slab is detected** slice by slice: the central third of z is taken as ice (a
  reconstruction is centred on its specimen, so this part always holds ice), the median and robust sd of
  those slices are the reference, and the slab grows outward from the centre while a slice's median stays
  within ``0.5`` reference sd of the reference median and its sd within a factor ``1.5`` of the reference
  sd. Vacuum (a different mean, usually a different spread) stops the growth; a slowly varying ice
  (drift, a tilted slab) just yields a thinner slab, never less than the central third. Detection was
  preferred over a fixed central z range because slab thickness varies a lot between tomograms: a fixed
  range would either let vacuum in for thin ice or throw away most of the ice in thick samples.
* **What.** Over the slab voxels (a regular subsample of at most ``max_samples``), the median and the robust
  sd ``IQR / 1.349`` (exact for a Gaussian, insensitive to a few % of outliers in either tail).
* **Scale.** ``out = (vol - median) / (z * sd)`` with ``z = (Phi^-1(high) - Phi^-1(low)) / 2`` (2.326 for
  the default 1/99 %), clipped to ``+-clip``. On Gaussian-like data this is the previous convention (the
  1st/99th percentiles land on -1/+1, so models trained before see the same scale on ordinary data); on
  contaminated data it ignores the contamination.

``method="percentile"`` keeps the previous estimator (median and half the ``low``-``high`` percentile
range of a regular subsample of the whole volume), to reproduce the preprocessing of older experiments.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from cryopoint.errors import InvalidVolumeError

__all__ = [
    "normalize_volume",
    "DEFAULT_LOW",
    "DEFAULT_HIGH",
    "DEFAULT_CLIP",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_XY_FRACTION",
]

DEFAULT_LOW = 1.0
DEFAULT_HIGH = 99.0
#: Clip at +-3 half-ranges: for Gaussian-like densities the 1-99 % range is +-2.3 sd, so this cuts beyond ~7 sd.
DEFAULT_CLIP = 3.0
DEFAULT_MAX_SAMPLES = 1_000_000
#: Fraction of the y and x field (centred) searched for ice: the borders of reconstructions are the least reliable.
DEFAULT_XY_FRACTION = 0.8

#: IQR of a standard normal: IQR / 1.349 estimates the sd of Gaussian-like data.
_IQR_TO_SD = 1.3489795003921634
#: A slice belongs to the slab while its median is within this many reference sd of the reference median...
_SLAB_MEDIAN_TOL = 0.5
#: ...and its sd within this factor of the reference sd.
_SLAB_SD_RATIO = 1.5


def _subsample(vol: np.ndarray, max_samples: int) -> np.ndarray:
    """A regular-grid subsample of at most ~``max_samples`` voxels, as float64 (cheap on memmaps)."""
    step = max(1, math.ceil((vol.size / max_samples) ** (1.0 / vol.ndim)))
    return np.asarray(vol[(slice(None, None, step),) * vol.ndim], dtype=np.float64).ravel()


def _region_sample(vol: np.ndarray, max_samples: int, xy_fraction: float) -> np.ndarray:
    """Regular subsample of the search region (all z, central ``xy_fraction`` of the other axes), as float64
    ``(n_slices, n_voxels_per_slice)``; a volume of fewer than 2 dimensions is one "slice"."""
    if vol.ndim < 2:
        return _subsample(vol, max_samples).reshape(1, -1)
    region = [slice(None)]
    for n in vol.shape[1:]:
        keep = max(1, round(n * xy_fraction))
        start = (n - keep) // 2
        region.append(slice(start, start + keep))
    region_size = vol.shape[0] * math.prod(s.stop - s.start for s in region[1:])
    step = max(1, math.ceil((region_size / max_samples) ** (1.0 / vol.ndim)))
    region = [slice(s.start, s.stop, step) for s in region]
    sample = np.asarray(vol[tuple(region)], dtype=np.float64)
    return sample.reshape(sample.shape[0], -1)


def _slab_rows(rows: np.ndarray) -> slice:
    """The contiguous run of sample rows (z slices) that look like the central third of them (see module doc)."""
    n = rows.shape[0]
    if n < 3:
        return slice(0, n)
    q25, med, q75 = np.percentile(rows, [25.0, 50.0, 75.0], axis=1)
    sd = (q75 - q25) / _IQR_TO_SD
    lo, hi = n // 3, n - n // 3  # central third: always ice
    ref_med, ref_sd = float(np.median(med[lo:hi])), float(np.median(sd[lo:hi]))
    if not ref_sd > 0:  # degenerate (mostly constant) slices: nothing to compare against
        return slice(0, n)
    ok = (np.abs(med - ref_med) <= _SLAB_MEDIAN_TOL * ref_sd) & (sd <= _SLAB_SD_RATIO * ref_sd)
    ok &= sd >= ref_sd / _SLAB_SD_RATIO
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < n and ok[hi]:
        hi += 1
    return slice(lo, hi)


def _robust_stats(vol: np.ndarray, max_samples: int, xy_fraction: float, low: float, high: float) -> tuple:
    """``(centre, half_range, sample)`` of the ice slab: median and ``z(low, high) * IQR / 1.349``."""
    rows = _region_sample(vol, max_samples, xy_fraction)
    if not np.isfinite(rows).all():
        raise InvalidVolumeError("The volume holds NaN or Inf voxels; fix or mask them before normalising.")
    slab = rows[_slab_rows(rows)].ravel()
    q25, median, q75 = np.percentile(slab, [25.0, 50.0, 75.0])
    # Gaussian equivalent of the requested percentiles: 1/99 % -> 2.326 sd, the previous convention's scale.
    gauss = NormalDist()
    z = (gauss.inv_cdf(high / 100.0) - gauss.inv_cdf(low / 100.0)) / 2.0
    half_range = z * (q75 - q25) / _IQR_TO_SD
    if not half_range > 0:  # mostly one value (e.g. zero padding): the plain spread still sees the contrast
        half_range = z * float(slab.std())
    return median, half_range, rows.ravel()


def normalize_volume(
    vol: np.ndarray,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    *,
    clip: float = DEFAULT_CLIP,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    method: str = "robust",
    xy_fraction: float = DEFAULT_XY_FRACTION,
) -> np.ndarray:
    """Robustly normalise a volume: ``clip((vol - centre) / half_range, -clip, clip)``.

    With the default ``method="robust"``, ``centre`` is the median and ``half_range`` is
    ``(Phi^-1(high) - Phi^-1(low)) / 2 x IQR / 1.349`` of the detected ice slab (see the module docstring),
    so the ``low``/``high`` percentiles of Gaussian-like ice land on -1/+1 while vacuum, gold beads and
    clutter do not move the estimate. ``method="percentile"`` is the previous estimator: median and half the
    ``low``-``high`` percentile range of the whole volume.

    The input is never modified (memmaps and read-only arrays are fine); the result is a new float32 array.

    >>> vol = np.random.default_rng(0).normal(5e-5, 1e-5, (16, 32, 32))
    >>> out = normalize_volume(vol)
    >>> out.dtype, abs(float(np.median(out))) < 0.05, float(np.percentile(out, 99)) > 0.9
    (dtype('float32'), True, True)

    Args:
        vol: Volume of any shape, usually ``(Z, Y, X)``; ndarray, memmap or array-like. The slab is searched
            along axis 0 and ``xy_fraction`` applies to the other axes.
        low: Lower percentile (0-100) that maps to -1 (for the robust method: on Gaussian-like data).
        high: Upper percentile (0-100) that maps to +1 (idem).
        clip: Output bound, in half inter-percentile ranges.
        max_samples: Voxels (a regular subsample of the searched region) used for the estimates.
        method: ``"robust"`` (ice slab, median and IQR) or ``"percentile"`` (whole volume, percentiles).
        xy_fraction: Central fraction (0-1] of each axis after the first searched for ice (robust method).

    Returns:
        float32 array of ``vol``'s shape, median 0 in the ice, ``low``/``high`` percentiles near -1/+1.

    Raises:
        InvalidVolumeError: empty, holds NaN/Inf, or constant (nothing to normalise).
        ValueError: bad ``low``/``high`` (the robust method needs 0 < low < high < 100), ``method`` or
            ``xy_fraction``.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"Need 0 <= low < high <= 100 percentiles; got low={low}, high={high}.")
    if method not in ("robust", "percentile"):
        raise ValueError(f"method must be 'robust' or 'percentile'; got {method!r}.")
    if method == "robust" and not 0.0 < low < high < 100.0:
        raise ValueError(f"The robust method needs 0 < low < high < 100 (a Gaussian quantile); got {low}, {high}.")
    if not 0.0 < xy_fraction <= 1.0:
        raise ValueError(f"xy_fraction must be in (0, 1]; got {xy_fraction}.")
    vol = vol if isinstance(vol, np.ndarray) else np.asarray(vol)
    if vol.size == 0:
        raise InvalidVolumeError(f"Cannot normalise an empty volume (shape {vol.shape}).")
    if method == "robust":
        median, half_range, sample = _robust_stats(vol, max_samples, xy_fraction, low, high)
    else:
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
    # Checked before clipping: clipping would turn an Inf outside the sampled grid into a finite +-clip.
    if not np.isfinite(out).all():
        raise InvalidVolumeError("The volume holds NaN or Inf voxels; fix or mask them before normalising.")
    np.clip(out, -clip, clip, out=out)
    return out
