"""Why each missed particle was missed: below its threshold, a peak off-centre, taken by another class, or no peak.

A miss is a true particle with no kept prediction of its class within the match distance (the metric's
``found``). Looking at every candidate pick before thresholds (the peak list) tells the causes apart, and they
call for different fixes:

* ``below threshold``: a candidate of the right class lies within the match distance, but scored under the
  threshold: a calibration or threshold problem (a lower threshold recovers it, at the cost of precision);
* ``off-centre``: the nearest candidate of the right class lies beyond the match distance but within
  ``near_factor`` times it: the particle was seen but its peak is misplaced (target shape, elongated
  particles, the missing wedge's z smear, NMS keeping the wrong maximum);
* ``other class``: no candidate of the right class nearby, but a kept pick of another class lies within the
  match distance: class confusion;
* ``no peak``: nothing of the right class within ``near_factor`` times the match distance and no other
  class on it: the detector did not see the particle at all.

The causes are tested in that order, so each miss has exactly one.

Which candidates to look at matters: a peak list cut at a tiny score holds so many picks that one lies near
any point by chance (2000 picks in a 96 x 320 x 320 tomogram put ~2 within 130 Å of any point). Reports
therefore judge misses against :func:`near_threshold` candidates, those scoring at least half their class's
threshold: a miss *below threshold* is one that halving the threshold would recover.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryopoint.errors import PicksFormatError
from cryopoint.metric import match_points, validate_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle

__all__ = ["CAUSES", "NEAR_THRESHOLD", "miss_causes", "miss_cause_table", "near_threshold"]

#: The causes, in the order they are tested.
CAUSES = ("below threshold", "off-centre", "other class", "no peak")

#: Candidates a report looks at: those scoring at least this fraction of their class's threshold.
NEAR_THRESHOLD = 0.5


def near_threshold(
    picks: pd.DataFrame, thresholds: Mapping[str, float], factor: float = NEAR_THRESHOLD
) -> pd.DataFrame:
    """The picks scoring at least ``factor`` times their class's threshold (classes without one: all kept).

    Raises:
        PicksFormatError: no ``score`` column.
    """
    if "score" not in picks:
        raise PicksFormatError("near_threshold needs a 'score' column in the picks (the peak list of detect()).")
    floor = picks["particle_type"].map({k: factor * float(v) for k, v in thresholds.items()}).fillna(-np.inf)
    return picks[picks["score"].to_numpy(float) >= floor.to_numpy(float)]


def _nearest(points: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of the nearest row of ``others`` for each row of ``points`` (inf / -1 if none)."""
    if len(points) == 0 or len(others) == 0:
        return np.full(len(points), np.inf), np.full(len(points), -1)
    dist, idx = cKDTree(others).query(points, k=1)
    return np.asarray(dist, dtype=np.float64), np.asarray(idx)


def miss_causes(
    truth: pd.DataFrame,
    kept: pd.DataFrame,
    candidates: pd.DataFrame | None = None,
    *,
    distance_multiplier: float = 0.5,
    near_factor: float = 2.0,
) -> pd.DataFrame:
    """The cause of every missed true particle.

    Args:
        truth: True picks (``experiment, particle_type, x, y, z`` Å).
        kept: The picks as scored (after thresholds): they decide which particles are missed, and a kept pick
            of another class on a miss makes it ``other class``.
        candidates: Every pick before thresholds (with or without ``score``); default ``kept`` (then no miss is
            ``below threshold``). Picks of runs absent from ``truth`` are ignored.
        distance_multiplier: The metric's match distance as a fraction of the particle radius (0.5).
        near_factor: ``off-centre`` reaches out to this many match distances (2: the particle's radius).

    Returns:
        One row per missed true particle (original index kept): its truth columns, ``cause`` (one of
        :data:`CAUSES`), ``own_distance`` (Å to the nearest candidate of its class in its run, inf if none),
        ``own_score`` (that candidate's score, NaN without scores or candidate) and ``other_class`` (the class
        of the nearest kept pick of another class within the match distance, "" if none).

    Raises:
        ValueError: ``near_factor`` below 1.
        PicksFormatError, UnknownParticleError: as :func:`cryopoint.metric.validate_picks`.
    """
    if near_factor < 1:
        raise ValueError(f"near_factor must be at least 1 (it scales the match distance); got {near_factor}.")
    kept = validate_picks(kept, "kept picks")
    candidates = kept if candidates is None else validate_picks(candidates, "candidate picks")
    _, matched = match_points(truth, kept, distance_multiplier)
    misses = matched[~matched["found"]].drop(columns=["found", "nearest_distance"])
    n = len(misses)
    cause, own_d = np.full(n, "", dtype=object), np.full(n, np.inf)
    own_s, other = np.full(n, np.nan), np.full(n, "", dtype=object)
    miss_xyz = misses[["x", "y", "z"]].to_numpy(float)
    cand_xyz, kept_xyz = candidates[["x", "y", "z"]].to_numpy(float), kept[["x", "y", "z"]].to_numpy(float)
    kept_cls = kept["particle_type"].to_numpy()
    cand_score = candidates["score"].to_numpy(float) if "score" in candidates else None
    empty = np.zeros(0, dtype=np.int64)
    cand_groups = candidates.groupby(["experiment", "particle_type"], sort=False).indices
    kept_by_run = kept.groupby("experiment", sort=False).indices
    for (exp, cls), pos in misses.groupby(["experiment", "particle_type"], sort=False).indices.items():
        match_r = distance_multiplier * get_particle(cls).radius
        xyz = miss_xyz[pos]
        own = cand_groups.get((exp, cls), empty)
        dist, idx = _nearest(xyz, cand_xyz[own])
        run = kept_by_run.get(exp, empty)
        others = run[kept_cls[run] != cls]
        o_dist, o_idx = _nearest(xyz, kept_xyz[others])
        on_other = o_dist <= match_r
        cause[pos] = np.where(
            dist <= match_r,
            CAUSES[0],
            np.where(dist <= near_factor * match_r, CAUSES[1], np.where(on_other, CAUSES[2], CAUSES[3])),
        )
        own_d[pos] = dist
        if on_other.any():
            other[pos[on_other]] = kept_cls[others[o_idx[on_other]]]
        if cand_score is not None and len(own):
            own_s[pos] = cand_score[own[idx]]
    return misses.assign(cause=cause, own_distance=own_d, own_score=own_s, other_class=other)


def miss_cause_table(causes: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Counts of :func:`miss_causes` per class, beside the class's true and missed totals.

    Returns:
        Indexed by particle name (catalogue order, classes with truth only), columns ``true``, ``missed`` and
        one per cause; the counts of a row add up to ``missed``.
    """
    names = [n for n in PARTICLE_NAMES if (truth["particle_type"] == n).any()]
    table = pd.DataFrame(0, index=pd.Index(names, name="particle_type"), columns=["true", "missed", *CAUSES])
    table["true"] = truth["particle_type"].value_counts().reindex(names).fillna(0).astype(int)
    if not causes.empty:
        counts = causes.groupby(["particle_type", "cause"]).size().unstack(fill_value=0)
        counts = counts.reindex(index=names, columns=list(CAUSES), fill_value=0)
        table[list(CAUSES)] = counts.to_numpy()
        table["missed"] = counts.sum(axis=1).to_numpy()
    return table
