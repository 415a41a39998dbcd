"""benchmarks/score_tails: peak labels, the rule fitted per batch, the tail curves and the report."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.score_tails import (
    SCORED,
    background_above,
    batch_tail_thresholds,
    label_peaks,
    measure_source,
    tail_curves,
    write_figure,
    write_report,
)
from cryopoint.api import load
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.noise_tail import noise_tail_thresholds
from tests.test_api import save_tiny_checkpoint


def _frame(rows, cols=("experiment", "particle_type", "x", "y", "z")):
    return pd.DataFrame(rows, columns=list(cols))


def test_labels_tell_particles_confusions_and_unlabelled_structure_apart():
    truth = _frame([
        ("r1", "ribosome", 1000.0, 1000.0, 1000.0),
        ("r1", "thyroglobulin", 3000.0, 1000.0, 1000.0),
        ("r2", "ribosome", 5000.0, 5000.0, 5000.0),
    ])  # fmt: skip
    peaks = _frame([
        ("r1", "ribosome", 1050.0, 1000.0, 1000.0, 0.9),   # 50 Å from its ribosome (match 75 Å): particle
        ("r1", "ribosome", 1100.0, 1000.0, 1000.0, 0.8),   # 100 Å: too far for a hit, no other class near
        ("r1", "ribosome", 3040.0, 1000.0, 1000.0, 0.7),   # on the thyroglobulin: other class
        ("r1", "apo-ferritin", 3060.0, 1000.0, 1000.0, 0.6),  # 60 Å from it: within 0.5 x 130 Å
        ("r1", "apo-ferritin", 3070.0, 1000.0, 1000.0, 0.5),  # 70 Å: beyond it
        ("r2", "ribosome", 1000.0, 1000.0, 1000.0, 0.9),   # right place, wrong run: unlabelled
        ("r3", "ribosome", 0.0, 0.0, 0.0, 0.9),            # a run without truth
    ], cols=("experiment", "particle_type", "x", "y", "z", "score"))  # fmt: skip
    peaks.index = pd.Index([10, 11, 12, 13, 14, 15, 16])
    got = label_peaks(peaks, truth)
    assert list(got.index) == [10, 11, 12, 13, 14, 15, 16]
    assert list(got) == ["particle", "unlabelled", "other class", "other class"] + ["unlabelled"] * 3


def test_the_batch_rule_is_the_rule_on_the_pooled_peaks_and_never_below_the_floor():
    rng = np.random.default_rng(0)
    rows = []
    for run in ("a", "b"):
        rows += [(run, "ribosome", s) for s in rng.exponential(0.05, 3000)]  # background of 0.05 µm³ each
        rows += [(run, "ribosome", s) for s in rng.uniform(0.6, 1.0, 10)]  # particles far above it
    peaks = pd.DataFrame(rows, columns=["experiment", "particle_type", "score"])
    floor = {"ribosome": 0.01, "apo-ferritin": 0.3}
    got = batch_tail_thresholds(peaks, floor, {"a": 0.05, "b": 0.05, "unused": 7.0})
    assert got == noise_tail_thresholds(peaks, floor, 0.1)  # the runs' volumes summed, other runs ignored
    assert 0.25 < got["ribosome"] < 0.6  # raised above the floor into the gap between noise and particles
    assert got["apo-ferritin"] == 0.3  # no peaks of it: the floor stands


def test_tail_curves_are_falling_scores_against_rising_density_with_both_ends_kept():
    peaks = pd.DataFrame({"particle_type": ["ribosome"] * 1000, "score": np.linspace(1.0, 0.001, 1000)})
    labels = pd.Series(["particle"] * 10 + ["unlabelled"] * 990)
    curves = tail_curves(peaks, labels, total_um3=0.5)["ribosome"]
    bg = curves["background"]
    assert bg["density"][0] == pytest.approx(2.0) and bg["density"][-1] == pytest.approx(990 / 0.5)
    assert np.all(np.diff(bg["score"]) < 0) and np.all(np.diff(bg["density"]) > 0)
    assert len(bg["score"]) <= 300 and len(curves["particle"]["score"]) == 10
    assert curves["particle"]["score"][0] == 1.0


def test_background_above_counts_only_non_particles_at_or_above_the_threshold():
    peaks = pd.DataFrame({"particle_type": ["ribosome"] * 4, "score": [0.9, 0.8, 0.7, 0.2]})
    labels = pd.Series(["particle", "other class", "unlabelled", "unlabelled"])
    got = background_above(labels, peaks, {n: 0.5 for n in PARTICLE_NAMES})
    assert got["ribosome"] == {"n": 2, "other class": 1, "unlabelled": 1}
    assert got["apo-ferritin"] == {"n": 0, "other class": 0, "unlabelled": 0}


def test_measure_source_scores_every_setting_and_the_report_and_figure_are_written(tmp_path):
    det = load(save_tiny_checkpoint(tmp_path / "tiny.pt", thresholds={n: 0.05 for n in PARTICLE_NAMES}))
    rng = np.random.default_rng(1)
    truth_rows, peak_rows = [], []
    for run in ("r1", "r2"):
        for k in range(8):  # 8 well separated ribosomes, each found with a high score
            xyz = (500.0 + 400 * k, 800.0, 800.0)
            truth_rows.append((run, "ribosome", *xyz))
            peak_rows.append((run, "ribosome", *xyz, rng.uniform(0.7, 1.0)))
        for cls in SCORED:  # a background of 2000 peaks per class, far from any particle
            for s in rng.exponential(0.05, 2000):
                peak_rows.append((run, cls, *rng.uniform(0, 4000, 2), 3000.0, s))
    truth = _frame(truth_rows)
    peaks = _frame(peak_rows, cols=("experiment", "particle_type", "x", "y", "z", "score"))
    res = measure_source(det, ["r1", "r2"], peaks, truth, {"r1": 0.02, "r2": 0.02})
    assert res["particles"] == 16 and res["runs"] == 2
    s = res["scores"]
    assert s["oracle"]["ribosome"] == pytest.approx(1.0)
    assert s["own"]["ribosome"] < s["tail"]["ribosome"] <= s["oracle"]["ribosome"]  # the floor keeps the noise
    assert s["batch"]["ribosome"] > s["own"]["ribosome"]
    assert res["counts"]["ribosome"]["true"] == 16 and 14 <= res["counts"]["ribosome"]["pooled"] <= 30
    assert res["background_above_oracle"]["ribosome"]["other class"] == 0

    meta = {"command": "python -m benchmarks.score_tails", "date": "d", "machine": "m", "minutes": 0.1, "model": "tiny",
            "sha256": "0" * 64, "shape": [96, 256, 256], "test_runs": 2, "figure": "t.png"}  # fmt: skip
    result = {"meta": meta, "sources": {"A": res}}
    md = write_report(result, tmp_path / "t").read_text()
    assert f"| A | 16 | oracle (tuned on the test runs) | **{s['oracle']['score']:.3f}** |" in md
    assert "16 true: " in md
    write_figure(result, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000
