"""benchmarks/labelled_runs.py: the splits, the rules' thresholds and the held-out scores are what they say, and
the benchmark runs end to end writing a report whose numbers come from real scoring."""

import json

import numpy as np
import pandas as pd
import pytest
from _figures import assert_png
from test_thresholds_rules import dataset

from benchmarks import labelled_runs
from cryopoint.metric import score
from cryopoint.post.thresholds import apply_thresholds, shrink_to_prior, tune_thresholds


def test_splits_hold_k_labelled_runs_and_the_rest_out_and_repeat_with_the_seed():
    runs = [f"r{i}" for i in range(6)]
    splits = labelled_runs.draw_splits(runs, 2, 5, np.random.default_rng(0))
    assert len(splits) == 5
    for labelled, held in splits:
        assert len(labelled) == 2 and sorted(labelled + held) == sorted(runs) and not set(labelled) & set(held)
    assert splits == labelled_runs.draw_splits(runs, 2, 5, np.random.default_rng(0))
    assert len({tuple(s[0]) for s in labelled_runs.draw_splits(runs, 2, 40, np.random.default_rng(1))}) > 1
    for bad in (0, 6):
        with pytest.raises(ValueError, match="at least one run out"):
            labelled_runs.draw_splits(runs, bad, 1, np.random.default_rng(0))


def test_rule_thresholds_are_argmax_lean_and_argmax_shrunk_to_the_prior():
    truth, preds = dataset(4)
    prior = {n: 0.2 for n in tune_thresholds(truth, preds).thresholds}
    rules = labelled_runs.rule_thresholds(truth, preds, prior, 25.0)
    argmax = tune_thresholds(truth, preds).thresholds
    assert rules["argmax"] == argmax
    assert rules["lean"] == tune_thresholds(truth, preds, tolerance=labelled_runs.LEAN_TOLERANCE).thresholds
    counts = truth.particle_type.value_counts().to_dict()
    assert rules["prior"] == pytest.approx(shrink_to_prior(argmax, prior, counts, 25.0))


def test_leave_one_out_scores_each_run_at_the_others_thresholds_and_the_oracle_on_all(plain_detector):
    truth, preds = dataset(5, n_exp=4)
    runs = sorted(set(preds.experiment))
    geometry = {r: ((32, 96, 96), (10.0, 10.0, 10.0)) for r in runs}
    loo = labelled_runs.leave_one_out(plain_detector, truth, preds, runs, geometry, 25.0)
    own = apply_thresholds(preds, plain_detector.default_thresholds)
    assert loo["shipped"] == pytest.approx(score(truth, own).score)
    kept = []
    for run in runs:
        others = [r for r in runs if r != run]
        t = tune_thresholds(truth[truth.experiment.isin(others)], preds[preds.experiment.isin(others)]).thresholds
        kept.append(apply_thresholds(preds[preds.experiment == run], t))
    assert loo["argmax"] == pytest.approx(score(truth, pd.concat(kept)).score)
    assert loo["oracle"] == pytest.approx(tune_thresholds(truth, preds).score_after)
    assert loo["oracle"] >= loo["shipped"]  # argmax on all runs beats any one fixed set on them


def test_curve_means_the_draws_and_shipped_ignores_the_labels(plain_detector):
    truth, preds = dataset(6, n_exp=5)
    runs = sorted(set(preds.experiment))
    geometry = {r: ((32, 96, 96), (10.0, 10.0, 10.0)) for r in runs}
    curve, rows = labelled_runs.source_curve(plain_detector, truth, preds, runs, geometry, (1, 3), 4, 0, 25.0)
    frame = pd.DataFrame(rows)
    assert len(frame) == 2 * 4 * len(labelled_runs.RULES)
    for rule in labelled_runs.RULES:
        for k in (1, 3):
            assert curve[rule][k] == pytest.approx(frame[(frame.rule == rule) & (frame.k == k)].score.mean())
    splits = labelled_runs.draw_splits(runs, 1, 4, np.random.default_rng(0))
    own = apply_thresholds(preds, plain_detector.default_thresholds)
    first = score(truth[truth.experiment.isin(splits[0][1])], own[own.experiment.isin(splits[0][1])]).score
    assert frame[(frame.rule == "shipped") & (frame.k == 1)].score.iloc[0] == pytest.approx(first)


def test_cross_offset_scores_the_test_runs_at_thresholds_tuned_on_the_other_set(plain_detector):
    truth, preds = dataset(7, n_exp=6)
    geometry = {r: ((32, 96, 96), (10.0, 10.0, 10.0)) for r in set(preds.experiment)}
    a, b = ["r0", "r1", "r2"], ["r3", "r4", "r5"]
    labelled = (truth[truth.experiment.isin(a)], preds[preds.experiment.isin(a)], geometry)
    test = (truth[truth.experiment.isin(b)], preds[preds.experiment.isin(b)], geometry)
    row = labelled_runs.cross_offset(plain_detector, labelled, test, 25.0)
    assert set(row) == {*labelled_runs.RULES, "oracle"}
    argmax = tune_thresholds(labelled[0], labelled[1]).thresholds
    assert row["argmax"] == pytest.approx(score(test[0], apply_thresholds(test[1], argmax)).score)
    assert row["shipped"] == pytest.approx(
        score(test[0], apply_thresholds(test[1], plain_detector.default_thresholds)).score
    )
    assert row["oracle"] == pytest.approx(tune_thresholds(test[0], test[1]).score_after)
    assert row["oracle"] >= max(row[r] for r in labelled_runs.RULES) - 1e-12  # argmax on the test runs beats all
    swapped = labelled_runs.cross_offset(plain_detector, test, labelled, 25.0)
    assert swapped["oracle"] == pytest.approx(tune_thresholds(labelled[0], labelled[1]).score_after)
    with pytest.raises(ValueError, match="disjoint"):
        labelled_runs.cross_offset(plain_detector, labelled, labelled, 25.0)


@pytest.mark.filterwarnings("ignore::cryopoint.errors.PolarityWarning")  # small stand-ins fool the check
def test_benchmark_runs_end_to_end_and_reports_real_scores(tmp_path):
    out = tmp_path / "labelled"
    args = "--budget smoke --test-runs 3 --ks 1 2 --draws 2 --seed-offsets 5000 6000"
    md = labelled_runs.main([*args.split(), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["results"]["5000"]) == {"A", "B", "C"}
    for row in data["results"]["5000"].values():
        assert set(row["curve"]) == set(labelled_runs.RULES)
        assert all(0.0 <= v <= 1.0 for rule in row["curve"].values() for v in rule.values())
        assert row["loo"]["oracle"] >= 0.0 and set(row["loo"]) == {*labelled_runs.RULES, "oracle"}
    text = md.read_text()
    assert "| 5000 | A |" in text and "oracle - best honest" in text
    cross = data["cross"]  # both directions of the two offsets, per source
    assert {(r["source"], r["labelled"], r["test"]) for r in cross} == {
        (s, a, b) for s in "ABC" for a, b in ((5000, 6000), (6000, 5000))
    }
    for r in cross:  # a test offset's oracle is the one its own leave-one-out reports
        assert r["oracle"] == pytest.approx(data["results"][str(r["test"])][r["source"]]["loo"]["oracle"])
    assert "| A | 5000 | 6000 |" in text and "Across seed offsets" in text
    assert_png(out.with_suffix(".png"))
    with pytest.raises(SystemExit):
        labelled_runs.main(["--budget", "smoke", "--test-runs", "3", "--ks", "3", "--out", str(out)])
