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

How far the score must stand from 0 depends on the volume's size. The score compares the ``TOP_K`` strongest
blobs of each sign; a small volume holds few blob sites (:func:`blob_sites`), so its strongest blobs are a
large share of all of them and the score of a volume without any preferred contrast spreads wider. The verdict
margin (:func:`verdict_margin`) is ``MARGIN`` for volumes of at least ``REF_SITES`` sites and grows as
``sqrt(REF_SITES / sites)`` below; under ``MIN_SITES`` sites (for example 64 x 64 x 64 voxels of 10 Å) the
check declines to judge at all, and so it does for a thin volume whose analysed depth holds fewer than
``MIN_DEPTH_WINDOWS`` blob windows (48 slices of 10 Å): there every blob touches the top or bottom, and thin
crops of correctly oriented tomograms read as inverted. The constants come from the spread of the score on
phase-randomised copies of simulated crops (same power spectrum, no structure) and from the verdicts on the
crops themselves, measured in ``benchmarks/polarity.py``.
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
    "blob_sites",
    "check_polarity_setting",
    "estimate_polarity",
    "label_contrast",
    "label_verdict",
    "margin_for_sites",
    "orient",
    "polarity_score",
    "verdict_margin",
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
#: Volumes with at least this many blob sites (:func:`blob_sites`) get the plain ``MARGIN``; smaller ones a wider one.
REF_SITES = 135.0
#: Volumes with fewer blob sites than this are too small to judge: always ``"unclear"``.
MIN_SITES = 32.0
#: Volumes whose analysed depth holds fewer local-maximum windows than this are too thin to judge.
MIN_DEPTH_WINDOWS = 2.0
#: With labels (training runs): the ball around each labelled centre, as a fraction of the particle's radius.
LABEL_BALL = 0.8
#: Labelled runs: how far (robust sds) the particles' mean must stand from the median to give a verdict.
LABEL_MARGIN = 0.1
#: Labelled runs with fewer labelled centres inside the volume than this are judged without their labels.
MIN_LABELS = 5


@dataclass(frozen=True)
class PolarityEstimate:
    """The verdict (``"dark"``, ``"bright"`` or ``"unclear"``), the score it came from (positive: dark), and the
    margin the score had to pass for this volume's size (infinite: too small to judge, :func:`verdict_margin`)."""

    polarity: str
    score: float
    margin: float = MARGIN


def _work_geometry(shape: Sequence[int], voxel_size: float | Sequence[float]):
    """Zoom to the working voxel size, and the working voxel size per axis, for a volume of ``shape``."""
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    if len(shape) != 3 or not np.all(vs > 0):
        raise ConfigError(f"polarity needs a 3D (z, y, x) volume and positive voxel sizes; got {tuple(shape)}, {vs}.")
    zoom = np.minimum(vs / WORK_VOXEL_A, 1.0)
    return zoom, vs / zoom


def _analysed(shape: Sequence[int], sigma: np.ndarray) -> tuple[slice, slice, slice]:
    """The part of a working volume of ``shape`` the blobs are looked for in: without the slab's top and bottom
    sixth (the least sample, the most artefacts) and a ``sigma`` rim in y and x."""
    z_margin = shape[0] // 6
    edge = np.ceil(sigma).astype(int)
    return (
        slice(z_margin, shape[0] - z_margin or None),
        slice(edge[1], -edge[1] or None),
        slice(edge[2], -edge[2] or None),
    )


def _window(sigma: np.ndarray) -> int:
    """Side of the local-maximum window for blobs of LoG scale ``sigma`` (working voxels)."""
    return max(3, int(2 * np.max(sigma)) | 1)


def _analysed_sides(shape: Sequence[int], voxel_size: float | Sequence[float]) -> tuple[list[int], int]:
    """Sides (z, y, x working voxels) of the part of a ``shape`` volume the check looks at, and the side of the
    local-maximum window at the largest of ``SCALES_A``."""
    zoom, work_vs = _work_geometry(shape, voxel_size)
    work = np.round(np.asarray(shape, dtype=np.float64) * zoom).astype(int)
    sigma = max(SCALES_A) / work_vs
    region = _analysed(tuple(work), sigma)
    return [len(range(*r.indices(int(n)))) for r, n in zip(region, work)], _window(sigma)


def blob_sites(shape: Sequence[int], voxel_size: float | Sequence[float]) -> float:
    """How many separate blobs of the largest scale fit in the part of a ``shape`` volume the check looks at.

    The analysed volume (working voxels) over the local-maximum window's volume, at the largest of ``SCALES_A``.

    >>> round(blob_sites((96, 256, 256), 10.0)), round(blob_sites((64, 128, 128), 10.0))
    (632, 95)
    >>> blob_sites((48, 128, 128), 1.0)  # the same voxels at 1 Å: far too small for even one particle-sized blob
    0.0
    """
    sides, window = _analysed_sides(shape, voxel_size)
    return float(np.prod(sides)) / window**3


