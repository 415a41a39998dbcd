"""The report's evaluation step (issue 15): one β for scores, curves and markers; what the slices draw; trends."""

import numpy as np
import pandas as pd
import pytest

from cryopoint.viz.evaluation import evaluate, slice_picks
from cryopoint.viz.report import analysis_paragraph

COLS = ["experiment", "particle_type", "x", "y", "z"]


def _ribosomes():
    """Four ribosomes. Three are hit at scores 0.9/0.8/0.7, six false positives at 0.5-0.3, the fourth hit at 0.2.

    By hand (TP, predictions kept): t = 0.7 keeps (3, 3): P 1, R 0.75, F2 = 5*0.75/4.75 = 0.789, F4 = 0.761;
    t = 0.2 keeps (4, 10): P 0.4, R 1, F2 = 2/2.6 = 0.769, F4 = 6.8/7.4 = 0.919. So β = 2 picks 0.7 and β = 4
    picks 0.2: a marker tuned with the wrong β sits where its own curve is not best.
    """
    xs = [500.0, 1000.0, 1500.0, 2000.0]
    truth = pd.DataFrame([("TS_a", "ribosome", x, 500.0, 300.0) for x in xs], columns=COLS)
    hits = [("TS_a", "ribosome", x + 10.0, 500.0, 300.0, s) for x, s in zip(xs, (0.9, 0.8, 0.7, 0.2))]
    fps = [("TS_a", "ribosome", 500.0 * k, 2500.0, 300.0, s) for k, s in enumerate((0.5, 0.45, 0.4, 0.35, 0.32, 0.3))]
    return truth, pd.DataFrame(hits + fps, columns=[*COLS, "score"])


@pytest.mark.parametrize(("beta", "expected", "f_at"), [(2, 0.7, 5 * 0.75 / 4.75), (4, 0.2, 6.8 / 7.4)])
def test_markers_and_curves_use_the_callers_beta(beta, expected, f_at):
    truth, preds = _ribosomes()
    data = evaluate(preds, truth, beta=beta)
    curve = data.curves["ribosome"]
    assert data.markers["ribosome"] == pytest.approx(expected)
    at_marker = curve.loc[curve["threshold"] == data.markers["ribosome"], "fbeta"].iloc[0]
    assert at_marker == pytest.approx(f_at) and at_marker == pytest.approx(curve["fbeta"].max())
    assert not data.markers_applied  # scored as given: the marker is the best threshold, not one applied


def test_report_marks_the_curves_with_thresholds_tuned_at_the_same_beta(monkeypatch, tmp_path):
    """make_report(beta=2) used to mark thresholds tuned at β = 4 on curves drawn at β = 2."""
    import cryopoint.viz.report_figures as figures
    from cryopoint.viz.report import make_report

    drawn = {}

    def capture(curves, thresholds, out, **kwargs):
        drawn.update(curves=curves, thresholds=thresholds, beta=kwargs.get("beta"))

    monkeypatch.setattr(figures, "plot_fbeta_curves", capture)
    truth, preds = _ribosomes()
    text = make_report(preds, truth, tmp_path / "rep", beta=2).read_text()
    assert drawn["beta"] == 2 and drawn["thresholds"]["ribosome"] == pytest.approx(0.7)
    curve = drawn["curves"]["ribosome"]
    assert curve.loc[curve["threshold"] == 0.7, "fbeta"].iloc[0] == pytest.approx(curve["fbeta"].max())
    assert "**Weighted F2 = " in text and "F2-best threshold" in text


def test_tune_applies_the_same_thresholds_it_marks():
    truth, preds = _ribosomes()
    data = evaluate(preds, truth, thresholds="tune", beta=2)
    assert data.markers_applied and data.markers["ribosome"] == pytest.approx(0.7)
    assert sorted(data.main.predictions["score"]) == pytest.approx([0.7, 0.8, 0.9])
    assert data.main.table.loc["ribosome", "fbeta"] == pytest.approx(5 * 0.75 / 4.75)
    assert data.notes == ("predictions: thresholds tuned on this same set (optimistic).",)
    with pytest.raises(ValueError, match="'score' column"):
        evaluate(preds.drop(columns="score"), truth, thresholds="tune")
    with pytest.raises(ValueError, match="'tune'"):
        evaluate(preds, truth, thresholds="tuned")


