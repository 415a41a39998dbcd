"""Contrast polarity: is protein darker than the ice (the reconstruction convention every model here assumes)?

Tomograms reach users from many pipelines, and some write them inverted (protein bright, as many viewers and
segmentation tools prefer). A model trained on dark protein then finds almost nothing, with no error. This
module tells the two apart without labels or a model, from what holds for any tomogram: the densest objects
(particles, membranes, fiducials, contamination) all sit on the same side of the ice. At particle scale
(Laplacian-of-Gaussian blobs of 50 and 80 Å), the strongest blobs of that side stand out further than the
strongest blobs of the other side, which only noise and CTF fringes make.

:func:`polarity_score` returns that contrast, ``(dark - bright) / (dark + bright)`` averaged over the two scales
(positive: protein dark), and :func:`estimate_polarity` a verdict from it. A tomogram with too little signal
to tell (few or faint particles, heavy noise) is ``"unclear"`` rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryopoint.errors import ConfigError

__all__ = [
    "POLARITIES",
    "PolarityEstimate",
    "check_polarity_setting",
    "estimate_polarity",
    "orient",
    "polarity_score",
]

#: What ``detect(..., polarity=...)`` accepts: check and warn, invert when it looks inverted, or say which it is.
POLARITIES = ("check", "auto", "dark", "bright")
#: Scores beyond ±MARGIN give a verdict; within it the tomogram is ``"unclear"``.
MARGIN = 0.05
#: The working voxel size (Å) the volume is binned to before looking for blobs.
WORK_VOXEL_A = 20.0
#: LoG scales (Å): sigma = radius / sqrt(3) for blobs of about 85 and 140 Å radius.
SCALES_A = (50.0, 80.0)
#: How many of the strongest blobs of each sign are compared.
TOP_K = 20


@dataclass(frozen=True)
class PolarityEstimate:
    """The verdict (``"dark"``, ``"bright"`` or ``"unclear"``) and the score it came from (positive: dark)."""

    polarity: str
    score: float


def _strongest(response: np.ndarray, size: int, k: int) -> np.ndarray:
    """The ``k`` largest positive local maxima of ``response`` (fewer where there are fewer)."""
    peaks = response[(response == ndimage.maximum_filter(response, size=size)) & (response > 0)]
    return np.sort(peaks)[::-1][:k]


def polarity_score(volume: np.ndarray, voxel_size: float | Sequence[float]) -> float:
    """Contrast of the strongest dark blobs over the strongest bright ones, in ``[-1, 1]`` (positive: dark).

    Args:
        volume: ``(Z, Y, X)`` tomogram, raw or normalised (the score ignores offset and scale).
        voxel_size: Å per voxel, one value or ``(z, y, x)``.

    >>> rng = np.random.default_rng(0)
    >>> vol = rng.normal(size=(48, 96, 96)).astype(np.float32)
    >>> zz, yy, xx = np.mgrid[:48, :96, :96]
    >>> for c in rng.integers(12, 84, size=(12, 3)):
    ...     vol -= 3 * np.exp(-((zz - c[0] % 36 - 6) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * 5.0**2))
    >>> polarity_score(vol, 10.0) > 0.05, polarity_score(-vol, 10.0) < -0.05
    (True, True)
    """
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    zoom = np.minimum(vs / WORK_VOXEL_A, 1.0)
    # Binned first (in float64: raw reconstructions hold tiny variations on a large offset, which float32 would
    # round away), then centred and scaled: one pass over the full volume, none over a full-size copy.
    if np.any(zoom < 0.99):
        data = ndimage.zoom(np.asarray(volume), zoom, order=1, output=np.float64)
    else:
        data = np.asarray(volume, dtype=np.float64)
    data = ((data - data.mean()) / (data.std() or 1.0)).astype(np.float32)
    work_vs = vs / zoom
    z_margin = data.shape[0] // 6  # the slab's top and bottom hold the least sample and the most artefacts
    scores = []
    for scale in SCALES_A:
        sigma = scale / work_vs
        # Scale-normalised LoG: positive at the centre of a dark blob, negative at a bright one.
        dark = float(np.prod(sigma) ** (2 / 3)) * ndimage.gaussian_laplace(data, sigma)
        edge = np.ceil(sigma).astype(int)
        dark = dark[z_margin : data.shape[0] - z_margin or None, edge[1] : -edge[1] or None, edge[2] : -edge[2] or None]
        size = max(3, int(2 * np.max(sigma)) | 1)
        d, b = _strongest(dark, size, TOP_K), _strongest(-dark, size, TOP_K)
        if len(d) == 0 or len(b) == 0:
            continue
        d_mean, b_mean = float(d.mean()), float(b.mean())
        scores.append((d_mean - b_mean) / (d_mean + b_mean))
    return float(np.mean(scores)) if scores else 0.0


def estimate_polarity(volume: np.ndarray, voxel_size: float | Sequence[float]) -> PolarityEstimate:
    """``"dark"`` (protein darker than ice), ``"bright"`` (inverted) or ``"unclear"``, from :func:`polarity_score`."""
    score = polarity_score(volume, voxel_size)
    verdict = "dark" if score > MARGIN else "bright" if score < -MARGIN else "unclear"
    return PolarityEstimate(verdict, score)


def check_polarity_setting(polarity: str) -> str:
    """``polarity`` if it is one of :data:`POLARITIES`; else a :class:`~cryopoint.errors.ConfigError`."""
    if polarity not in POLARITIES:
        raise ConfigError(
            f"polarity must be one of {', '.join(POLARITIES)}; got {polarity!r}. 'dark': protein darker than the "
            "ice (the usual convention); 'bright': inverted; 'check': find out and warn; 'auto': find out and "
            "invert an inverted tomogram."
        )
    return polarity


def orient(volume: np.ndarray, voxel_size: float | Sequence[float], polarity: str):
    """``volume`` with protein dark, as the ``polarity`` setting says, and the estimate it was checked with.

    ``"dark"``: as it is, unchecked; ``"bright"``: inverted, unchecked; ``"check"``: checked, as it is;
    ``"auto"``: checked, inverted when it looks inverted. Returns ``(volume, estimate)`` (estimate None when
    unchecked); an inverted volume is a new array, the input is never modified. Callers warn as fits them.
    """
    check_polarity_setting(polarity)
    if polarity in ("dark", "bright"):
        return (volume if polarity == "dark" else -np.asarray(volume, dtype=np.float32)), None
    estimate = estimate_polarity(volume, voxel_size)
    if polarity == "auto" and estimate.polarity == "bright":
        return -np.asarray(volume, dtype=np.float32), estimate
    return volume, estimate
