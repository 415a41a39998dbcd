"""The CZII challenge metric, reproduced exactly: per-class F-beta from a many-to-one ball query.

Rule (``shared/reference/task.md``): for each particle type and each tomogram (``experiment``), a true
point is found when at least one prediction of that type lies within ``distance_multiplier x radius`` Å
(Euclidean, ``<=``, the KD-tree ball query the leaderboard used). Then

* ``TP`` = number of distinct true points found; ``FP = n_pred - TP``; ``FN = n_true - TP``.
  This is *not* one-to-one: three predictions on one particle give TP 1, FP 2; one prediction between
  two close particles gives TP 2, FP -1 (precision above 1). That is what the leaderboard computed.
* TP, FP and FN are summed over tomograms per type (micro aggregation), then
  ``P = TP / (TP + FP)``, ``R = TP / (TP + FN)`` (0 when the denominator is 0) and
  ``F = (1 + b^2) P R / (b^2 P + R)`` (0 when ``P + R = 0``).
* The score is ``sum(F_type x weight_type) / sum(all weights)``; the denominator is always the total
  catalogue weight (7), even when a type is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryopoint.io.picks import check_picks_table
from cryopoint.particles import PARTICLE_NAMES, PARTICLES, total_weight

__all__ = ["ScoreResult", "score", "match_points", "fbeta_from_counts", "validate_picks"]

TABLE_COLUMNS = ("tp", "fp", "fn", "precision", "recall", "fbeta", "weight", "n_true", "n_pred")


@dataclass(frozen=True)
class ScoreResult:
    """Result of :func:`score`.

    Attributes:
        score: Weighted F-beta over all particle types (the challenge score, in [0, 1]).
        table: One row per catalogue particle type (index ``particle_type``, catalogue order) with
            columns ``tp, fp, fn, precision, recall, fbeta, weight, n_true, n_pred``.
    """

    score: float
    table: pd.DataFrame


def validate_picks(picks: pd.DataFrame, what: str) -> pd.DataFrame:
    """Check a picks table has the metric's columns and only catalogue particle names.

    Args:
        picks: Picks table with ``experiment, particle_type, x, y, z`` (Å).
        what: Name used in error messages (``"truth"``, ``"predictions"``).

    Returns:
        The same rows with ``experiment`` and ``particle_type`` as str and ``x, y, z`` as float64.

    Raises:
        PicksFormatError: a required column is missing or coordinates are not finite numbers.
        UnknownParticleError: a particle type is not in the catalogue.
    """
    check_picks_table(picks, source=what)
    out = picks.copy()
    out["experiment"] = out["experiment"].astype(str)
    out["particle_type"] = out["particle_type"].astype(str)
    xyz = out[["x", "y", "z"]].to_numpy(dtype=np.float64)
    out[["x", "y", "z"]] = xyz
    return out


def fbeta_from_counts(tp: np.ndarray, n_true: np.ndarray, n_pred: np.ndarray, beta: float = 4.0):
    """Precision, recall and F-beta from counts, with the challenge's zero conventions.

    Args:
        tp: True positives (distinct true points found), any shape.
        n_true: Number of true points, same shape.
        n_pred: Number of predictions, same shape (``TP + FP``).
        beta: Recall weighs ``beta^2`` times more than precision.

    Returns:
        ``(precision, recall, fbeta)`` float64 arrays; each is 0 where its denominator is 0.
    """
    tp, n_true, n_pred = (np.asarray(a, dtype=np.float64) for a in (tp, n_true, n_pred))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = np.where(n_true > 0, tp / n_true, 0.0)
        b2 = beta * beta
        fbeta = np.where(precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
    return precision, recall, fbeta


def _groups(df: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """``{(experiment, particle_type): row positions}`` for a validated picks table."""
    if df.empty:
        return {}
    return {k: np.asarray(v) for k, v in df.groupby(["experiment", "particle_type"], sort=False).indices.items()}


def _within(points: np.ndarray, others: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``points``: whether any row of ``others`` is within ``radius`` (``<=``), and the
    distance to the nearest one (``inf`` when ``others`` is empty). Both ``(N, 3)`` Å."""
    if len(points) == 0 or len(others) == 0:
        return np.zeros(len(points), dtype=bool), np.full(len(points), np.inf)
    tree = cKDTree(others)
    hit = tree.query_ball_point(points, r=radius, return_length=True) > 0
    nearest, _ = tree.query(points, k=1)
    return hit, np.asarray(nearest, dtype=np.float64)


