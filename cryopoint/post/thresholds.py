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

That argmax is optimal on the tomograms it was tuned on, and optimistic anywhere else: with few tomograms it
follows their noise, and with β = 4 a threshold a little too high costs far more than one a little too low.
Two other choice rules (``rule=``) are meant for thresholds that must travel: ``"lean"`` (the lowest threshold
within a tolerance of the best) and ``"bootstrap"`` (the argmax of the F-beta curve averaged over tomograms
resampled with replacement). What a rule is worth is measured honestly by :func:`cross_fold_score`: each fold
(or tomogram) is scored with thresholds tuned on the others. :func:`tune_out_of_fold` pools the out-of-fold
predictions of several folds and tunes once. Every function here is pure and deterministic (given ``seed``)
and independent of row order.

**A prior.** Thresholds that already exist (a checkpoint's, tuned on many runs of other data) carry
information that a few labelled tomograms of new data cannot replace: tuned on one to eight tomograms, a
class's argmax follows their noise and can land further from the new data's best threshold than the old one.
With ``prior=`` each class's chosen threshold is shrunk toward the prior's by the number of labelled particles
behind it: ``(n * chosen + s * prior) / (n + s)`` (:func:`shrink_to_prior`), ``s = prior_strength`` particles.
A class with no labelled particle keeps the prior; with hundreds the data decide. What it is worth on held-out
data: ``python -m benchmarks.labelled_runs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryopoint.config import PostConfig
from cryopoint.errors import ConfigError, PicksFormatError
from cryopoint.metric import fbeta_from_counts, score, validate_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle

__all__ = [
    "ThresholdResult",
    "CrossFoldResult",
    "tune_thresholds",
    "tune_out_of_fold",
    "cross_fold_score",
    "folds_by_tomogram",
    "apply_thresholds",
    "shrink_to_prior",
    "CURVE_COLUMNS",
    "RULES",
    "DEFAULT_PRIOR_STRENGTH",
]

CURVE_COLUMNS = ("threshold", "tp", "fp", "fn", "precision", "recall", "fbeta")
#: Threshold given to a class that has no predictions to tune on.
NO_PREDICTIONS_THRESHOLD = 0.0
#: Names of the threshold choice rules (see :func:`tune_thresholds`).
RULES = ("argmax", "lean", "bootstrap")
#: Bootstrap resamples of the ``"bootstrap"`` rule by default.
DEFAULT_N_BOOT = 200
#: Labelled particles of a class at which its tuned threshold and a prior threshold weigh the same (``prior=``);
#: chosen on held-out sources of the generalisation benchmark (``benchmarks/labelled_runs.py``, docs/models.md).
DEFAULT_PRIOR_STRENGTH = PostConfig.threshold_prior_strength


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
        rule: The choice rule used (``"argmax"``, ``"lean"`` or ``"bootstrap"``).
        chosen: ``{particle name: threshold}`` the rule chose on the data alone; equal to ``thresholds``
            unless a prior was given.
        prior_strength: The prior's weight in labelled particles per class, or ``None`` without a prior.
    """

    thresholds: dict[str, float]
    curves: dict[str, pd.DataFrame]
    score_before: float
    score_after: float
    table: pd.DataFrame
    rule: str = "argmax"
    chosen: dict[str, float] | None = None
    prior_strength: float | None = None


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


def _class_counts(truth: pd.DataFrame, preds: pd.DataFrame, radius: float, experiments: list[str]):
    """Per-tomogram counts of one class at every distinct prediction score (ascending).

    Returns:
        ``(thresholds (T,), tp (G, T), n_pred (G, T), n_true (G,))`` with one row per name in ``experiments``.
    """
    thresholds = np.unique(preds["score"].to_numpy())
    row = {e: i for i, e in enumerate(experiments)}
    tp = np.zeros((len(experiments), len(thresholds)), dtype=np.int64)
    n_pred, n_true = np.zeros_like(tp), np.zeros(len(experiments), dtype=np.int64)
    cover = _cover_scores(truth, preds, radius)
    for exp, rows in truth.groupby("experiment").indices.items() if len(truth) else ():
        c = np.sort(cover[rows])
        tp[row[exp]] = len(c) - np.searchsorted(c, thresholds, side="left")
        n_true[row[exp]] = len(rows)
    scores = preds["score"].to_numpy()
    for exp, rows in preds.groupby("experiment").indices.items() if len(preds) else ():
        s = np.sort(scores[rows])
        n_pred[row[exp]] = len(s) - np.searchsorted(s, thresholds, side="left")
    return thresholds, tp, n_pred, n_true


def _curve_frame(thresholds: np.ndarray, tp: np.ndarray, n_pred: np.ndarray, n_true: int, beta: float) -> pd.DataFrame:
    precision, recall, fbeta = fbeta_from_counts(tp, np.full_like(tp, n_true), n_pred, beta)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "tp": tp,
            "fp": n_pred - tp,
            "fn": n_true - tp,
            "precision": precision,
            "recall": recall,
            "fbeta": fbeta,
        }
    )


def _bootstrap_fbeta(weights: np.ndarray, tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray, beta: float):
    """Mean over bootstrap resamples (rows of ``weights``: how often each tomogram was drawn) of the pooled
    F-beta curve of the resampled tomograms."""
    w = weights.astype(np.float64)
    tp_b, pred_b = w @ tp, w @ n_pred  # (B, T): counts of each resample, pooled like the metric pools
    true_b = np.broadcast_to((w @ n_true)[:, None], tp_b.shape)
    return fbeta_from_counts(tp_b, true_b, pred_b, beta)[2].mean(axis=0)


def _first_within(values: np.ndarray, tolerance: float) -> int:
    """Index of the lowest threshold whose value is within ``tolerance`` of the maximum (ties: the lowest)."""
    return int(np.argmax(values >= values.max() - tolerance))


def shrink_to_prior(
    chosen: Mapping[str, float],
    prior: Mapping[str, float],
    counts: Mapping[str, int],
    strength: float = DEFAULT_PRIOR_STRENGTH,
) -> dict[str, float]:
    """Per class ``(n * chosen + strength * prior) / (n + strength)``, ``n = counts[class]`` (0 when absent).

    ``chosen``: thresholds a rule picked on labelled data; ``prior``: thresholds known beforehand (a class it
    leaves out has no prior and keeps its choice, as a checkpoint tuned for some classes only); ``counts``:
    labelled particles per class behind ``chosen``; ``strength``: the prior's weight in particles (0 returns
    ``chosen``).

    >>> shrink_to_prior({"ribosome": 0.5, "apo-ferritin": 0.3}, {"ribosome": 0.2}, {"ribosome": 75}, strength=25)
    {'ribosome': 0.425, 'apo-ferritin': 0.3}

    Raises:
        ConfigError: a negative or non-finite strength, or a non-finite prior threshold.
    """
    strength = float(strength)
    if not np.isfinite(strength) or strength < 0:
        raise ConfigError(f"The prior strength must be a finite number of particles >= 0; got {strength}.")
    out = {}
    for name, value in chosen.items():
        if name not in prior:
            out[name] = float(value)
            continue
        p = float(prior[name])
        if not np.isfinite(p):
            raise ConfigError(f"The prior threshold of {name} is {p}; prior thresholds must be finite numbers.")
        n = max(int(counts.get(name, 0)), 0)
        out[name] = float(value) if n + strength == 0 else (n * float(value) + strength * p) / (n + strength)
    return out


def _resolve_rule(rule: str | None, tolerance: float, n_boot: int) -> str:
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0 (F-beta units); got {tolerance}.")
    if rule is None:  # the historical behaviour: tolerance 0 is argmax, a positive one the lean rule
        return "lean" if tolerance > 0 else "argmax"
    if rule not in RULES:
        raise ConfigError(f"Unknown threshold rule {rule!r}; choose one of {', '.join(RULES)}.")
    if rule == "argmax" and tolerance > 0:
        raise ConfigError(f"rule 'argmax' takes no tolerance (got {tolerance}); use rule 'lean' for a tolerance.")
    if rule == "lean" and tolerance == 0:
        raise ConfigError("rule 'lean' needs a tolerance > 0 (e.g. 0.05); with 0 it is 'argmax'.")
    if rule == "bootstrap" and not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ConfigError(f"n_boot must be a positive integer (bootstrap resamples); got {n_boot!r}.")
    return rule


def tune_thresholds(
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    *,
    tolerance: float = 0.0,
    rule: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    prior: Mapping[str, float] | None = None,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> ThresholdResult:
    """Per-class thresholds chosen on the exact F-beta curve pooled over tomograms (see module docstring).

    Rules (``rule``; by default ``"lean"`` when ``tolerance > 0``, else ``"argmax"``):

    * ``"argmax"``: the threshold with the highest pooled F-beta (lowest among ties). Since the challenge
      score is a weighted sum of per-class F-beta, these thresholds also maximise the score over all per-class
      threshold choices (and so never do worse than any single fixed threshold) *on these tomograms*.
    * ``"lean"``: the **lowest** threshold whose pooled F-beta is within ``tolerance`` (absolute) of the
      class's maximum. With β = 4 a threshold a little too low costs little and one a little too high costs a
      lot, and scores shift between tomograms and sources, so thresholds meant to travel should lean low.
    * ``"bootstrap"``: resample the tomograms with replacement ``n_boot`` times (``seed`` fixes the draws,
      shared by all classes), compute each resample's pooled F-beta curve, average the curves and take the
      argmax of the average (or, with ``tolerance > 0``, the lowest threshold within it of the average's
      maximum). A threshold that is right for only one tomogram loses weight; F-beta's steep fall above the
      best threshold (β = 4) pulls the choice low. With one tomogram, or identical tomograms, it is argmax.
      The class curves then carry an extra column ``fbeta_bootstrap``.

    Args:
        truth: True picks, ``experiment, particle_type, x, y, z`` (Å), many tomograms.
        predictions: Scored predictions, the same columns plus ``score`` (higher = more confident).
        beta: F-beta's beta.
        distance_multiplier: Match distance as a fraction of the particle radius.
        tolerance: F-beta a class may give up for a lower threshold (``"lean"``, ``"bootstrap"``).
        rule: ``"argmax"``, ``"lean"`` or ``"bootstrap"`` (see above).
        n_boot: Bootstrap resamples (``"bootstrap"`` only).
        seed: Seed of the bootstrap draws; the result is deterministic given it and independent of row order.
        prior: ``{particle name: threshold}`` known beforehand (e.g. ``cryopoint.load("default").thresholds``):
            each class's choice is shrunk toward it by :func:`shrink_to_prior` with the class's true points here
            as ``n``. ``None``: the rule's choice stands.
        prior_strength: The prior's weight in particles (:data:`DEFAULT_PRIOR_STRENGTH`).

    Returns:
        :class:`ThresholdResult` (``score_after`` and ``table`` at the final, shrunk thresholds).

    Raises:
        PicksFormatError: missing columns, no ``score`` column or non-finite scores.
        UnknownParticleError: a particle type is not in the catalogue.
        ConfigError: unknown rule, negative tolerance, a rule/tolerance pair that contradicts itself, bad n_boot,
            or a bad prior (as :func:`shrink_to_prior`).

    >>> t = pd.DataFrame({"experiment": ["a"], "particle_type": ["ribosome"], "x": [0.0], "y": [0.0], "z": [0.0]})
    >>> p = pd.concat([t.assign(score=0.9), t.assign(x=900.0, score=0.95)])
    >>> tune_thresholds(t, p).thresholds["ribosome"]  # keeping both (F 0.944) beats keeping the miss only (F 0)
    0.9
    """
    rule = _resolve_rule(rule, tolerance, n_boot)
    truth = validate_picks(truth, "truth")
    predictions = validate_picks(predictions, "predictions")
    predictions["score"] = _check_scores(predictions)
    experiments = sorted(set(truth["experiment"]) | set(predictions["experiment"]))
    weights = None
    if rule == "bootstrap":  # one set of draws for every class: the tomogram is the unit that varies
        n = len(experiments)
        weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot) if n else None
    thresholds, curves = {}, {}
    for name in PARTICLE_NAMES:
        t_cls = truth[truth["particle_type"] == name]
        p_cls = predictions[predictions["particle_type"] == name]
        radius = distance_multiplier * get_particle(name).radius
        cand, tp, n_pred, n_true = _class_counts(t_cls, p_cls, radius, experiments)
        curve = _curve_frame(cand, tp.sum(axis=0), n_pred.sum(axis=0), int(n_true.sum()), beta)
        if curve.empty:
            thresholds[name] = NO_PREDICTIONS_THRESHOLD
        else:
            choose_on = curve["fbeta"].to_numpy()
            if weights is not None:
                choose_on = _bootstrap_fbeta(weights, tp, n_pred, n_true, beta)
                curve["fbeta_bootstrap"] = choose_on
            thresholds[name] = float(cand[_first_within(choose_on, tolerance)])
        curves[name] = curve
    chosen = dict(thresholds)
    if prior is not None:
        counts = truth["particle_type"].value_counts().to_dict()
        thresholds = shrink_to_prior(chosen, prior, counts, prior_strength)
    before = score(truth, predictions, beta, distance_multiplier).score
    after = score(truth, apply_thresholds(predictions, thresholds), beta, distance_multiplier)
    strength = None if prior is None else float(prior_strength)
    return ThresholdResult(thresholds, curves, before, after.score, after.table, rule, chosen, strength)


def _fold_frames(folds) -> dict[str, pd.DataFrame]:
    """``folds`` (a mapping name -> predictions, or a sequence of predictions) as ``{name: frame}``, checked
    to share no tomogram."""
    named = (
        {str(k): v for k, v in folds.items()}
        if isinstance(folds, Mapping)
        else {str(i): f for i, f in enumerate(folds)}
    )
    owner: dict[str, str] = {}
    for name, frame in named.items():
        if "experiment" not in frame.columns:
            raise PicksFormatError(f"Fold {name}'s predictions have no 'experiment' column.")
        for exp in set(frame["experiment"].astype(str)):
            if exp in owner:
                raise PicksFormatError(
                    f"Tomogram {exp} is in the predictions of folds {owner[exp]} and {name}; out-of-fold predictions "
                    "hold each tomogram once (the fold that held it out). Pass each fold's validation predictions only."
                )
            owner[exp] = name
    return named


def tune_out_of_fold(
    truth: pd.DataFrame,
    folds,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    *,
    rule: str | None = None,
    tolerance: float = 0.0,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    prior: Mapping[str, float] | None = None,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> ThresholdResult:
    """Thresholds tuned once on the out-of-fold predictions of several folds, pooled.

    Each fold's predictions are those of the model that did not train on them (its validation tomograms);
    pooled, they cover every tomogram once and give more points per class than any one fold.

    Args:
        truth: True picks; only the tomograms present in some fold's predictions are used (a tomogram of the
            dataset that no fold predicted, e.g. a training run of every fold, would count as all missed).
        folds: ``{fold name: predictions}`` or a sequence of predictions frames, one per fold.
        beta, distance_multiplier: As :func:`tune_thresholds`.
        rule, tolerance, n_boot, seed, prior, prior_strength: The choice rule, its options and a prior, as
            :func:`tune_thresholds`.

    Returns:
        :class:`ThresholdResult` of the pooled predictions.

    Raises:
        PicksFormatError: a tomogram is in two folds, or the errors of :func:`tune_thresholds`.
        ValueError: no folds.
    """
    named = _fold_frames(folds)
    if not named:
        raise ValueError("tune_out_of_fold needs at least one fold's predictions.")
    pooled = pd.concat(list(named.values()), ignore_index=True)
    runs = set(pooled["experiment"].astype(str))
    truth = truth[truth["experiment"].astype(str).isin(runs)] if "experiment" in truth.columns else truth
    opts = {"rule": rule, "tolerance": tolerance, "n_boot": n_boot, "seed": seed}
    opts.update(prior=prior, prior_strength=prior_strength)
    return tune_thresholds(truth, pooled, beta, distance_multiplier, **opts)


@dataclass(frozen=True)
class CrossFoldResult:
    """Result of :func:`cross_fold_score`.

    Attributes:
        score: The honest score: every fold's predictions thresholded with thresholds tuned (by the chosen
            rule) on the *other* folds, all folds then scored together (pooled like the metric).
        oracle: The same predictions scored with argmax thresholds tuned on all folds (optimistic).
        table: Per-class metric table of the honest score.
        oracle_table: Per-class metric table of the oracle score.
        thresholds: ``{fold: {particle: threshold}}``, each tuned without that fold.
        per_fold: One row per fold (index: fold name): ``tomograms`` (count), ``n_true``, ``score`` (the fold
            alone with the others' thresholds) and ``oracle`` (the fold alone with argmax thresholds tuned on
            itself). ``score <= oracle`` holds per fold; the pooled ``score`` is *not* bounded by the pooled
            ``oracle`` (each fold has its own thresholds, a richer choice than one set for all).
        rule: The rule used for the honest thresholds.
        picks: The picks the honest score counts: every fold's predictions kept at its thresholds.
    """

    score: float
    oracle: float
    table: pd.DataFrame
    oracle_table: pd.DataFrame
    thresholds: dict[str, dict[str, float]]
    per_fold: pd.DataFrame
    rule: str
    picks: pd.DataFrame


def folds_by_tomogram(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One fold per tomogram (``experiment``): the folds of leave-one-tomogram-out evaluation."""
    if "experiment" not in predictions.columns:
        raise PicksFormatError("Predictions need an 'experiment' column to split them by tomogram.")
    exp = predictions["experiment"].astype(str)
    return {name: predictions[exp == name] for name in sorted(set(exp))}


