"""Threshold choice rules (argmax, lean, bootstrap), pooled out-of-fold tuning and the cross-fold honest score."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryopoint.errors import ConfigError, PicksFormatError
from cryopoint.metric import score
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.thresholds import (
    NO_PREDICTIONS_THRESHOLD,
    apply_thresholds,
    cross_fold_score,
    folds_by_tomogram,
    tune_out_of_fold,
    tune_thresholds,
)

COLS = ["experiment", "particle_type", "x", "y", "z"]
CLASSES = ("ribosome", "thyroglobulin")  # two classes keep the metric calls cheap; one has no predictions below


def picks(rows, with_score=False):
    cols = COLS + (["score"] if with_score else [])
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[2:]})


def tomogram(rng, name, n_true=5, n_pred=10, shift=0.0):
    """One tomogram: truth on a coarse grid, predictions near or far from it, quantised scores (ties included).

    ``shift`` moves every score of the tomogram, so tomograms disagree on their best threshold.
    """
    truth, preds = [], []
    for cls in CLASSES:
        pts = rng.integers(0, 6, (n_true, 3)) * 300.0
        truth += [(name, cls, *p) for p in pts]
        near = pts[rng.integers(0, n_true, n_pred)] + rng.normal(0, 15, (n_pred, 3))
        far = rng.random(n_pred) < 0.4
        near[far] += 5000.0  # misses
        scores = np.clip(rng.integers(1, 10, n_pred) / 10 + shift - 0.3 * far, 0.05, 1.0).round(2)
        preds += [(name, cls, *p, s) for p, s in zip(near, scores)]
    return picks(truth), picks(preds, with_score=True)


def dataset(seed, n_exp=3, **kw):
    rng = np.random.default_rng(seed)
    parts = [tomogram(rng, f"r{e}", shift=rng.uniform(-0.3, 0.3), **kw) for e in range(n_exp)]
    return pd.concat([t for t, _ in parts], ignore_index=True), pd.concat([p for _, p in parts], ignore_index=True)


def renamed(frame, name):
    return frame.assign(experiment=name)


RULE_OPTIONS = [{"rule": "argmax"}, {"rule": "lean", "tolerance": 0.05}, {"rule": "bootstrap", "n_boot": 50}]


# --- the bootstrap rule --------------------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_bootstrap_of_identical_tomograms_is_argmax(seed, copies):
    """Every resample of k identical tomograms pools to k x the same counts: the same curve, so the same choice."""
    truth, preds = tomogram(np.random.default_rng(seed), "r0")
    truth = pd.concat([renamed(truth, f"r{i}") for i in range(copies)], ignore_index=True)
    preds = pd.concat([renamed(preds, f"r{i}") for i in range(copies)], ignore_index=True)
    argmax = tune_thresholds(truth, preds, rule="argmax").thresholds
    boot = tune_thresholds(truth, preds, rule="bootstrap", n_boot=30, seed=seed)
    assert boot.thresholds == argmax
    for cls in CLASSES:
        curve = boot.curves[cls]
        np.testing.assert_allclose(curve["fbeta_bootstrap"], curve["fbeta"], rtol=1e-12, atol=1e-15)


def test_bootstrap_curve_is_the_mean_of_resampled_pooled_curves():
    """Brute force: rebuild each resample as a real dataset (tomograms drawn with replacement, renamed apart) and
    score it with the metric at every threshold; the rule's curve is the mean of those F-beta values. The draws are
    ``default_rng(seed).multinomial(n_tomograms, uniform, size=n_boot)`` over the sorted tomogram names."""
    truth, preds = dataset(3, n_exp=3, n_true=3, n_pred=6)
    n_boot, seed = 6, 11
    res = tune_thresholds(truth, preds, rule="bootstrap", n_boot=n_boot, seed=seed)
    names = sorted(set(truth.experiment))
    draws = np.random.default_rng(seed).multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_boot)
    cls = "ribosome"
    curve = res.curves[cls]
    expected = np.zeros(len(curve))
    for counts in draws:
        t_parts, p_parts = [], []
        for name, k in zip(names, counts):
            for copy in range(k):
                t_parts.append(renamed(truth[truth.experiment == name], f"{name}#{copy}"))
                p_parts.append(renamed(preds[preds.experiment == name], f"{name}#{copy}"))
        t_b, p_b = pd.concat(t_parts), pd.concat(p_parts)
        for i, thr in enumerate(curve.threshold):
            kept = p_b[(p_b.particle_type == cls) & (p_b.score >= thr)]
            expected[i] += score(t_b, kept).table.loc[cls, "fbeta"] / n_boot
    np.testing.assert_allclose(curve["fbeta_bootstrap"], expected, rtol=1e-12)
    best = np.flatnonzero(expected >= expected.max())[0]  # argmax of the average, lowest among ties
    assert res.thresholds[cls] == curve.threshold.iloc[best]


def test_bootstrap_leans_low_where_one_tomogram_alone_wants_a_high_threshold():
    """Pooled, one crowded tomogram's false positives at 0.5 push argmax above the other tomograms' hits at 0.5;
    most resamples draw it fewer times than it is pooled, and then keeping the 0.5 hits wins."""
    truth, preds = [], []
    for e in range(4):
        truth += [(f"r{e}", "ribosome", 1000.0 * i, 0, 0) for i in range(4)]
        preds += [(f"r{e}", "ribosome", 1000.0 * i, 0, 0, 0.9) for i in range(3)]
        preds += [(f"r{e}", "ribosome", 3000.0, 0, 0, 0.5)]  # the 4th particle, found at a low score
    preds += [("r0", "ribosome", 9000.0 + 500 * i, 0, 0, 0.5) for i in range(90)]  # clutter in r0 only
    truth, preds = picks(truth), picks(preds, with_score=True)
    assert tune_thresholds(truth, preds, rule="argmax").thresholds["ribosome"] == 0.9
    assert tune_thresholds(truth, preds, rule="bootstrap", n_boot=200).thresholds["ribosome"] == 0.5
    # the same clutter in every tomogram: no tomogram disagrees, and bootstrap agrees with argmax
    flat = pd.concat([preds] + [renamed(preds[preds.x >= 9000], f"r{e}") for e in (1, 2, 3)], ignore_index=True)
    assert tune_thresholds(truth, flat, rule="bootstrap", n_boot=200).thresholds["ribosome"] == 0.9


def test_bootstrap_is_deterministic_given_the_seed():
    truth, preds = dataset(5, n_exp=4)
    a = tune_thresholds(truth, preds, rule="bootstrap", n_boot=40, seed=7)
    b = tune_thresholds(truth, preds, rule="bootstrap", n_boot=40, seed=7)
    assert a.thresholds == b.thresholds
    for cls in CLASSES:
        np.testing.assert_array_equal(a.curves[cls]["fbeta_bootstrap"], b.curves[cls]["fbeta_bootstrap"])


# --- every rule ----------------------------------------------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(RULE_OPTIONS))
def test_thresholds_are_candidate_scores_or_zero(seed, options):
    truth, preds = dataset(seed)
    preds = preds[preds.particle_type != "thyroglobulin"]  # a class with truth but no predictions
    res = tune_thresholds(truth, preds, **options)
    for cls in PARTICLE_NAMES:
        cand = set(preds.loc[preds.particle_type == cls, "score"])
        assert res.thresholds[cls] in cand if cand else res.thresholds[cls] == NO_PREDICTIONS_THRESHOLD


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(RULE_OPTIONS))
def test_results_do_not_depend_on_row_order(seed, options):
    truth, preds = dataset(seed)
    rng = np.random.default_rng(seed)
    shuffled_t = truth.iloc[rng.permutation(len(truth))]
    shuffled_p = preds.iloc[rng.permutation(len(preds))]
    expected, got = tune_thresholds(truth, preds, **options), tune_thresholds(shuffled_t, shuffled_p, **options)
    assert got.thresholds == expected.thresholds
    for cls in CLASSES:  # the curves too (the bootstrap's average included), not only the choice
        pd.testing.assert_frame_equal(got.curves[cls], expected.curves[cls], check_exact=True)
    a = cross_fold_score(truth, folds_by_tomogram(preds), **options)
    b = cross_fold_score(shuffled_t, folds_by_tomogram(shuffled_p), **options)
    assert (a.score, a.oracle, a.thresholds) == (b.score, b.oracle, b.thresholds)


def test_lean_rule_by_name_equals_the_tolerance_alone():
    truth, preds = dataset(8)
    assert tune_thresholds(truth, preds, rule="lean", tolerance=0.1).thresholds == (
        tune_thresholds(truth, preds, tolerance=0.1).thresholds
    )
    assert tune_thresholds(truth, preds, tolerance=0.1).rule == "lean"
    assert tune_thresholds(truth, preds).rule == "argmax"


def test_lean_and_bootstrap_with_tolerance_never_above_their_own_tolerance_free_choice():
    truth, preds = dataset(9, n_exp=4)
    strict = tune_thresholds(truth, preds, rule="bootstrap", n_boot=40).thresholds
    lean_boot = tune_thresholds(truth, preds, rule="bootstrap", n_boot=40, tolerance=0.1).thresholds
    assert all(lean_boot[c] <= strict[c] for c in CLASSES)
    argmax = tune_thresholds(truth, preds).thresholds
    lean = tune_thresholds(truth, preds, rule="lean", tolerance=0.1)
    assert all(lean.thresholds[c] <= argmax[c] for c in CLASSES)
    for cls in CLASSES:  # and it is the lowest threshold within the tolerance of the pooled maximum
        f = lean.curves[cls].set_index("threshold")["fbeta"]
        assert f[lean.thresholds[cls]] >= f.max() - 0.1 and (f[f.index < lean.thresholds[cls]] < f.max() - 0.1).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rule": "median"}, "Unknown threshold rule 'median'"),
        ({"rule": "argmax", "tolerance": 0.05}, "use rule 'lean'"),
        ({"rule": "lean"}, "needs a tolerance > 0"),
        ({"rule": "bootstrap", "n_boot": 0}, "n_boot must be a positive integer"),
        ({"tolerance": -0.1}, "tolerance must be >= 0"),
    ],
)
def test_bad_rule_options_say_what_to_do(options, message):
    truth, preds = dataset(1, n_exp=2)
    with pytest.raises(ConfigError, match=message):
        tune_thresholds(truth, preds, **options)
    with pytest.raises(ConfigError, match=message):
        cross_fold_score(truth, folds_by_tomogram(preds), **options)


# --- pooled out-of-fold tuning -------------------------------------------------------------------------------------


def test_out_of_fold_tuning_pools_the_folds_and_ignores_tomograms_no_fold_predicted():
    truth, preds = dataset(4, n_exp=4)
    folds = {"f0": preds[preds.experiment.isin(["r0", "r1"])], "f1": preds[preds.experiment.isin(["r2", "r3"])]}
    extra_truth = renamed(truth[truth.experiment == "r0"], "train_run")  # e.g. a run every fold trained on
    pooled = tune_out_of_fold(pd.concat([truth, extra_truth]), folds)
    assert pooled.thresholds == tune_thresholds(truth, preds).thresholds
    assert pooled.score_after == tune_thresholds(truth, preds).score_after
    assert tune_out_of_fold(truth, list(folds.values())).thresholds == pooled.thresholds  # a sequence works too
    # while the extra run would have counted as all missed (so the curve, not just the score, changes)
    assert tune_thresholds(pd.concat([truth, extra_truth]), preds).curves["ribosome"]["fn"].min() > (
        pooled.curves["ribosome"]["fn"].min()
    )


def test_a_tomogram_in_two_folds_is_refused():
    truth, preds = dataset(4, n_exp=3)
    folds = [preds[preds.experiment.isin(["r0", "r1"])], preds[preds.experiment.isin(["r1", "r2"])]]
    with pytest.raises(PicksFormatError, match="Tomogram r1 is in the predictions of folds 0 and 1"):
        tune_out_of_fold(truth, folds)
    with pytest.raises(PicksFormatError, match="Tomogram r1"):
        cross_fold_score(truth, folds)


# --- cross-fold evaluation -----------------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 4), st.sampled_from(RULE_OPTIONS))
def test_each_fold_scores_at_most_its_own_oracle(seed, n_exp, options):
    """A fold scored with thresholds from elsewhere never beats thresholds tuned on its own answers (argmax on the
    exact curve is the best any threshold can do there)."""
    truth, preds = dataset(seed, n_exp=n_exp)
    res = cross_fold_score(truth, folds_by_tomogram(preds), **options)
    assert (res.per_fold["score"] <= res.per_fold["oracle"] + 1e-12).all()
    assert res.per_fold["score"].mean() <= res.per_fold["oracle"].mean() + 1e-12
    assert res.oracle == pytest.approx(tune_thresholds(truth, preds).score_after, abs=1e-12)


def test_cross_fold_score_is_each_fold_thresholded_by_the_others_then_pooled():
    truth, preds = dataset(6, n_exp=3)
    res = cross_fold_score(truth, folds_by_tomogram(preds), rule="bootstrap", n_boot=20, seed=3)
    kept = []
    for name in ("r0", "r1", "r2"):
        rest = preds.experiment != name
        tuned = tune_thresholds(
            truth[truth.experiment != name], preds[rest], rule="bootstrap", n_boot=20, seed=3
        ).thresholds
        assert res.thresholds[name] == tuned
        kept.append(apply_thresholds(preds[~rest], tuned))
        one = score(truth[truth.experiment == name], kept[-1]).score
        assert res.per_fold.loc[name, "score"] == pytest.approx(one, abs=1e-12)
    assert res.score == pytest.approx(score(truth, pd.concat(kept)).score, abs=1e-12)
    assert res.rule == "bootstrap" and list(res.per_fold["tomograms"]) == [1, 1, 1]


def test_thresholds_that_do_not_travel_score_below_the_oracle():
    """Two tomograms whose hits sit on different score scales: each one's best threshold ruins the other."""
    truth = picks([(e, "ribosome", 1000.0 * i, 0, 0) for e in ("a", "b") for i in range(3)])
    hits = [("a", "ribosome", 1000.0 * i, 0, 0, 0.9) for i in range(3)]
    hits += [("b", "ribosome", 1000.0 * i, 0, 0, 0.3) for i in range(3)]
    clutter = [("a", "ribosome", 9000.0 + 300 * i, 0, 0, 0.5) for i in range(40)]  # a's clutter above b's hits
    preds = picks(hits + clutter, with_score=True)
    res = cross_fold_score(truth, folds_by_tomogram(preds))
    assert res.thresholds["b"]["ribosome"] == 0.9 and res.thresholds["a"]["ribosome"] == 0.3
    assert res.per_fold.loc["b", "score"] == 0.0  # b's hits (0.3) under a's threshold (0.9)
    assert res.score < 0.6 * res.oracle  # 0.367 against 0.718 for the ribosome class