def match_points(
    truth: pd.DataFrame, predictions: pd.DataFrame, distance_multiplier: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-point view of the metric's matching, for reports and error analysis.

    Args:
        truth: True picks (``experiment, particle_type, x, y, z`` Å).
        predictions: Predicted picks, same columns (+ optional ``score``).
        distance_multiplier: Match distance as a fraction of the particle radius (0.5 in the challenge).

    Returns:
        ``(pred_df, truth_df)``: copies of the inputs (original index kept) with ``hit`` / ``found`` (bool:
        a point of the same type and experiment lies within the match distance) and ``nearest_distance``
        (Å to the nearest point of the other table with the same type and experiment; ``inf`` if none).
        ``truth_df.found.sum()`` per type is the metric's TP.

    Raises:
        PicksFormatError, UnknownParticleError: as :func:`validate_picks`.
    """
    truth = validate_picks(truth, "truth")
    predictions = validate_picks(predictions, "predictions")
    radii = {p.name: distance_multiplier * p.radius for p in PARTICLES}
    t_xyz = truth[["x", "y", "z"]].to_numpy()
    p_xyz = predictions[["x", "y", "z"]].to_numpy()
    t_groups, p_groups = _groups(truth), _groups(predictions)
    found, t_near = np.zeros(len(truth), dtype=bool), np.full(len(truth), np.inf)
    hit, p_near = np.zeros(len(predictions), dtype=bool), np.full(len(predictions), np.inf)
    empty = np.zeros(0, dtype=np.int64)
    for key in set(t_groups) | set(p_groups):
        ti, pi = t_groups.get(key, empty), p_groups.get(key, empty)
        r = radii[key[1]]
        found[ti], t_near[ti] = _within(t_xyz[ti], p_xyz[pi], r)
        hit[pi], p_near[pi] = _within(p_xyz[pi], t_xyz[ti], r)
    truth["found"], truth["nearest_distance"] = found, t_near
    predictions["hit"], predictions["nearest_distance"] = hit, p_near
    return predictions, truth


def score(
    truth: pd.DataFrame, predictions: pd.DataFrame, beta: float = 4.0, distance_multiplier: float = 0.5
) -> ScoreResult:
    """The challenge score of ``predictions`` against ``truth``.

    Args:
        truth: True picks, ``experiment, particle_type, x, y, z`` (Å).
        predictions: Predicted picks, same columns (``score`` and other columns are ignored: threshold first).
        beta: F-beta's beta (4: recall weighs 16x more than precision).
        distance_multiplier: Match distance as a fraction of the particle radius (0.5 in the challenge).

    Returns:
        :class:`ScoreResult` with the weighted F-beta and the per-type table.

    Raises:
        PicksFormatError: missing columns or non-finite coordinates.
        UnknownParticleError: a particle type is not in the catalogue.

    >>> t = pd.DataFrame({"experiment": ["a"], "particle_type": ["ribosome"], "x": [0.0], "y": [0.0], "z": [0.0]})
    >>> score(t, t.assign(x=70.0)).score  # 70 Å <= 75 Å: found; ribosome has weight 1 of 7
    0.14285714285714285
    """
    pred_df, truth_df = match_points(truth, predictions, distance_multiplier)
    n_true = truth_df.groupby("particle_type").size().reindex(PARTICLE_NAMES, fill_value=0).to_numpy()
    n_pred = pred_df.groupby("particle_type").size().reindex(PARTICLE_NAMES, fill_value=0).to_numpy()
    tp = truth_df.groupby("particle_type")["found"].sum().reindex(PARTICLE_NAMES, fill_value=0).to_numpy()
    precision, recall, fbeta = fbeta_from_counts(tp, n_true, n_pred, beta)
    weight = np.array([p.weight for p in PARTICLES])
    table = pd.DataFrame(
        {
            "tp": tp.astype(np.int64),
            "fp": (n_pred - tp).astype(np.int64),
            "fn": (n_true - tp).astype(np.int64),
            "precision": precision,
            "recall": recall,
            "fbeta": fbeta,
            "weight": weight,
            "n_true": n_true.astype(np.int64),
            "n_pred": n_pred.astype(np.int64),
        },
        index=pd.Index(PARTICLE_NAMES, name="particle_type"),
    )
    return ScoreResult(score=float((fbeta * weight).sum() / total_weight()), table=table)
