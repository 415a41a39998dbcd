"""Per-class thresholds: exact against a brute-force sweep of the real metric, and the edge cases."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryopoint.errors import PicksFormatError, UnknownParticleError
from cryopoint.metric import score
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.thresholds import CURVE_COLUMNS, apply_thresholds, tune_thresholds

COLS = ["experiment", "particle_type", "x", "y", "z"]


def picks(rows, with_score=False):
    cols = COLS + (["score"] if with_score else [])
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[2:]})


def scenario(rng, n_exp=3, n_true=8, n_pred=25, classes=PARTICLE_NAMES[:4]):
    """Truth on a coarse grid; predictions near and far from it, with quantised scores (ties included)."""
    truth, preds = [], []
    for e in range(n_exp):
        for name in classes:
            pts = rng.integers(0, 8, (n_true, 3)) * 60.0
            truth += [(f"r{e}", name, *p) for p in pts]
            near = pts[rng.integers(0, n_true, n_pred)] + rng.normal(0, 25, (n_pred, 3))
            preds += [(f"r{e}", name, *p, s) for p, s in zip(near, rng.integers(1, 12, n_pred) / 12)]
    return picks(truth), picks(preds, with_score=True)


def brute_force_best(truth, preds, name):
    """Best F-beta of one class over every candidate threshold, each scored with the real metric."""
    best = 0.0
    for t in np.unique(preds["score"]).tolist() + [np.inf]:
        kept = preds[(preds.particle_type != name) | (preds.score >= t)]
        best = max(best, score(truth, kept).table.loc[name, "fbeta"])
    return best


def test_tuned_threshold_equals_brute_force_sweep(rng):
    truth, preds = scenario(rng)
    res = tune_thresholds(truth, preds)
    for name in PARTICLE_NAMES[:4]:
        tuned = score(truth, apply_thresholds(preds, {name: res.thresholds[name]})).table.loc[name, "fbeta"]
        assert tuned == pytest.approx(brute_force_best(truth, preds, name), abs=1e-12)
        assert res.table.loc[name, "fbeta"] == pytest.approx(tuned)


def test_curve_is_the_metric_at_every_threshold(rng):
    truth, preds = scenario(rng, n_exp=2)
    res = tune_thresholds(truth, preds)
    curve = res.curves["ribosome"]
    assert tuple(curve.columns) == CURVE_COLUMNS and curve.threshold.is_monotonic_increasing
    for _, row in curve.iterrows():
        t = score(truth, apply_thresholds(preds, {"ribosome": row.threshold})).table.loc["ribosome"]
        assert (row.tp, row.fp, row.fn) == (t.tp, t.fp, t.fn)
        assert row.fbeta == pytest.approx(t.fbeta)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000))
def test_never_worse_than_any_fixed_threshold(seed):
    truth, preds = scenario(np.random.default_rng(seed), n_exp=2, n_true=4, n_pred=8)
    res = tune_thresholds(truth, preds)
    assert res.score_after >= res.score_before - 1e-12
    assert res.score_after == pytest.approx(score(truth, apply_thresholds(preds, res.thresholds)).score)
    for t in np.unique(preds.score):
        assert res.score_after >= score(truth, preds[preds.score >= t]).score - 1e-12


def test_many_to_one_counts_a_truth_once_at_its_best_cover():
    truth = picks([("a", "ribosome", 0, 0, 0), ("a", "ribosome", 100, 0, 0)])
    preds = picks(
        [("a", "ribosome", 50, 0, 0, 0.9), ("a", "ribosome", 0, 0, 0, 0.5), ("a", "ribosome", 900, 0, 0, 0.4)],
        with_score=True,
    )
    curve = tune_thresholds(truth, preds).curves["ribosome"].set_index("threshold")
    assert tuple(curve.loc[0.9, ["tp", "fp", "fn"]]) == (2, -1, 0)  # one prediction covers both
    assert tuple(curve.loc[0.5, ["tp", "fp", "fn"]]) == (2, 0, 0)
    assert tuple(curve.loc[0.4, ["tp", "fp", "fn"]]) == (2, 1, 0)
    assert tune_thresholds(truth, preds).thresholds["ribosome"] == 0.9  # P = 2 beats P = 1 at the same recall


def test_ties_in_fbeta_go_to_the_lowest_threshold():
    truth = picks([("a", "ribosome", 0, 0, 0)])
    preds = picks([("a", "ribosome", 0, 0, 0, 0.8), ("a", "ribosome", 0, 0, 1, 0.6)], with_score=True)
    preds.loc[1, "score"] = 0.8  # two hits of one truth with tied scores collapse to one candidate
    assert tune_thresholds(truth, preds).thresholds["ribosome"] == 0.8
    miss = picks([("a", "ribosome", 900, 0, 0, 0.7), ("a", "ribosome", 800, 0, 0, 0.3)], with_score=True)
    res = tune_thresholds(truth, miss)  # never hits: F-beta 0 everywhere -> lowest score, keeps all
    assert res.thresholds["ribosome"] == 0.3 and (res.curves["ribosome"].fbeta == 0).all()


def test_empty_classes_and_classes_without_predictions():
    truth = picks([("a", "ribosome", 0, 0, 0), ("a", "apo-ferritin", 0, 0, 0)])
    preds = picks([("a", "ribosome", 0, 0, 0, 0.5), ("a", "thyroglobulin", 0, 0, 0, 0.2)], with_score=True)
    res = tune_thresholds(truth, preds)
    assert set(res.thresholds) == set(PARTICLE_NAMES)
    assert res.thresholds["apo-ferritin"] == 0.0 and res.curves["apo-ferritin"].empty  # truth, no predictions
    assert res.thresholds["beta-amylase"] == 0.0  # neither truth nor predictions
    assert res.thresholds["thyroglobulin"] == 0.2  # predictions, no truth: kept (F-beta 0 either way)
    assert res.thresholds["ribosome"] == 0.5
    empty = tune_thresholds(truth.iloc[:0], preds.iloc[:0])
    assert empty.score_before == empty.score_after == 0.0


def test_apply_thresholds_and_errors():
    preds = picks([("a", "ribosome", 0, 0, 0, 0.5), ("a", "apo-ferritin", 0, 0, 0, 0.2)], with_score=True)
    kept = apply_thresholds(preds, {"ribosome": 0.5})
    assert list(kept.index) == [0, 1]  # >= keeps the equal score; classes not listed are kept
    assert list(apply_thresholds(preds, {"ribosome": 0.51, "apo-ferritin": 0.1}).index) == [1]
    with pytest.raises(UnknownParticleError):
        apply_thresholds(preds, {"ribosomes": 0.5})
    with pytest.raises(PicksFormatError, match="score"):
        tune_thresholds(preds, preds.drop(columns="score"))
    with pytest.raises(PicksFormatError, match="finite"):
        apply_thresholds(preds.assign(score=np.nan), {})


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.01, 0.05, 0.2]))
def test_tolerance_picks_the_lowest_threshold_within_it_of_the_best(seed, tol):
    truth, preds = scenario(np.random.default_rng(seed), n_exp=2, n_true=5, n_pred=12)
    best = tune_thresholds(truth, preds)
    lean = tune_thresholds(truth, preds, tolerance=tol)
    for name in PARTICLE_NAMES[:4]:
        curve = best.curves[name]
        assert lean.thresholds[name] <= best.thresholds[name]
        f_at = curve.set_index("threshold").fbeta
        assert f_at[lean.thresholds[name]] >= curve.fbeta.max() - tol - 1e-12
        # no lower threshold is within the tolerance (it is the lowest)
        lower = curve[curve.threshold < lean.thresholds[name]]
        assert (lower.fbeta < curve.fbeta.max() - tol).all()


def test_tolerance_zero_is_the_argmax_and_negative_is_refused(rng):
    truth, preds = scenario(rng, n_exp=2)
    assert tune_thresholds(truth, preds, tolerance=0.0).thresholds == tune_thresholds(truth, preds).thresholds
    with pytest.raises(ValueError, match="tolerance"):
        tune_thresholds(truth, preds, tolerance=-0.1)
