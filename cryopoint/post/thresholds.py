"""Per-class score thresholds that maximise the exact challenge F-beta, found by one sweep per class.

A prediction is kept when ``score >= threshold``. Under the metric's many-to-one rule a true point counts
as found at threshold ``t`` iff at least one prediction covering it (same tomogram and type, within the
match distance) scores ``>= t``; so each true point has a *cover score* (the best score among the
predictions that cover it, ``-inf`` when none does) and, pooled over tomograms,

* ``TP(t)`` = number of true points with cover score ``>= t``,
* ``n_pred(t)`` = number of predictions with score ``>= t``, ``FP = n_pred - TP``, ``FN = n_true - TP``.

Both are step functions that change only at prediction scores, so evaluating them at every distinct score
(two sorted arrays and ``searchsorted``: O(n log n)) gives the exact F-beta curve; no grid. The tuned
threshold is the distinct score with the highest F-beta; ties go to the **lowest** such score (more
recall for the same F-beta, which is what beta = 4 favours). A class without predictions gets ``0.0``
(nothing to learn from; it keeps every non-negative score). A class with predictions but no true points
(or whose predictions never hit) has F-beta 0 everywhere and so keeps all its predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryopoint.errors import PicksFormatError
from cryopoint.metric import fbeta_from_counts, score, validate_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle

__all__ = ["ThresholdResult", "tune_thresholds", "apply_thresholds", "CURVE_COLUMNS"]

CURVE_COLUMNS = ("threshold", "tp", "fp", "fn", "precision", "recall", "fbeta")
#: Threshold given to a class that has no predictions to tune on.
NO_PREDICTIONS_THRESHOLD = 0.0


@dataclass(frozen=True)
class ThresholdResult:
    """Result of :func:`tune_thresholds`.

    Attributes:
        thresholds: ``{particle name: threshold}`` for every catalogue class (keep ``score >= threshold``).
        curves: ``{particle name: DataFrame}`` with :data:`CURVE_COLUMNS`, one row per distinct prediction
            score, ascending thresholds (empty for a class without predictions).
        score_before: Challenge score of all predictions (no threshold).
        score_after: Challenge score after :func:`apply_thresholds` with ``thresholds``.
        table: Per-class metric table after thresholding (as ``cryopoint.metric.score``).
    """

    thresholds: dict[str, float]
    curves: dict[str, pd.DataFrame]
    score_before: float
    score_after: float
    table: pd.DataFrame


def _check_scores(predictions: pd.DataFrame) -> np.ndarray:
    if "score" not in predictions.columns:
        raise PicksFormatError(
            "Predictions need a 'score' column to tune or apply thresholds; export picks with their scores."
        )
    scores = pd.to_numeric(predictions["score"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise PicksFormatError("Prediction scores must be finite numbers; found NaN, infinite or non-numeric ones.")
    return scores


def _cover_scores(truth: pd.DataFrame, preds: pd.DataFrame, radius: float) -> np.ndarray:
    """Best score among the predictions within ``radius`` Å of each true point (same experiment), -inf if none."""
    cover = np.full(len(truth), -np.inf)
    t_pos = {k: np.asarray(v) for k, v in truth.groupby("experiment").indices.items()} if len(truth) else {}
    for exp, p_rows in preds.groupby("experiment").indices.items() if len(preds) else ():
        t_rows = t_pos.get(exp)
        if t_rows is None:
            continue
        p_scores = preds["score"].to_numpy()[p_rows]
        tree = cKDTree(preds[["x", "y", "z"]].to_numpy()[p_rows])
        near = tree.query_ball_point(truth[["x", "y", "z"]].to_numpy()[t_rows], r=radius)
        cover[t_rows] = [p_scores[n].max() if n else -np.inf for n in near]
    return cover


def _class_curve(truth: pd.DataFrame, preds: pd.DataFrame, radius: float, beta: float) -> pd.DataFrame:
    """Exact F-beta curve of one class at every distinct prediction score (ascending)."""
    scores = np.sort(preds["score"].to_numpy())
    cover = np.sort(_cover_scores(truth, preds, radius))
    thresholds = np.unique(scores)
    n_pred = len(scores) - np.searchsorted(scores, thresholds, side="left")
    tp = len(cover) - np.searchsorted(cover, thresholds, side="left")
    precision, recall, fbeta = fbeta_from_counts(tp, np.full_like(tp, len(truth)), n_pred, beta)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "tp": tp,
            "fp": n_pred - tp,
            "fn": len(truth) - tp,
            "precision": precision,
            "recall": recall,
            "fbeta": fbeta,
        }
    )


def tune_thresholds(
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    *,
    tolerance: float = 0.0,
) -> ThresholdResult:
    """Per-class thresholds maximising each class's F-beta, pooled over tomograms (see module docstring).

    Since the challenge score is a weighted sum of per-class F-beta, the tuned thresholds also maximise the
    score over all per-class threshold choices (and so never do worse than any single fixed threshold).

    With ``tolerance > 0`` each class instead gets the **lowest** threshold whose F-beta is within
    ``tolerance`` (absolute) of that class's maximum. With β = 4 a threshold a little too low costs little
    and one a little too high costs a lot, and scores shift between tomograms and sources, so thresholds
    meant to travel (shipped in a checkpoint, tuned on few tomograms) should lean low.

    Args:
        truth: True picks, ``experiment, particle_type, x, y, z`` (Å), many tomograms.
        predictions: Scored predictions, the same columns plus ``score`` (higher = more confident).
        beta: F-beta's beta.
        distance_multiplier: Match distance as a fraction of the particle radius.
        tolerance: F-beta a class may give up for a lower threshold (0 = plain argmax).

    Returns:
        :class:`ThresholdResult`.

    Raises:
        PicksFormatError: missing columns, no ``score`` column or non-finite scores.
        UnknownParticleError: a particle type is not in the catalogue.

    >>> t = pd.DataFrame({"experiment": ["a"], "particle_type": ["ribosome"], "x": [0.0], "y": [0.0], "z": [0.0]})
    >>> p = pd.concat([t.assign(score=0.9), t.assign(x=900.0, score=0.95)])
    >>> tune_thresholds(t, p).thresholds["ribosome"]  # keeping both (F 0.944) beats keeping the miss only (F 0)
    0.9
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 (F-beta units); got {tolerance}.")
    truth = validate_picks(truth, "truth")
    predictions = validate_picks(predictions, "predictions")
    predictions["score"] = _check_scores(predictions)
    thresholds, curves = {}, {}
    for name in PARTICLE_NAMES:
        t_cls = truth[truth["particle_type"] == name]
        p_cls = predictions[predictions["particle_type"] == name]
        curve = _class_curve(t_cls, p_cls, distance_multiplier * get_particle(name).radius, beta)
        curves[name] = curve
        if curve.empty:
            thresholds[name] = NO_PREDICTIONS_THRESHOLD
        else:  # the first index reaching the bar: the lowest threshold among ties (and within the tolerance)
            fbeta = curve["fbeta"].to_numpy()
            first = int(np.argmax(fbeta >= fbeta.max() - tolerance))
            thresholds[name] = float(curve["threshold"].iloc[first])
    before = score(truth, predictions, beta, distance_multiplier).score
    after = score(truth, apply_thresholds(predictions, thresholds), beta, distance_multiplier)
    return ThresholdResult(thresholds, curves, before, after.score, after.table)


def apply_thresholds(picks: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """Keep the picks whose ``score >= thresholds[particle_type]``.

    Args:
        picks: Picks table with ``particle_type`` and ``score``.
        thresholds: ``{particle name: threshold}``; classes missing from it are kept unfiltered.

    Returns:
        A copy of the kept rows (original index kept).

    Raises:
        PicksFormatError: no ``score`` column or non-finite scores.
        UnknownParticleError: a name in ``thresholds`` is not in the catalogue.
    """
    for name in thresholds:
        get_particle(name)
    scores = _check_scores(picks)
    limit = picks["particle_type"].astype(str).map(thresholds).to_numpy(dtype=np.float64, na_value=-np.inf)
    return picks.loc[scores >= limit].copy()