def test_cross_fold_needs_two_folds():
    truth, preds = dataset(2, n_exp=1)
    with pytest.raises(ValueError, match="at least 2 folds .* got 1"):
        cross_fold_score(truth, folds_by_tomogram(preds))
    with pytest.raises(ValueError, match="got 0"):
        cross_fold_score(truth, {})


def test_fold_without_predictions_of_a_class_is_still_scored_on_its_truth():
    """A class no other fold predicted gets threshold 0 (keep all); a fold missing a class scores its FN."""
    truth, preds = dataset(12, n_exp=2)
    preds = preds[~((preds.experiment == "r0") & (preds.particle_type == "thyroglobulin"))]
    res = cross_fold_score(truth, folds_by_tomogram(preds))
    assert res.thresholds["r1"]["thyroglobulin"] == NO_PREDICTIONS_THRESHOLD
    row = res.table.loc["thyroglobulin"]
    assert row.n_true == (truth.particle_type == "thyroglobulin").sum()  # r0's thyroglobulins count as missed
    r1 = score(truth[truth.experiment == "r1"], preds[preds.experiment == "r1"]).table.loc["thyroglobulin"]
    assert (row.tp, row.n_pred) == (r1.tp, r1.n_pred)  # r1 keeps all its thyroglobulin predictions


