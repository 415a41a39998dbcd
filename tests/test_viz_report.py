"""Figures and the evaluation report (issue 8) on a tiny hand-made case."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _figures import assert_png

from cryopoint.tomogram import Tomogram
from cryopoint.viz.confusion import confusion_matrix, plot_confusion
from cryopoint.viz.gallery import plot_failure_gallery, select_failures
from cryopoint.viz.heatmaps import plot_heatmap_overlay
from cryopoint.viz.report import analysis_paragraph, class_table, make_report

VS = 10.0


def _png_size(path: Path) -> tuple[int, int]:
    return assert_png(path)


@pytest.fixture
def case():
    """Two runs. Ribosome: 2 true, 2 hits + 1 FP. Apo-ferritin: 2 true, 1 hit. Thyroglobulin: 1 true, missed,
    with a beta-galactosidase prediction sitting on it (a class confusion)."""
    truth = pd.DataFrame(
        [
            ("TS_a", "ribosome", 200.0, 200.0, 150.0),
            ("TS_a", "ribosome", 400.0, 300.0, 150.0),
            ("TS_a", "apo-ferritin", 100.0, 400.0, 100.0),
            ("TS_b", "apo-ferritin", 300.0, 100.0, 120.0),
            ("TS_b", "thyroglobulin", 250.0, 250.0, 100.0),
        ],
        columns=["experiment", "particle_type", "x", "y", "z"],
    )
    preds = pd.DataFrame(
        [
            ("TS_a", "ribosome", 210.0, 200.0, 150.0, 0.9),
            ("TS_a", "ribosome", 400.0, 310.0, 150.0, 0.8),
            ("TS_a", "ribosome", 100.0, 100.0, 100.0, 0.7),  # FP, nothing there
            ("TS_a", "apo-ferritin", 105.0, 400.0, 100.0, 0.6),
            ("TS_b", "beta-galactosidase", 255.0, 250.0, 100.0, 0.5),  # on the thyroglobulin
        ],
        columns=["experiment", "particle_type", "x", "y", "z", "score"],
    )
    rng = np.random.default_rng(0)
    tomos = {r: Tomogram(rng.standard_normal((24, 48, 48)).astype(np.float32), VS, name=r) for r in ("TS_a", "TS_b")}
    return truth, preds, tomos


# The case's per-class table and score worked out by hand (F-beta with beta = 4: 17 P R / (16 P + R)):
# ribosome P = 2/3, R = 1; apo-ferritin P = 1, R = 1/2; every other class scores 0; weights sum to 7.
HAND_F = {"ribosome": 17 * (2 / 3) / (16 * 2 / 3 + 1), "apo-ferritin": 17 * 0.5 / (16 + 0.5)}
HAND_OVERALL = (HAND_F["ribosome"] * 1 + HAND_F["apo-ferritin"] * 1) / 7  # 0.2124
HAND_ROWS = [  # class | radius | weight | true | predicted | TP | FP | FN | precision | recall | F-beta
    "| apo-ferritin | 60 | 1 | 2 | 1 | 1 | 0 | 1 | 1.000 | 0.500 | 0.515 |",
    "| beta-amylase | 65 | 0 | 0 | 0 | 0 | 0 | 0 | 0.000 | 0.000 | 0.000 |",
    "| beta-galactosidase | 90 | 2 | 0 | 1 | 0 | 1 | 0 | 0.000 | 0.000 | 0.000 |",
    "| ribosome | 150 | 1 | 2 | 3 | 2 | 1 | 0 | 0.667 | 1.000 | 0.971 |",
    "| thyroglobulin | 130 | 2 | 1 | 0 | 0 | 0 | 1 | 0.000 | 0.000 | 0.000 |",
    "| virus-like-particle | 135 | 1 | 0 | 0 | 0 | 0 | 0 | 0.000 | 0.000 | 0.000 |",
]


def _hand_table() -> pd.DataFrame:
    """HAND_ROWS as the table ``analysis_paragraph`` reads."""
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in HAND_ROWS]
    cols = ["radius", "weight", "n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "fbeta"]
    return pd.DataFrame([[float(v) for v in c[1:]] for c in cells], index=[c[0] for c in cells], columns=cols)


def test_class_table_numbers(case):
    truth, preds, _ = case
    overall, table = class_table(truth, preds)
    rib = table.loc["ribosome"]
    assert (rib["tp"], rib["fp"], rib["fn"]) == (2, 1, 0)
    apo = table.loc["apo-ferritin"]
    assert (apo["tp"], apo["fp"], apo["fn"]) == (1, 0, 1)
    assert table.loc["thyroglobulin", "fn"] == 1 and table.loc["thyroglobulin", "recall"] == 0
    assert table.loc["ribosome", "radius"] == 150
    assert table.loc["ribosome", "fbeta"] == pytest.approx(HAND_F["ribosome"])
    assert overall == pytest.approx(HAND_OVERALL)


def test_analysis_paragraph_reads_the_numbers():
    text = analysis_paragraph(_hand_table(), HAND_OVERALL)
    assert "The weighted F4 score is 0.212." in text
    assert "highest for ribosome (1.00)" in text and "lowest for thyroglobulin (0.00)" in text
    # Score lost to 1.0, weight included: thyroglobulin 2 x (1 - 0) / 7, apo-ferritin 1 x (1 - 0.515) / 7.
    assert "Most of the score lost to a perfect 1.0 comes from thyroglobulin (0.286) and apo-ferritin (0.069)" in text


def test_confusion_counts(case):
    truth, preds, _ = case
    mat = confusion_matrix(truth, preds)
    assert mat.loc["ribosome", "ribosome"] == 2
    assert mat.loc["thyroglobulin", "beta-galactosidase"] == 1
    assert mat.loc["(none)", "ribosome"] == 1  # the FP on empty space
    assert int(mat.to_numpy().sum()) == len(preds)


def test_figures_write_pngs(case, tmp_path):
    from cryopoint.metric import match_points

    truth, preds, tomos = case
    heat = np.zeros((6, 12, 24, 24), np.float32)
    heat[3, 6, 10, 10] = 1.0
    plot_heatmap_overlay(tomos["TS_a"].data, heat, "ribosome", stride=2, out=tmp_path / "h.png")
    w, h = _png_size(tmp_path / "h.png")
    assert w > 600 and h > 250
    plot_confusion(confusion_matrix(truth, preds), tmp_path / "c.png")
    _png_size(tmp_path / "c.png")

    mp, mt = match_points(truth, preds)
    misses, fps = select_failures(mt, mp)
    assert set(misses["particle_type"]) == {"apo-ferritin", "thyroglobulin"}
    # FPs: the beta-galactosidase on the thyroglobulin and the ribosome on empty space, in catalogue order.
    assert fps["particle_type"].tolist() == ["beta-galactosidase", "ribosome"]
    assert fps["score"].tolist() == pytest.approx([0.5, 0.7])
    fig = plot_failure_gallery(tomos, misses, fps, tmp_path / "g.png")
    assert len(fig.axes) >= 2 * (len(misses) + len(fps))
    _png_size(tmp_path / "g.png")


def test_report_contains_the_right_numbers(case, tmp_path):
    truth, preds, tomos = case
    path = make_report(preds, truth, tmp_path / "rep", tomograms=tomos)
    text = path.read_text()
    assert f"{HAND_OVERALL:.4f}" == "0.2124"
    assert "**Weighted F4 = 0.2124** on 2 tomogram(s), 5 true particles, 5 predictions" in text
    for row in HAND_ROWS:
        assert row in text
    assert "comes from thyroglobulin (0.286) and apo-ferritin (0.069)" in text
    # Why the misses were missed: TS_b's apo-ferritin has nothing near; the thyroglobulin has only the
    # beta-galactosidase pick on it (class | true | missed | below threshold | off-centre | other class | no peak).
    assert "| class | true | missed | below threshold | off-centre | other class | no peak |" in text
    for row in ("| apo-ferritin | 2 | 1 | 0 | 0 | 0 | 1 |", "| ribosome | 2 | 0 | 0 | 0 | 0 | 0 |"):
        assert row in text
    assert "| thyroglobulin | 1 | 1 | 0 | 0 | 1 | 0 |" in text
    for fig in ("fbeta_curves.png", "pr_curves.png", "failures.png", "confusion.png", "slices.png"):
        assert f"]({fig})" in text
        _png_size(tmp_path / "rep" / fig)


def test_report_compare_and_tuning(case, tmp_path):
    truth, preds, _ = case
    worse = preds.iloc[:2]
    path = make_report({"good": preds, "worse": worse}, truth, tmp_path / "rep", thresholds="tune")
    text = path.read_text()
    assert "## Side by side" in text and "| good |" in text and "| worse |" in text
    assert "optimistic" in text
    _png_size(tmp_path / "rep" / "compare_fbeta.png")


def test_report_miss_causes_look_below_the_thresholds_applied(case, tmp_path):
    """A threshold above the found apo-ferritin's score turns it into a miss that is *below threshold*."""
    truth, preds, _ = case
    text = make_report(preds, truth, tmp_path / "rep", thresholds={"apo-ferritin": 0.7}).read_text()
    assert "| apo-ferritin | 2 | 2 | 1 | 0 | 0 | 1 |" in text