def cross_fold_score(
    truth: pd.DataFrame,
    folds,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    *,
    rule: str | None = None,
    tolerance: float = 0.0,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    prior: Mapping[str, float] | None = None,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> CrossFoldResult:
    """The honest score of a threshold rule: each fold scored with thresholds tuned on the other folds.

    Use the folds of a k-fold training (each fold's out-of-fold predictions) or, for one model validated on
    several tomograms, :func:`folds_by_tomogram` (leave one tomogram out). Compare ``score`` with ``oracle``:
    the gap is what tuning on the answers adds.

    Args:
        truth: True picks; only the tomograms present in some fold's predictions are used.
        folds: ``{fold name: predictions}`` or a sequence of predictions frames (at least two, disjoint tomograms).
        beta, distance_multiplier: As :func:`tune_thresholds`.
        rule, tolerance, n_boot, seed, prior, prior_strength: The choice rule of the honest thresholds, its
            options and a prior, as :func:`tune_thresholds` (the oracle is always argmax, without a prior).

    Returns:
        :class:`CrossFoldResult`.

    Raises:
        ValueError: fewer than two folds (with one fold nothing is left to tune on; use :func:`tune_thresholds`,
            whose ``score_after`` is the optimistic score).
        PicksFormatError: a tomogram in two folds, or the errors of :func:`tune_thresholds`.
    """
    rule = _resolve_rule(rule, tolerance, n_boot)
    opts = {"rule": rule, "tolerance": tolerance, "n_boot": n_boot, "seed": seed}
    opts.update(prior=prior, prior_strength=prior_strength)
    named = _fold_frames(folds)
    if len(named) < 2:
        raise ValueError(
            f"Cross-fold evaluation needs at least 2 folds (each is scored with thresholds tuned on the others); got "
            f"{len(named)}. With one fold, tune_thresholds(...).score_after is the (optimistic) tuned-on-itself score."
        )
    truth = validate_picks(truth, "truth")
    named = {k: validate_picks(v, f"predictions of fold {k}") for k, v in named.items()}
    runs = {k: set(v["experiment"]) for k, v in named.items()}
    truth = truth[truth["experiment"].isin(set().union(*runs.values()))]
    kept, thresholds, rows = [], {}, []
    for name, preds in named.items():
        others = [v for k, v in named.items() if k != name]
        tuned = tune_out_of_fold(truth, others, beta, distance_multiplier, **opts)
        thresholds[name] = tuned.thresholds
        held = apply_thresholds(preds, tuned.thresholds)
        kept.append(held)
        t_fold = truth[truth["experiment"].isin(runs[name])]
        own = tune_thresholds(t_fold, preds, beta, distance_multiplier)
        fold_score = score(t_fold, held, beta, distance_multiplier).score
        rows.append(
            {
                "fold": name,
                "tomograms": len(runs[name]),
                "n_true": len(t_fold),
                "score": fold_score,
                "oracle": own.score_after,
            }
        )
    kept = pd.concat(kept, ignore_index=True)
    honest = score(truth, kept, beta, distance_multiplier)
    oracle = tune_out_of_fold(truth, named, beta, distance_multiplier)
    return CrossFoldResult(
        honest.score,
        oracle.score_after,
        honest.table,
        oracle.table,
        thresholds,
        pd.DataFrame(rows).set_index("fold"),
        rule,
        kept,
    )


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
