"""Per-tomogram thresholds from the tomogram's own noise: fit the tail of its peak scores, keep what stands out.

A model's scores do not keep their scale on tomograms unlike its training data, so thresholds tuned on its
validation runs sit too low on some data (hundreds of false positives per class) and the right level moves
from tomogram to tomogram. What a single tomogram does show, without labels or reference data, is the shape
of its own score distribution. Per class, the peaks ranked ``r = 1, 2, ...`` by falling score:

* most peaks are background: their number above a score ``s`` falls steeply and smoothly with ``s``;
  :func:`fit_noise_tail` fits ``log r = a + b s`` (``b < 0``) on the ranks whose density lies in
  ``FIT_DENSITY`` (peaks per µm³, deep enough that particles are a small share of them), which gives the
  expected number of background peaks above any score, ``noise(s) = exp(a + b s)``;
* particles add peaks above the background's extrapolated tail: ``excess(s) = r(s) - noise(s)`` estimates
  the particles kept at ``s``, and its maximum above the fit region estimates the particles present;
* with these counts the F-beta (beta = 4) of each candidate threshold can be estimated; the threshold is the
  score of the peak that maximises it.

:func:`noise_tail_thresholds` applies it per class and never returns a threshold below the model's own (the
``floor``): it only removes peaks. A class keeps its floor when the tomogram has too few peaks to fit, the fit
is not a steeply falling tail (``MIN_TAIL_STEEPNESS``), or no peaks stand above it.

With few particles against much background, the background's own fluctuations above its fitted tail count
as particles too: the rule then errs low, keeping more false positives than needed (never fewer particles).
The rule assumes that particles are a small share of the peaks in the fit region. In a packed sample they are
not: the background is overestimated and recall is lost. The steepness check catches the worst of it (a class
whose particles fill the region), not all (``post.noise_tail: false`` turns the rule off). The
robustness sweep's crowding rows say where that starts (``benchmarks/results/robustness_noise_tail.md``);
the rule is measured on held-out sources in ``benchmarks/results/noise_tail.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryopoint.errors import ConfigError

__all__ = ["FIT_DENSITY", "MIN_TAIL_STEEPNESS", "TailFit", "fit_noise_tail", "noise_tail_thresholds"]

#: Peaks per µm³ at the top and bottom of the ranks the background's tail is fitted on.
FIT_DENSITY = (5_000.0, 50_000.0)

#: The fit region needs at least this many peaks (and its bottom at least twice its top rank).
MIN_FIT_PEAKS = 10

#: The fitted tail must fall at least this steeply (per unit of score; 10: a decade of peaks within 0.23 of
#: score). A flatter one spans the scores particles have, which is what a packed sample gives when its particles
#: fill the fit region: no decision then (the floor stands).
MIN_TAIL_STEEPNESS = 10.0

#: Recall weighs ``BETA^2`` times more than precision (the challenge's F-beta).
BETA = 4.0


@dataclass(frozen=True)
class TailFit:
    """One class in one tomogram: the threshold the noise-tail rule picks and the counts behind it.

    Attributes:
        threshold: Score of the peak that maximises the estimated F-beta (before any floor).
        particles: Estimated particles of the class in the tomogram (peaks above the background's tail).
        noise_above: Expected background peaks at or above ``threshold``.
        kept: Peaks at or above ``threshold``.
        slope: ``b`` of the fit ``log rank = a + b score`` (negative).
        intercept: ``a`` of that fit.
    """

    threshold: float
    particles: float
    noise_above: float
    kept: int
    slope: float
    intercept: float


def fit_noise_tail(
    scores: np.ndarray,
    tomogram_um3: float,
    fit_density: tuple[float, float] = FIT_DENSITY,
    beta: float = BETA,
) -> TailFit | None:
    """Fit one class's background tail in one tomogram and pick the threshold (module docstring).

    Args:
        scores: Every peak score of the class in the tomogram (thresholds 0, i.e. ``>= post.min_score``).
        tomogram_um3: The tomogram's volume (:func:`cryopoint.post.adaptive.volume_um3`).
        fit_density: ``(top, bottom)`` of the fit region in peaks per µm³, ``0 < top < bottom``.
        beta: The F-beta's beta.

    Returns:
        The fit, or None when it cannot decide: too few peaks for the fit region, a tail that does not
        fall steeply enough to be background (:data:`MIN_TAIL_STEEPNESS`), or no peaks standing above it.

    >>> rng = np.random.default_rng(0)
    >>> background = rng.exponential(0.05, 5000)          # 5000 background peaks in 0.1 µm³
    >>> particles = rng.uniform(0.6, 1.0, 40)             # 40 particles scored far above them
    >>> fit = fit_noise_tail(np.concatenate([background, particles]), tomogram_um3=0.1)
    >>> 0.25 < fit.threshold < 0.6 and 38 <= fit.particles <= 50  # noise lifts the count a little: it errs low
    True
    """
    top, bottom = (float(d) for d in fit_density)
    if not 0 < top < bottom:
        raise ConfigError(f"fit_density must be (top, bottom) peaks per µm³ with 0 < top < bottom; got {fit_density}.")
    if not tomogram_um3 > 0:
        raise ConfigError(f"tomogram_um3 must be a positive volume in µm³; got {tomogram_um3}.")
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if not np.isfinite(s).all():
        raise ConfigError("scores hold NaN or Inf; the noise tail needs finite peak scores.")
    rank = np.arange(1, len(s) + 1, dtype=np.float64)
    i0 = math.ceil(top * tomogram_um3)
    i1 = min(math.ceil(bottom * tomogram_um3), len(s))
    if i1 - i0 < MIN_FIT_PEAKS or i1 < 2 * i0:
        return None
    x, y = s[i0:i1], np.log(rank[i0:i1])
    if np.ptp(x) <= 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    if not slope < -MIN_TAIL_STEEPNESS:  # flat: not a background tail (a packed sample's particles fill the region)
        return None
    noise = np.minimum(np.exp(intercept + slope * s), rank)  # expected background peaks at or above each score
    excess = np.maximum(rank - noise, 0.0)
    above = s > x.max()  # the peaks above the fit region: the only candidates
    if not above.any():
        return None
    particles = float(excess[above].max())
    if particles < 1:
        return None
    tp = np.minimum(excess, particles)
    b2 = beta * beta
    fbeta = (1 + b2) * tp / ((1 + b2) * tp + b2 * (particles - tp) + (rank - tp))
    fbeta[~above] = -1.0
    k = int(np.argmax(fbeta))
    return TailFit(
        threshold=float(s[k]),
        particles=particles,
        noise_above=float(noise[k]),
        kept=int(np.count_nonzero(s >= s[k])),
        slope=float(slope),
        intercept=float(intercept),
    )


def noise_tail_thresholds(
    peaks: pd.DataFrame,
    floor: Mapping[str, float],
    tomogram_um3: float,
    fit_density: tuple[float, float] = FIT_DENSITY,
) -> dict[str, float]:
    """One tomogram's per-class thresholds: ``floor``, raised to the noise-tail rule's where that is higher.

    Args:
        peaks: Every peak of this one tomogram (``particle_type``, ``score``), thresholds 0.
        floor: The model's thresholds; a returned threshold is never below them.
        tomogram_um3: This tomogram's volume (:func:`cryopoint.post.adaptive.volume_um3`).
        fit_density: The fit region (:data:`FIT_DENSITY`).

    Returns:
        ``{class: threshold}`` for every class of ``floor``.
    """
    out = {}
    for name, thr in floor.items():
        fit = fit_noise_tail(peaks.loc[peaks.particle_type == name, "score"].to_numpy(), tomogram_um3, fit_density)
        out[str(name)] = max(float(thr), fit.threshold) if fit is not None else float(thr)
    return out
