"""Per-tomogram thresholds without labels: cap the density of kept peaks at a reference's.

A model's scores do not keep their scale on tomograms unlike its training data. On other simulators the
shipped model scores true particles near 1 but also scores clutter at 0.3-0.9, so its thresholds (tuned on
its own validation runs at ~0.1) keep hundreds of false positives per class (``benchmarks/results/
adaptive_thresholds.md``). What does travel is how many peaks per volume a class should keep: on the
reference data (tomograms like the training data) the shipped thresholds keep a known density of peaks per
class. On a new tomogram, :func:`density_thresholds` keeps at most ``alpha`` times that density: it raises a
class's threshold to the score of its ``k``-th best peak, ``k = ceil(alpha x density x volume)``, and never
lowers it below the tuned threshold (the ``floor``). No labels, one tomogram at a time.

The cap assumes a tomogram does not hold far more particles of a class per volume than the reference kept
peaks: a very crowded sample loses recall to it (turn it off with ``post.adaptive_alpha: 0``).

Densities are kept peaks per µm³ of tomogram (physical volume, so the voxel size does not matter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cryopoint.errors import ConfigError

__all__ = ["volume_um3", "kept_density", "density_thresholds", "density_ratios", "FLOOD_FACTOR", "FLOOD_MIN_PICKS"]

#: Å³ per µm³.
_A3_PER_UM3 = 1e12

#: A class whose picks in a tomogram are at least this many times denser than the reference density is reported
#: as possibly flooded with false positives (``tools/detect.py`` prints a note; nothing is removed).
FLOOD_FACTOR = 3.0

#: ... and holds at least this many picks (a handful of picks in a small volume is not evidence of anything).
FLOOD_MIN_PICKS = 20


def volume_um3(shape: Sequence[int], voxel_size: float | Sequence[float]) -> float:
    """Physical volume of a ``(z, y, x)`` array in µm³ (``voxel_size`` in Å, one value or z, y, x)."""
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    return float(np.prod(np.asarray(shape, dtype=np.float64)) * np.prod(vs) / _A3_PER_UM3)


def kept_density(peaks: pd.DataFrame, thresholds: Mapping[str, float], total_um3: float) -> dict[str, float]:
    """Per class, the peaks ``thresholds`` keep per µm³, pooled over the reference tomograms.

    Args:
        peaks: Every peak of the reference tomograms (``particle_type``, ``score``), thresholds 0.
        thresholds: The per-class thresholds whose kept density is measured (the model's tuned ones).
        total_um3: The reference tomograms' total volume (sum of :func:`volume_um3`).
    """
    if not total_um3 > 0:
        raise ConfigError(f"total_um3 must be a positive volume in µm³; got {total_um3}.")
    out = {}
    for name, thr in thresholds.items():
        scores = peaks.loc[peaks.particle_type == name, "score"].to_numpy()
        out[str(name)] = float((scores >= thr).sum() / total_um3)
    return out


def density_thresholds(
    peaks: pd.DataFrame,
    floor: Mapping[str, float],
    density: Mapping[str, float],
    tomogram_um3: float,
    alpha: float,
) -> dict[str, float]:
    """One tomogram's per-class thresholds: ``floor``, raised where it keeps more than ``alpha x density``.

    Args:
        peaks: Every peak of this one tomogram (``particle_type``, ``score``).
        floor: The tuned thresholds; a returned threshold is never below them.
        density: Reference kept peaks per µm³ per class (:func:`kept_density`); a class without one, or
            whose cap rounds to no peak (a zero density), keeps its floor.
        tomogram_um3: This tomogram's volume (:func:`volume_um3`).
        alpha: Multiple of the reference density kept (> 0).

    Returns:
        ``{class: threshold}`` for every class of ``floor``.

    >>> peaks = pd.DataFrame({"particle_type": ["ribosome"] * 4, "score": [0.9, 0.8, 0.3, 0.2]})
    >>> density_thresholds(peaks, {"ribosome": 0.1}, {"ribosome": 2.0}, tomogram_um3=1.0, alpha=1.0)
    {'ribosome': 0.8}
    """
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0 (a multiple of the reference density); got {alpha}.")
    out = {}
    for name, thr in floor.items():
        thr = float(thr)
        if name in density:
            k = math.ceil(alpha * float(density[name]) * tomogram_um3)
            scores = np.sort(peaks.loc[peaks.particle_type == name, "score"].to_numpy())[::-1]
            if 0 < k < len(scores):  # more peaks than the cap: the k-th best decides
                thr = max(thr, float(scores[k - 1]))
        out[str(name)] = thr
    return out


def density_ratios(picks: pd.DataFrame, density: Mapping[str, float], tomogram_um3: float) -> dict[str, float]:
    """Per class with a positive reference density, this tomogram's picks per µm³ over that reference.

    A label-free check of how well a model's thresholds fit a tomogram: on data like its reference the ratio
    is near 1 (fewer where the sample holds fewer particles); a ratio far above 1 means many more picks than
    the thresholds kept there, either a sample that crowded or, far more often on unfamiliar data, scores
    whose scale moved so that the thresholds sit low (``docs/models.md``).

    Args:
        picks: One tomogram's kept picks (``particle_type``).
        density: Reference kept peaks per µm³ per class (:func:`kept_density`); classes at 0 are left out.
        tomogram_um3: This tomogram's volume (:func:`volume_um3`).

    >>> picks = pd.DataFrame({"particle_type": ["ribosome"] * 6 + ["apo-ferritin"]})
    >>> density_ratios(picks, {"ribosome": 2.0, "apo-ferritin": 1.0, "thyroglobulin": 0.0}, tomogram_um3=1.0)
    {'ribosome': 3.0, 'apo-ferritin': 1.0}
    """
    if not tomogram_um3 > 0:
        raise ConfigError(f"tomogram_um3 must be a positive volume in µm³; got {tomogram_um3}.")
    counts = picks["particle_type"].value_counts() if len(picks) else pd.Series(dtype=int)
    return {
        str(name): float(counts.get(name, 0)) / tomogram_um3 / float(ref)
        for name, ref in density.items()
        if float(ref) > 0
    }