def test_slices_draw_only_false_positives_above_the_marked_threshold():
    truth, preds = _ribosomes()
    loud = pd.DataFrame([("TS_a", "ribosome", 3000.0, 3000.0, 300.0, 0.95)], columns=[*COLS, "score"])
    data = evaluate(pd.concat([preds, loud]), truth, beta=2)  # scored as given: 4 found, 7 false positives
    assert data.markers["ribosome"] == pytest.approx(0.7)  # still the F2-best (hand-checked: 0.750 vs 0.741)
    view = slice_picks(data)
    assert view.run == "TS_a"
    assert sorted(view.picks["status"]) == ["fp", "tp", "tp", "tp", "tp"]  # truth as the table counts it
    assert view.picks.loc[view.picks["status"] == "fp", "score"].tolist() == [0.95]
    assert (view.below_threshold, view.beyond_cap) == (6, 0)  # the six at 0.3-0.5 are not drawn
    tuned = slice_picks(evaluate(pd.concat([preds, loud]), truth, thresholds="tune", beta=2))
    assert tuned.below_threshold == 0 and (tuned.picks["status"] == "fp").sum() == 1  # applied: all left drawn


def test_slices_draw_at_most_the_most_confident_false_positives():
    truth, preds = _ribosomes()
    data = evaluate(preds, truth, thresholds={"ribosome": 0.3}, beta=2)  # keeps all six false positives
    view = slice_picks(data, max_fp=4)
    fps = view.picks[view.picks["status"] == "fp"]
    assert fps["score"].tolist() == [0.5, 0.45, 0.4, 0.35] and (view.below_threshold, view.beyond_cap) == (0, 2)
    unscored = slice_picks(evaluate(preds.drop(columns="score"), truth), max_fp=4)  # nothing to rank by
    assert (unscored.picks["status"] == "fp").sum() == 6 and unscored.beyond_cap == 0


def test_slices_show_the_run_with_misses_not_the_biggest_one():
    truth, preds = _ribosomes()
    preds = preds[preds["score"] != 0.2]  # TS_a: the fourth ribosome is missed
    b_truth = pd.DataFrame([("TS_b", "ribosome", 400.0 * k, 900.0, 300.0) for k in range(1, 6)], columns=COLS)
    b_preds = b_truth.assign(score=0.9)  # TS_b: five ribosomes, all found
    data = evaluate(pd.concat([preds, b_preds]), pd.concat([truth, b_truth]), beta=2)
    view = slice_picks(data)
    assert view.run == "TS_a" and (view.picks["status"] == "fn").sum() == 1
    assert slice_picks(data, runs=["TS_b"]).run == "TS_b"  # only runs with a tomogram at hand
    assert slice_picks(data, runs=["TS_c"]) is None


def _table(rows):
    table = pd.DataFrame(rows, index=["radius", "weight", "n_true", "recall", "fbeta"]).T
    table["precision"] = 0.5
    return table


def test_no_rank_correlation_over_three_classes_and_seven_particles():
    table = _table(
        {
            "apo-ferritin": (60, 1, 3, 0.33, 0.3),
            "ribosome": (150, 1, 2, 1.0, 0.9),
            "thyroglobulin": (130, 2, 2, 0.5, 0.4),
        }
    )
    text = analysis_paragraph(table, 0.5)
    assert "ρ" not in text and "rises" not in text
    assert "With 3 scored classes and 7 true particles, no trend of recall" in text


def test_rank_correlation_carries_its_exact_chance():
    rows = {
        "apo-ferritin": (60, 1, 24, 0.5, 0.5),
        "beta-galactosidase": (90, 2, 5, 0.6, 0.58),
        "thyroglobulin": (130, 2, 15, 0.7, 0.84),
        "virus-like-particle": (135, 1, 9, 0.8, 0.9),
        "ribosome": (150, 1, 21, 0.9, 1.0),
    }
    text = analysis_paragraph(_table(rows), 0.8)
    # Recall in radius order exactly: rho = 1; 2 of the 5! = 120 orders reach |rho| = 1: 1.7 %, shown as 2%.
    assert "Recall rises with particle radius (Spearman ρ = 1.00 over 5 scored classes" in text
    assert "reach |ρ| ≥ 1.00 2% of the time); the smallest particle, apo-ferritin, is the hardest." in text
    # Frequency order 24, 5, 15, 9, 21 against recall: rho = 0.1; most random orders do as well.
    rho_n = np.corrcoef([5, 1, 3, 2, 4], [1, 2, 3, 4, 5])[0, 1]
    assert f"neither clearly more nor less reliably than rare ones (ρ = {rho_n:.2f}" in text


def test_false_positive_cost_is_measured_not_called_little():
    # Thyroglobulin P 0.18, R 1: F4 = 17*0.18/(16*0.18+1) = 0.789, 1.0 without false positives: cost 0.21.
    # A blob-like class with P 0.005, R 1: F4 = 0.074, so its false positives cost 0.93: not "little".
    rows = {"thyroglobulin": (130, 2, 7, 1.0, 17 * 0.18 / (16 * 0.18 + 1)), "ribosome": (150, 1, 9, 1.0, 0.074)}
    table = _table(rows)
    table["precision"] = [0.18, 0.005]
    text = analysis_paragraph(table, 0.5)
    assert "cost little" not in text
    assert "false positives cost thyroglobulin 0.21 of its F4 (precision 0.18); ribosome 0.93 of its F4" in text
