"""benchmarks/per_run.py: per-run recall on a blind source, with source F's imaging knobs replayed beside it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import blind_sim_f, per_run


def _truth():
    rows = [("r1", "apo-ferritin", 100.0 * i, 500.0, 500.0) for i in range(1, 5)]
    rows += [("r2", "apo-ferritin", 1000.0, 500.0, 500.0), ("r2", "ribosome", 2000.0, 900.0, 900.0)]
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])


def test_per_run_recall_counts_the_metrics_matches_per_run_and_class():
    truth = _truth()
    picks = pd.DataFrame(
        [
            ("r1", "apo-ferritin", 100.0 + 29.0, 500.0, 500.0, 0.9),  # within half the radius (30 Å): found
            ("r1", "apo-ferritin", 200.0 + 31.0, 500.0, 500.0, 0.9),  # just outside it: missed
            ("r2", "apo-ferritin", 1000.0, 500.0, 500.0, 0.9),  # wrong run for r1's particles
            ("r2", "ribosome", 100.0, 500.0, 500.0, 0.9),  # another class's place: not a ribosome hit
        ],
        columns=["experiment", "particle_type", "x", "y", "z", "score"],
    )
    names = ["r1", "r2", "r3"]
    tp, n_true = per_run.recall_counts(truth, picks, names)
    table = per_run.per_run_recall(tp, n_true, names)
    assert list(table.columns) == list(per_run.CLASSES)
    assert table.loc["r1", "apo-ferritin"] == pytest.approx(0.25)
    assert table.loc["r2", "apo-ferritin"] == 1.0 and table.loc["r2", "ribosome"] == 0.0
    assert np.isnan(table.loc["r1", "ribosome"]) and table.loc["r3"].isna().all()  # no particle: no recall
    pooled = per_run.pooled_recall(tp, n_true)
    assert pooled["apo-ferritin"] == pytest.approx(2 / 5) and pooled["ribosome"] == 0.0  # not matched across runs
    assert np.isnan(pooled["thyroglobulin"])


def test_f_knobs_replay_what_the_simulator_draws():
    """The replay must give the knobs the run was simulated with: a change in F's order of draws fails here."""
    knobs = per_run.f_knobs(5, 2, 2)
    assert list(knobs.index) == ["TS_F_2", "TS_F_3"]
    for k in (2, 3):
        _, _, info = blind_sim_f.simulate(5, k, (24, 64, 64))
        for name in ("align_sd", "noise_mult", "recon", "wiener", "phase_plate", "defocus"):
            assert knobs.loc[f"TS_F_{k}", name] == info["prm"][name]
        assert knobs.loc[f"TS_F_{k}", "tilts"] == info["ntilt"]
    assert knobs.loc["TS_F_2", "align_sd"] != knobs.loc["TS_F_3", "align_sd"]


def test_knob_effects_correlate_numeric_knobs_and_group_categorical_ones():
    runs = [f"r{i}" for i in range(6)]
    recall = pd.DataFrame({c: np.nan for c in per_run.CLASSES}, index=runs)
    recall["apo-ferritin"] = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    recall.loc[["r0", "r1", "r2"], "thyroglobulin"] = [0.5, 0.5, 1.0]
    knobs = pd.DataFrame(
        {"align": [0.1, 0.5, 0.9, 1.3, 1.7, 2.1], "recon": ["wbp", "sirt"] * 3, "flip": [True] * 6},
        index=runs,
    )
    corr, groups = per_run.knob_effects(recall, knobs)
    assert list(corr.index) == ["align"]
    assert corr.loc["align", "apo-ferritin"] == pytest.approx(-1.0)
    assert corr.loc["align", "thyroglobulin"] == pytest.approx(np.corrcoef([0.1, 0.5, 0.9], [0.5, 0.5, 1.0])[0, 1])
    assert np.isnan(corr.loc["align", "ribosome"])  # no run has one
    assert groups["recon"].loc["wbp", "apo-ferritin"] == pytest.approx(0.6)  # runs 0, 2, 4
    assert groups["recon"].loc["sirt", "runs"] == 3 and list(groups["flip"].index) == ["True"]


def test_main_writes_report_json_and_figure(tmp_path):
    out = tmp_path / "res" / "per_run_F"
    args = ["--source", "F", "--seed", "3", "--first", "1", "--runs", "3", "--shape", "48", "160", "160"]
    path = per_run.main([*args, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    text = path.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    assert text.startswith("# Source F, run by run") and "| TS_F_1 |" in text and "| TS_F_3 |" in text
    assert sorted(data["recall"]) == ["TS_F_1", "TS_F_2", "TS_F_3"]
    for cls in per_run.CLASSES:  # every peak kept finds at least what the default picks find
        for run in data["recall"]:
            picked, every = data["recall"][run][cls], data["recall_all_peaks"][run][cls]
            assert (picked is None) == (every is None) and (picked is None or picked <= every)
    assert "Correlation (Pearson r" in text and "Mean recall by `recon`" in text and "| **all runs (pooled)** |" in text
    assert out.with_suffix(".png").stat().st_size > 1000 and "![recall" in text
