"""The challenge metric: every odd case of task.md by hand, and a property test against brute force."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryopoint.errors import PicksFormatError, UnknownParticleError
from cryopoint.metric import match_points, score
from cryopoint.particles import PARTICLE_NAMES, PARTICLES


def picks(rows):
    """rows: (experiment, particle_type, x, y, z)."""
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"]).astype(
        {"x": float, "y": float, "z": float}
    )


def fb(p, r, beta=4.0):
    return 0.0 if p + r == 0 else (1 + beta**2) * p * r / (beta**2 * p + r)


def test_perfect_predictions_score_one():
    truth = picks([("a", p.name, 100.0 * i, 0, 0) for i, p in enumerate(PARTICLES)])
    res = score(truth, truth)
    assert res.score == pytest.approx(1.0)
    assert list(res.table.index) == list(PARTICLE_NAMES)
    assert (res.table["tp"] == 1).all() and (res.table["fp"] == 0).all()


def test_match_distance_is_inclusive_half_radius():
    # apo-ferritin radius 60 Å -> match distance exactly 30 Å (<=); 30.001 Å misses.
    truth = picks([("a", "apo-ferritin", 0, 0, 0)])
    assert score(truth, picks([("a", "apo-ferritin", 30.0, 0, 0)])).table.loc["apo-ferritin", "tp"] == 1
    assert score(truth, picks([("a", "apo-ferritin", 30.001, 0, 0)])).table.loc["apo-ferritin", "tp"] == 0
    # distance_multiplier scales it
    assert score(truth, picks([("a", "apo-ferritin", 40, 0, 0)]), distance_multiplier=0.7).table.iloc[0]["tp"] == 1


def test_three_predictions_on_one_particle_give_tp1_fp2():
    truth = picks([("a", "ribosome", 0, 0, 0)])
    pred = picks([("a", "ribosome", 1, 0, 0), ("a", "ribosome", 0, 2, 0), ("a", "ribosome", 0, 0, 3)])
    row = score(truth, pred).table.loc["ribosome"]
    assert (row.tp, row.fp, row.fn) == (1, 2, 0)
    assert row.precision == pytest.approx(1 / 3) and row.recall == 1.0
    assert row.fbeta == pytest.approx(fb(1 / 3, 1.0))


def test_one_prediction_between_two_particles_gives_tp2_fp_minus1():
    # ribosome match distance 75 Å; truths 100 Å apart, prediction midway (50 Å from each)
    truth = picks([("a", "ribosome", 0, 0, 0), ("a", "ribosome", 100, 0, 0)])
    res = score(truth, picks([("a", "ribosome", 50, 0, 0)]))
    row = res.table.loc["ribosome"]
    assert (row.tp, row.fp, row.fn) == (2, -1, 0)
    assert row.precision == 2.0 and row.recall == 1.0
    assert row.fbeta == pytest.approx(17 * 2.0 / (16 * 2.0 + 1))
    assert res.score == pytest.approx(row.fbeta / 7)


def test_no_truth_and_no_predictions_conventions():
    truth = picks([("a", "thyroglobulin", 0, 0, 0), ("a", "thyroglobulin", 500, 0, 0)])
    pred = picks([("a", "beta-galactosidase", 0, 0, 0)])  # a type with no truth: all FP
    t = score(truth, pred).table
    assert tuple(t.loc["thyroglobulin", ["tp", "fp", "fn"]]) == (0, 0, 2)
    assert tuple(t.loc["beta-galactosidase", ["tp", "fp", "fn"]]) == (0, 1, 0)
    assert t["fbeta"].sum() == 0.0
    assert score(truth.iloc[:0], pred.iloc[:0]).score == 0.0


def test_types_and_experiments_do_not_cross_match():
    truth = picks([("a", "ribosome", 0, 0, 0)])
    assert score(truth, picks([("b", "ribosome", 0, 0, 0)])).table.loc["ribosome", "tp"] == 0
    assert score(truth, picks([("a", "virus-like-particle", 0, 0, 0)])).table.loc["ribosome", "tp"] == 0


def test_micro_sum_over_tomograms_and_fixed_denominator():
    # tomogram a: 1 of 1 found; tomogram b: 0 of 3 found, 1 FP. Micro: TP 1, FP 1, FN 3.
    truth = picks(
        [("a", "beta-galactosidase", 0, 0, 0)] + [("b", "beta-galactosidase", 1000 * i, 0, 0) for i in range(3)]
    )
    pred = picks([("a", "beta-galactosidase", 0, 0, 0), ("b", "beta-galactosidase", 500, 500, 500)])
    res = score(truth, pred)
    row = res.table.loc["beta-galactosidase"]
    assert (row.tp, row.fp, row.fn) == (1, 1, 3)
    assert row.fbeta == pytest.approx(fb(0.5, 0.25))
    assert res.score == pytest.approx(2 * fb(0.5, 0.25) / 7)  # weight 2, denominator 7 though other types absent


def test_beta_amylase_has_zero_weight():
    truth = picks([("a", "beta-amylase", 0, 0, 0)])
    res = score(truth, truth)
    assert res.table.loc["beta-amylase", "fbeta"] == 1.0
    assert res.score == 0.0


def test_beta_changes_the_balance():
    truth = picks([("a", "ribosome", 0, 0, 0)])
    pred = picks([("a", "ribosome", 0, 0, 0), ("a", "ribosome", 900, 0, 0)])
    assert score(truth, pred, beta=1).table.loc["ribosome", "fbeta"] == pytest.approx(fb(0.5, 1.0, 1))


def test_unknown_particle_and_bad_tables_raise():
    truth = picks([("a", "ribosome", 0, 0, 0)])
    with pytest.raises(UnknownParticleError, match="Valid names"):
        score(truth, picks([("a", "ribosomes", 0, 0, 0)]))
    with pytest.raises(PicksFormatError, match="experiment"):
        score(truth, truth.drop(columns="experiment"))
    with pytest.raises(PicksFormatError, match="NaN"):
        score(truth, truth.assign(x=np.nan))


def test_match_points_columns_and_distances():
    truth = picks([("a", "apo-ferritin", 0, 0, 0), ("a", "apo-ferritin", 1000, 0, 0)])
    pred = picks([("a", "apo-ferritin", 20, 0, 0), ("a", "apo-ferritin", 0, 50, 0), ("b", "apo-ferritin", 0, 0, 0)])
    p, t = match_points(truth, pred)
    assert list(p["hit"]) == [True, False, False]
    np.testing.assert_allclose(p["nearest_distance"], [20.0, 50.0, np.inf])
    assert list(t["found"]) == [True, False]
    np.testing.assert_allclose(t["nearest_distance"], [20.0, np.hypot(980.0, 0.0)])


def brute_force(truth, pred, beta, mult):
    """O(n·m) reference written from task.md's text."""
    tp = dict.fromkeys(PARTICLE_NAMES, 0)
    n_true = dict.fromkeys(PARTICLE_NAMES, 0)
    n_pred = dict.fromkeys(PARTICLE_NAMES, 0)
    for _, t in truth.iterrows():
        n_true[t.particle_type] += 1
        r = mult * next(p.radius for p in PARTICLES if p.name == t.particle_type)
        for _, q in pred.iterrows():
            same = q.experiment == t.experiment and q.particle_type == t.particle_type
            if same and (q.x - t.x) ** 2 + (q.y - t.y) ** 2 + (q.z - t.z) ** 2 <= r * r:
                tp[t.particle_type] += 1
                break
    for name in pred.particle_type:
        n_pred[name] += 1
    total = 0.0
    for p in PARTICLES:
        prec = tp[p.name] / n_pred[p.name] if n_pred[p.name] else 0.0
        rec = tp[p.name] / n_true[p.name] if n_true[p.name] else 0.0
        total += fb(prec, rec, beta) * p.weight
    return total / 7, tp


point = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(PARTICLE_NAMES[:4]),
    *[st.integers(0, 12).map(lambda v: v * 10.0) for _ in range(3)],
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(point, max_size=12), st.lists(point, max_size=12), st.sampled_from([1.0, 4.0]), st.sampled_from([0.5, 1.0])
)
def test_score_matches_brute_force_and_match_points(truth_rows, pred_rows, beta, mult):
    truth, pred = picks(truth_rows), picks(pred_rows)
    res = score(truth, pred, beta=beta, distance_multiplier=mult)
    expected, tp = brute_force(truth, pred, beta, mult)
    assert res.score == pytest.approx(expected, abs=1e-12)
    assert res.table["tp"].to_dict() == tp
    _, t = match_points(truth, pred, distance_multiplier=mult)
    assert t.groupby("particle_type")["found"].sum().reindex(PARTICLE_NAMES, fill_value=0).to_dict() == tp