# --- tools/tune_thresholds.py --rule -------------------------------------------------------------------------------


def test_tool_rule_flag_writes_the_rules_thresholds_and_refuses_lean_without_tolerance(tmp_path):
    from pathlib import Path

    import yaml
    from _layout_helpers import write_challenge_store
    from _tool_helpers import run_tool

    tool = Path(__file__).resolve().parents[1] / "tools" / "tune_thresholds.py"
    root = tmp_path / "data"
    truth, _ = write_challenge_store(root, runs=("TS_a", "TS_b", "TS_c"), shape=(16, 40, 40))
    rng = np.random.default_rng(2)
    hits = truth.assign(score=rng.integers(3, 10, len(truth)) / 10)
    # misses: another run's particles (inside the tomogram, mostly far from this run's), scored at random
    other = {"TS_a": "TS_b", "TS_b": "TS_c", "TS_c": "TS_a"}
    misses = truth.assign(experiment=truth.experiment.map(other), score=rng.integers(1, 10, len(truth)) / 10)
    preds = pd.concat([hits, misses], ignore_index=True)
    csv = tmp_path / "pred.csv"
    preds.to_csv(csv, index=False)
    out = tmp_path / "th.yaml"
    argv = ["--predictions", str(csv), "--truth", str(root), "--out", str(out)]
    assert run_tool(tool, [*argv, "--rule", "bootstrap"]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["rule"] == "bootstrap"
    expected = tune_thresholds(truth, preds, rule="bootstrap")
    assert doc["thresholds"] == pytest.approx(expected.thresholds)
    out.unlink()
    assert run_tool(tool, [*argv, "--rule", "lean"]) == 2 and not out.exists()  # lean without --tolerance
