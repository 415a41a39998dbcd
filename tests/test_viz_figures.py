"""What the report's figures draw (issue 16): data and layout facts, not pixel sizes."""

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Ellipse

from cryopoint.post.thresholds import tune_thresholds
from cryopoint.tomogram import Tomogram
from cryopoint.viz.curves import NO_TRUTH_COLOR, fbeta_figure, pr_figure, pr_points
from cryopoint.viz.gallery import plot_failure_gallery
from cryopoint.viz.slices import STATUS_STYLES, plot_orthoslices, slice_centre

COLS = ["experiment", "particle_type", "x", "y", "z"]
VS = 10.0


def _renderer(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _case():
    """Ribosome: 2 true, hit at 0.9 and 0.15, false positives at 0.95 (the top score) and 0.5. Beta-amylase: no
    true particle, two predictions. Thyroglobulin: one true particle, predicted nowhere near (every one missed)."""
    truth = pd.DataFrame(
        [("a", "ribosome", 500.0, 500.0, 300.0), ("a", "ribosome", 1500.0, 500.0, 300.0)]
        + [("a", "thyroglobulin", 900.0, 900.0, 300.0)],
        columns=COLS,
    )
    preds = pd.DataFrame(
        [
            ("a", "ribosome", 505.0, 500.0, 300.0, 0.9),
            ("a", "ribosome", 1500.0, 505.0, 300.0, 0.15),
            ("a", "ribosome", 3000.0, 3000.0, 300.0, 0.95),
            ("a", "ribosome", 3000.0, 100.0, 300.0, 0.5),
            ("a", "beta-amylase", 100.0, 100.0, 100.0, 0.8),
            ("a", "beta-amylase", 900.0, 100.0, 100.0, 0.4),
            ("a", "thyroglobulin", 2900.0, 2900.0, 300.0, 0.7),
        ],
        columns=[*COLS, "score"],
    )
    return truth, preds


def test_fbeta_panels_label_axes_and_keep_marker_text_off_the_tick_numbers():
    truth, preds = _case()
    res = tune_thresholds(truth, preds, beta=2)
    fig = fbeta_figure(res.curves, res.thresholds, beta=2)
    renderer = _renderer(fig)
    axes = {ax.get_title().split("\n")[0]: ax for ax in fig.axes}
    assert axes["apo-ferritin"].get_ylabel() == "F2, precision, recall"  # first column
    t = res.thresholds["ribosome"]
    assert f"threshold {t:.4g}: F2 = " in axes["ribosome"].get_title()
    for ax in fig.axes:  # no label, note or title drawn over the numbers of an axis
        texts = [ax.title, *ax.texts]
        ticks = [lab for lab in ax.get_xticklabels() + ax.get_yticklabels() if lab.get_text()]
        for text in texts:
            if not text.get_text():
                continue
            box = text.get_window_extent(renderer)
            assert not any(_overlap(box, lab.get_window_extent(renderer)) for lab in ticks), text.get_text()


def test_class_without_truth_is_drawn_apart_from_a_class_with_every_particle_missed():
    truth, preds = _case()
    res = tune_thresholds(truth, preds)
    fig = fbeta_figure(res.curves, res.thresholds, n_true={"apo-ferritin": 0})
    axes = {ax.get_title().split("\n")[0]: ax for ax in fig.axes}
    amylase, thyro = axes["beta-amylase"], axes["thyroglobulin"]
    assert "no true particles" in amylase.get_title()
    assert "all 2 predictions are false" in amylase.texts[0].get_text()
    assert {line.get_color() for line in amylase.get_lines()} == {NO_TRUTH_COLOR}
    assert "no true particles" not in thyro.get_title() and not thyro.texts  # a real miss: drawn as data
    assert NO_TRUTH_COLOR not in {line.get_color() for line in thyro.get_lines()}
    assert "no predictions either" in axes["apo-ferritin"].texts[0].get_text()  # no truth, no predictions
    assert "no predictions" in axes["virus-like-particle"].get_title()


def test_pr_curve_draws_only_points_with_a_true_positive():
    truth, preds = _case()
    res = tune_thresholds(truth, preds)
    ribo = res.curves["ribosome"]
    assert ((ribo["recall"] == 0) & (ribo["precision"] == 0)).any()  # the top score is a false positive
    assert (pr_points(ribo)["tp"] > 0).all() and len(pr_points(ribo)) == len(ribo) - 1
    fig = pr_figure(res.curves)
    (ax,) = fig.axes
    drawn = {line.get_label(): np.column_stack(line.get_data()) for line in ax.get_lines()}
    assert set(drawn) == {"ribosome"}
    assert not np.any(np.all(drawn["ribosome"] == 0, axis=1))  # no point at (0, 0)
    assert ax.get_ylabel() == "precision" and ax.get_ylim()[1] < 1.1
    note = ax.get_title(loc="left").replace("\n", " ")
    assert "beta-amylase (no true particles)" in note and "thyroglobulin (no particle found)" in note
    assert "apo-ferritin (no predictions)" in note and "precision > 1" not in note


def test_pr_curve_explains_precision_above_one_only_when_it_happens():
    # One prediction midway between two ribosomes 100 Å apart covers both (50 Å < 75 Å): TP 2 of 1 prediction.
    truth = pd.DataFrame([("a", "ribosome", 500.0, 500.0, 300.0), ("a", "ribosome", 600.0, 500.0, 300.0)], columns=COLS)
    preds = pd.DataFrame([("a", "ribosome", 550.0, 500.0, 300.0, 0.9)], columns=[*COLS, "score"])
    fig = pr_figure(tune_thresholds(truth, preds).curves)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert line.get_ydata().tolist() == [2.0] and ax.get_ylim()[1] >= 2.0
    assert "precision > 1: one prediction covers two particles" in ax.get_title(loc="left").replace("\n", " ")


def test_gallery_title_clears_the_panel_titles_and_text_is_dark():
    truth, preds = _case()
    rng = np.random.default_rng(0)
    tomos = {"a": Tomogram(rng.standard_normal((40, 320, 320)).astype(np.float32), VS, name="a")}
    misses = truth.iloc[[2]].assign(found=False, nearest_distance=np.inf)
    fps = preds.iloc[[2, 4, 5]].assign(hit=False, nearest_distance=np.inf)  # the palette's light colours included
    fig = plot_failure_gallery(tomos, misses, fps)
    renderer = _renderer(fig)
    suptitle = fig.get_suptitle()
    assert "1 miss (dotted)" in suptitle and "3 false positives" in suptitle
    top = fig._suptitle.get_window_extent(renderer)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 8  # two panels per failure
    for ax in titled:
        assert not _overlap(top, ax.title.get_window_extent(renderer)), ax.get_title()
        r, g, b = mcolors.to_rgb(ax.title.get_color())
        assert 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.3, f"light title text on white: {ax.get_title()}"


def test_slice_planes_go_through_the_misses():
    vol = np.zeros((40, 60, 80), dtype=np.float32)
    picks = pd.DataFrame(
        {
            "particle_type": ["ribosome", "ribosome", "apo-ferritin"],
            "x": [400.0, 420.0, 700.0],  # the miss sits far from the volume's centre (x 40, y 30, z 20 voxels)
            "y": [300.0, 310.0, 520.0],
            "z": [200.0, 210.0, 50.0],
            "status": ["tp", "tp", "fn"],
        }
    )
    centre = slice_centre(picks, vol.shape, VS)
    assert centre == (5, 52, 70)  # through the missed ferritin's centre, far from the volume's (20, 30, 40)
    fig = plot_orthoslices(vol, VS, picks, center=centre)
    xy = next(ax for ax in fig.axes if ax.get_title().startswith("xy"))
    drawn = [e for e in xy.patches if isinstance(e, Ellipse)]
    assert [e.get_linestyle() for e in drawn].count(_dash(STATUS_STYLES["fn"])) == 1
    assert slice_centre(picks.iloc[:0], vol.shape, VS) == (20, 30, 40)
    # Two misses at z 5 and 8 (voxels): the plane that cuts both, the wider for them (nearest both centres).
    two = pd.concat([picks, picks.iloc[[2]].assign(z=80.0, y=200.0, x=200.0)], ignore_index=True)
    assert slice_centre(two, vol.shape, VS)[0] in (6, 7)


def _dash(style: str):
    from matplotlib.patches import Patch

    return Patch(linestyle=style).get_linestyle()


@pytest.mark.parametrize("status", [None, "tp"])
def test_slice_planes_without_misses_cut_the_most_particles(status):
    picks = pd.DataFrame({"particle_type": ["ribosome"] * 3, "x": [100.0] * 3, "y": [100.0] * 3, "z": [50.0] * 3})
    if status:
        picks["status"] = status
    assert slice_centre(picks, (40, 60, 80), VS) == (19, 24, 24)  # nearest the centre among planes cutting them