def test_compare_curves_keep_one_colour_per_method(monkeypatch, tmp_path):
    """A method missing from a class must not shift the colours of the others (one legend for all)."""
    from cryopoint.viz.report_figures import compare_curves

    curve = pd.DataFrame({"threshold": [0.1, 0.5], "fbeta": [0.4, 0.2]})
    curves = {"a": {"ribosome": curve}, "b": {"ribosome": curve, "apo-ferritin": curve}, "c": {"apo-ferritin": curve}}
    fig = compare_curves(curves)
    axes = {ax.get_title(): ax for ax in fig.axes}
    colours = {t: [line.get_color() for line in axes[t].get_lines()] for t in ("apo-ferritin", "ribosome")}
    assert colours == {"apo-ferritin": ["C1", "C2"], "ribosome": ["C0", "C1"]}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "c"]
    assert "no predictions: a" in [t.get_text() for t in axes["apo-ferritin"].texts]


def test_report_tool_end_to_end(case, tmp_path):
    from _layout_helpers import write_challenge_store

    from cryopoint.io import write_submission_csv

    truth, preds, _ = case
    root = tmp_path / "data"
    write_challenge_store(root, runs=["TS_a", "TS_b"], shape=(24, 48, 48), picks=truth)
    pred_csv = tmp_path / "pred.csv"
    preds.to_csv(pred_csv, index=False)
    base_csv = tmp_path / "base.csv"
    write_submission_csv(base_csv, preds)
    out = tmp_path / "report"
    tool = Path(__file__).resolve().parents[1] / "tools" / "report.py"
    subprocess.run(
        [
            sys.executable,
            str(tool),
            "--predictions",
            f"heatmap={pred_csv}",
            "--compare",
            f"base={base_csv}",
            "--truth",
            str(root),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    text = (out / "report.md").read_text()
    assert "| heatmap |" in text and "| base |" in text
    _png_size(out / "failures.png")


def test_analysis_names_ties_and_does_not_overclaim_trends():
    # Four classes tied at recall 1.0, the smallest (apo-ferritin) among them: no "small particles are hard".
    rows = {
        "apo-ferritin": (60, 1, 24, 1.0, 0.97),
        "beta-galactosidase": (90, 2, 5, 0.8, 0.58),
        "ribosome": (150, 1, 21, 1.0, 1.0),
        "thyroglobulin": (130, 2, 15, 0.93, 0.84),
        "virus-like-particle": (135, 1, 9, 1.0, 1.0),
    }
    table = pd.DataFrame(rows, index=["radius", "weight", "n_true", "recall", "fbeta"]).T
    table["precision"] = 0.5
    text = analysis_paragraph(table, 0.83)
    assert "highest for apo-ferritin, ribosome and virus-like-particle (1.00)" in text
    assert "lowest for beta-galactosidase (0.80)" in text
    assert "hardest" not in text


def test_one_palette_for_every_figure(case, monkeypatch):
    """A class is drawn in the same colour in every figure (slices, failure gallery, comparison curves): read
    the colours back from the drawn figures, not from the modules."""
    from matplotlib.colors import to_hex
    from matplotlib.patches import Circle, Ellipse

    from cryopoint.metric import match_points
    from cryopoint.viz.common import CLASS_COLORS
    from cryopoint.viz.slices import plot_orthoslices

    assert len(set(CLASS_COLORS.values())) == 6 and "#999999" not in CLASS_COLORS.values()  # grey: unknown
    truth, preds, tomos = case

    def drawn(fig, kind):
        return {to_hex(p.get_edgecolor()) for ax in fig.axes for p in ax.patches if isinstance(p, kind)}

    for name in ("ribosome", "apo-ferritin"):  # both cross TS_a's central slices
        fig = plot_orthoslices(
            tomos["TS_a"].data, VS, truth[(truth["experiment"] == "TS_a") & (truth.particle_type == name)]
        )
        assert drawn(fig, Ellipse) == {CLASS_COLORS[name]}, name

    mp, mt = match_points(truth, preds)
    misses, fps = select_failures(mt, mp)
    fig = plot_failure_gallery(tomos, misses, fps)
    shown = set(misses["particle_type"]) | set(fps["particle_type"])
    assert drawn(fig, Circle) == {CLASS_COLORS[n] for n in shown}
    # The comparison figure colours methods, not classes (one colour per method in every panel): that is
    # test_compare_curves_keep_one_colour_per_method.