def verdict_margin(shape: Sequence[int], voxel_size: float | Sequence[float]) -> float:
    """How far from 0 the score of a volume of this size must be for a verdict (module docstring).

    ``MARGIN`` from ``REF_SITES`` blob sites up, ``MARGIN * sqrt(REF_SITES / sites)`` below; infinite (never a
    verdict) under ``MIN_SITES`` sites or when the analysed depth holds fewer than ``MIN_DEPTH_WINDOWS`` blob
    windows (a thin volume: its blobs all touch its top or bottom).

    >>> verdict_margin((96, 256, 256), 10.0) == MARGIN, round(verdict_margin((64, 128, 128), 10.0), 3)
    (True, 0.06)
    >>> verdict_margin((32, 96, 96), 10.0), verdict_margin((48, 256, 256), 10.0)  # too small; too thin
    (inf, inf)
    """
    sides, window = _analysed_sides(shape, voxel_size)
    if sides[0] < MIN_DEPTH_WINDOWS * window:
        return float("inf")
    return margin_for_sites(float(np.prod(sides)) / window**3)


def margin_for_sites(sites: float) -> float:
    """The verdict margin of a volume deep enough to judge that holds ``sites`` blob sites (:func:`verdict_margin`).

    >>> margin_for_sites(500.0) == MARGIN, margin_for_sites(10.0)
    (True, inf)
    """
    if sites < MIN_SITES:
        return float("inf")
    return MARGIN * max(1.0, float(np.sqrt(REF_SITES / sites)))


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
    zoom, work_vs = _work_geometry(np.shape(volume), voxel_size)
    # Binned first (in float64: raw reconstructions hold tiny variations on a large offset, which float32 would
    # round away), then centred and scaled: one pass over the full volume, none over a full-size copy.
    if np.any(zoom < 0.99):
        data = ndimage.zoom(np.asarray(volume), zoom, order=1, output=np.float64)
    else:
        data = np.asarray(volume, dtype=np.float64)
    data = ((data - data.mean()) / (data.std() or 1.0)).astype(np.float32)
    scores = []
    for scale in SCALES_A:
        sigma = scale / work_vs
        # Scale-normalised LoG: positive at the centre of a dark blob, negative at a bright one.
        dark = float(np.prod(sigma) ** (2 / 3)) * ndimage.gaussian_laplace(data, sigma)
        dark = dark[_analysed(data.shape, sigma)]
        size = _window(sigma)
        d, b = _strongest(dark, size, TOP_K), _strongest(-dark, size, TOP_K)
        if len(d) == 0 or len(b) == 0:
            continue
        d_mean, b_mean = float(d.mean()), float(b.mean())
        scores.append((d_mean - b_mean) / (d_mean + b_mean))
    return float(np.mean(scores)) if scores else 0.0


def estimate_polarity(volume: np.ndarray, voxel_size: float | Sequence[float]) -> PolarityEstimate:
    """``"dark"`` (protein darker than ice), ``"bright"`` (inverted) or ``"unclear"``, from :func:`polarity_score`
    against this volume's :func:`verdict_margin` (a volume too small to judge is ``"unclear"``)."""
    margin = verdict_margin(np.shape(volume), voxel_size)
    score = polarity_score(volume, voxel_size)
    verdict = "dark" if score > margin else "bright" if score < -margin else "unclear"
    return PolarityEstimate(verdict, score, margin)


def label_contrast(
    volume: np.ndarray, voxel_size: float | Sequence[float], points_zyx: np.ndarray, radii_a: Sequence[float]
) -> float | None:
    """How much darker than the tomogram the labelled particles are, in robust standard deviations (negative: dark).

    The mean of ``volume`` inside a ball of ``LABEL_BALL`` x each particle's radius around each labelled centre,
    minus the volume's median, over its robust sd (1.4826 x MAD; both from every second voxel per axis). The ball
    reaches the shell of hollow particles (apo-ferritin's cage, a capsid), whose centres are ice. None when fewer
    than ``MIN_LABELS`` centres lie inside the volume: too few to judge.

    Args:
        volume: ``(Z, Y, X)`` tomogram, raw or normalised.
        voxel_size: Å per voxel, one value or ``(z, y, x)``.
        points_zyx: ``(N, 3)`` labelled centres in voxels ``(z, y, x)``.
        radii_a: ``(N,)`` the particles' radii in Å.
    """
    vol = np.asarray(volume)
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    inside = np.all((pts >= 0) & (pts <= np.array(vol.shape) - 1), axis=1)
    if int(inside.sum()) < MIN_LABELS:
        return None
    sample = np.asarray(vol[::2, ::2, ::2], dtype=np.float64)
    median = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - median))) or float(sample.std()) or 1.0
    total, count = 0.0, 0
    for c, r in zip(pts[inside], np.asarray(radii_a, dtype=np.float64)[inside]):
        half = LABEL_BALL * r / vs
        lo = np.maximum(np.floor(c - half).astype(int), 0)
        hi = np.minimum(np.ceil(c + half).astype(int) + 1, vol.shape)
        grid = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        ball = sum(((g - ci) / h) ** 2 for g, ci, h in zip(grid, c, half)) <= 1.0
        values = np.asarray(vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float64)[ball]
        total, count = total + float(values.sum()), count + values.size
    return (total / max(count, 1) - median) / spread


def label_verdict(contrast: float | None) -> str | None:
    """``"dark"``, ``"bright"`` or ``"unclear"`` from :func:`label_contrast` (None: no labels to judge by)."""
    if contrast is None:
        return None
    return "dark" if contrast < -LABEL_MARGIN else "bright" if contrast > LABEL_MARGIN else "unclear"


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
