"""The numbers behind an evaluation report, computed once: no drawing, no Markdown, no files.

:func:`evaluate` scores each prediction set, tunes thresholds with the report's β (curves and the markers
drawn on them come from the same tuning), matches the main set point by point and picks the failures and
the slice worth showing. ``cryopoint.viz.report_figures`` draws from the result and ``cryopoint.viz.report``
writes it as Markdown.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryopoint.metric import match_points, score
from cryopoint.particles import get_particle
from cryopoint.post.thresholds import ThresholdResult, apply_thresholds, tune_thresholds
from cryopoint.viz.confusion import confusion_matrix
from cryopoint.viz.gallery import select_failures
from cryopoint.viz.misses import miss_cause_table, miss_causes, near_threshold

__all__ = ["MethodResult", "ReportData", "SlicePicks", "class_table", "evaluate", "slice_picks"]


def class_table(truth: pd.DataFrame, predictions: pd.DataFrame, *, beta: float = 4) -> tuple[float, pd.DataFrame]:
    """Weighted F-beta and a per-class table with radius added, in catalogue order."""
    result = score(truth, predictions, beta=beta)
    table = result.table.copy()
    if "particle_type" in table.columns:
        table = table.set_index("particle_type")
    table.insert(0, "radius", [get_particle(n).radius for n in table.index])
    return float(result.score), table


@dataclass(frozen=True)
class MethodResult:
    """One prediction set, evaluated.

    Attributes:
        predictions: The picks as scored (after the report's thresholds, when it applies any).
        score: Weighted F-beta of ``predictions``.
        table: Per-class table of :func:`class_table`.
        tuning: Thresholds tuned with the report's β on the picks as given (before thresholds), with their
            F-beta curves; None when the picks have no ``score`` column or are empty.
    """

    predictions: pd.DataFrame
    score: float
    table: pd.DataFrame
    tuning: ThresholdResult | None


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, for the first (main) prediction set in detail and the others side by side.

    Attributes:
        truth: Ground-truth picks.
        beta: F-beta's β, used for the scores, the tuning, the curves and the markers alike.
        methods: ``{name: MethodResult}``; the first is the main one.
        notes: Caveats the report must print (thresholds tuned on the evaluated set).
        markers: ``{class: threshold}`` marked on the main set's F-beta curves: the thresholds applied, or
            the F-beta-best ones at ``beta`` (None without curves).
        markers_applied: True when ``markers`` are thresholds the evaluation applied, False when they are
            only the best ones on the curves (the picks were scored as given).
        matched_truth, matched_pred: The main set's per-point matching (:func:`cryopoint.metric.match_points`).
        misses, false_positives: The failures worth a look (:func:`cryopoint.viz.gallery.select_failures`).
        confusion: :func:`cryopoint.viz.confusion.confusion_matrix` of the main set.
        miss_causes: :func:`cryopoint.viz.misses.miss_cause_table` of the main set: why each miss was missed,
            judged against its picks before the report's thresholds that score at least half of them
            (:func:`cryopoint.viz.misses.near_threshold`; all the picks when none were applied).
    """

    truth: pd.DataFrame
    beta: float
    methods: dict[str, MethodResult]
    notes: tuple[str, ...]
    markers: dict[str, float] | None
    markers_applied: bool
    matched_truth: pd.DataFrame
    matched_pred: pd.DataFrame
    misses: pd.DataFrame
    false_positives: pd.DataFrame
    confusion: pd.DataFrame
    miss_causes: pd.DataFrame

    @property
    def main_name(self) -> str:
        return next(iter(self.methods))

    @property
    def main(self) -> MethodResult:
        return self.methods[self.main_name]

    @property
    def curves(self) -> dict[str, pd.DataFrame] | None:
        """The main set's F-beta curves at ``beta`` (None without scores)."""
        return None if self.main.tuning is None else self.main.tuning.curves


def evaluate(
    predictions: pd.DataFrame | Mapping[str, pd.DataFrame],
    truth: pd.DataFrame,
    *,
    thresholds: Mapping[str, float] | str | None = None,
    beta: float = 4,
) -> ReportData:
    """Score, tune and match prediction sets against ``truth`` for a report.

    Args:
        predictions: One picks table, or ``{method name: picks table}``; the first is the main one.
        truth: Ground-truth picks (``experiment, particle_type, x, y, z`` Å).
        thresholds: None scores the picks as given; a mapping applies per-class thresholds; ``"tune"`` tunes
            them on these same picks (optimistic; a note says so).
        beta: F-beta's β for everything: scores, tuning, curves and markers.

    Returns:
        :class:`ReportData`.

    Raises:
        ValueError: ``thresholds="tune"`` for picks without a ``score`` column, or an unknown string.
    """
    if isinstance(thresholds, str) and thresholds != "tune":
        raise ValueError(f"thresholds must be None, a mapping or 'tune'; got {thresholds!r}.")
    given = dict(predictions) if isinstance(predictions, Mapping) else {"predictions": predictions}
    methods, notes = {}, []
    for name, preds in given.items():
        tuning = tune_thresholds(truth, preds, beta=beta) if "score" in preds and len(preds) else None
        if thresholds == "tune":
            if tuning is None:
                raise ValueError(f"{name}: thresholds='tune' needs a 'score' column in the predictions.")
            preds = apply_thresholds(preds, tuning.thresholds)
            notes.append(f"{name}: thresholds tuned on this same set (optimistic).")
        elif isinstance(thresholds, Mapping):
            preds = apply_thresholds(preds, thresholds)
        total, table = class_table(truth, preds, beta=beta)
        methods[name] = MethodResult(preds, total, table, tuning)
    main = next(iter(methods.values()))
    applied = isinstance(thresholds, Mapping)
    markers = None
    if main.tuning is not None:
        markers = dict(thresholds) if applied else dict(main.tuning.thresholds)
    candidates = next(iter(given.values()))
    if main.tuning is not None and (applied or thresholds == "tune"):
        candidates = near_threshold(candidates, markers)
    matched_pred, matched_truth = match_points(truth, main.predictions)
    misses, fps = select_failures(matched_truth, matched_pred)
    return ReportData(
        truth=truth,
        beta=beta,
        methods=methods,
        notes=tuple(notes),
        markers=markers,
        markers_applied=applied or thresholds == "tune",
        matched_truth=matched_truth,
        matched_pred=matched_pred,
        misses=misses,
        false_positives=fps,
        confusion=confusion_matrix(truth, main.predictions),
        miss_causes=miss_cause_table(miss_causes(truth, main.predictions, candidates), truth),
    )


#: The orthoslice figure draws at most this many false positives of its run (the most confident ones).
MAX_SLICE_FP = 40


@dataclass(frozen=True)
class SlicePicks:
    """What the orthoslice figure of one run draws.

    Attributes:
        run: The run shown.
        picks: True particles (``status`` ``"tp"`` found, ``"fn"`` missed) and false positives (``"fp"``).
        below_threshold: False positives of this run left out because they score below the marked threshold
            of their class (only when the picks were scored as given, unthresholded).
        beyond_cap: False positives left out beyond the ``max_fp`` most confident ones.
        max_fp: The cap used.
    """

    run: str
    picks: pd.DataFrame
    below_threshold: int
    beyond_cap: int
    max_fp: int


def slice_picks(
    data: ReportData, runs: Collection[str] | None = None, *, max_fp: int = MAX_SLICE_FP
) -> SlicePicks | None:
    """Choose the run to show in slices and the picks to draw on it.

    The run is the one with the most missed particles (then the most particles), among ``runs`` when given,
    so that the figure shows failures where there are some. Truth is drawn found or missed exactly as the
    table counts it. False positives are the thresholded ones: when the evaluation applied thresholds, those
    left; when it scored the picks as given, those at or above their class's marked (F-beta-best)
    threshold. Of these, at most ``max_fp`` are drawn, the most confident first, so that a peak list does
    not bury the slices under hundreds of circles; the counts left out are returned for the caption.

    Args:
        data: From :func:`evaluate`.
        runs: Runs that can be shown (those with a tomogram at hand); default: every run with truth.
        max_fp: The most false positives to draw (all of them when the picks have no score to rank by).

    Returns:
        :class:`SlicePicks`, or None when no run can be shown.
    """
    truth = data.matched_truth
    if runs is not None:
        truth = truth[truth["experiment"].isin(set(runs))]
    if truth.empty:
        return None
    per_run = truth.assign(missed=~truth["found"]).groupby("experiment")[["missed", "found"]].sum()
    per_run["n"] = per_run["missed"] + per_run["found"]
    run = per_run.sort_values(["missed", "n"], ascending=False, kind="stable").index[0]
    tp_fn = truth[truth["experiment"] == run].assign(status=lambda d: np.where(d["found"], "tp", "fn"))
    fps = data.matched_pred[(data.matched_pred["experiment"] == run) & ~data.matched_pred["hit"]]
    kept = fps
    if "score" in fps:
        if not data.markers_applied and data.markers is not None:
            kept = apply_thresholds(fps, data.markers)
        shown = kept.sort_values("score", ascending=False, kind="stable").head(max_fp)
    else:
        shown = kept
    picks = pd.concat([tp_fn, shown.assign(status="fp")], ignore_index=True)
    return SlicePicks(str(run), picks, len(fps) - len(kept), len(kept) - len(shown), max_fp)
