"""benchmarks/default_model.py: per-run counts, the paired bootstrap against the blob detector, fresh test runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_common import bootstrap_fbeta_gap, per_run_counts
from cryopoint.metric import score
from cryopoint.particles import PARTICLE_NAMES

RIBO, APO = PARTICLE_NAMES.index("ribosome"), PARTICLE_NAMES.index("apo-ferritin")


def _truth(runs: int, per_run: int) -> pd.DataFrame:
    rows = []
    for r in range(runs):
        for i in range(per_run):
            rows.append({"experiment": f"r{r}", "particle_type": "ribosome", "x": 1000.0 * i, "y": 0.0, "z": 0.0})
    return pd.DataFrame(rows)


def test_per_run_counts_add_up_to_the_pooled_metric():
    truth = _truth(3, 4)
    picks = truth.iloc[[0, 1, 5, 9, 10, 11]].copy()  # 2 + 1 + 3 found
    picks = pd.concat([picks, picks.iloc[:1].assign(x=50_000.0)], ignore_index=True)  # one false positive in r0
    counts = per_run_counts(truth, picks, ["r0", "r1", "r2"])
    assert counts.shape == (3, 3, len(PARTICLE_NAMES))
    assert counts[:, 0, RIBO].tolist() == [2, 1, 3]  # true positives per run
    assert counts[:, 1, RIBO].tolist() == [3, 1, 3]  # predictions per run
    pooled = score(truth, picks).table
    np.testing.assert_array_equal(counts.sum(axis=0)[0], pooled["tp"].to_numpy())
    np.testing.assert_array_equal(counts.sum(axis=0)[1], pooled["n_pred"].to_numpy())
    np.testing.assert_array_equal(counts.sum(axis=0)[2], pooled["n_true"].to_numpy())


def test_bootstrap_gap_of_perfect_against_empty_is_one_with_a_tight_interval():
    truth = _truth(5, 3)
    runs = [f"r{i}" for i in range(5)]
    perfect = per_run_counts(truth, truth, runs)
    empty = per_run_counts(truth, truth.iloc[:0], runs)
    gap = bootstrap_fbeta_gap(perfect, empty, n_boot=200)
    assert gap["gap"][RIBO] == pytest.approx(1.0) and gap["lo"][RIBO] == pytest.approx(1.0)
    assert gap["a"][APO] == gap["b"][APO] == gap["gap"][APO] == 0.0  # no apo-ferritin: nothing to find
    same = bootstrap_fbeta_gap(perfect, perfect, n_boot=200)
    assert same["lo"][RIBO] == same["hi"][RIBO] == 0.0  # paired draws: identical methods never differ


def test_bootstrap_interval_widens_when_runs_disagree():
    truth = _truth(6, 4)
    runs = [f"r{i}" for i in range(6)]
    # a finds all of runs 0-2 and none of 3-5; b finds 2 of 4 in every run: same pooled recall, 0.5
    a = truth[truth.experiment.isin(["r0", "r1", "r2"])]
    b = truth.groupby("experiment").head(2)
    gap = bootstrap_fbeta_gap(per_run_counts(truth, a, runs), per_run_counts(truth, b, runs), n_boot=500)
    assert gap["gap"][RIBO] == pytest.approx(0.0, abs=1e-12)
    assert gap["lo"][RIBO] < -0.1 and gap["hi"][RIBO] > 0.1  # run-to-run disagreement shows as width
    with pytest.raises(ValueError, match="same runs"):
        bootstrap_fbeta_gap(per_run_counts(truth, a, runs), per_run_counts(truth, b, runs[:3]))


def test_fresh_test_runs_are_new_runs_and_the_report_compares_with_blob(tmp_path):
    from benchmarks import default_model
    from benchmarks.generalization import BUDGETS, source_root, split_names
    from cryopoint.io import list_runs

    out = tmp_path / "dm"
    cache = str(tmp_path / "cache")
    default_model.main(["--budget", "smoke", "--no-full", "--test-runs", "2", "--cache-dir", cache, "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    for source, row in data["sources"].items():
        bench_runs = set(list_runs(source_root(source, BUDGETS["smoke"], cache)))
        assert len(row["test_runs"]) == 2 and not set(row["test_runs"]) & bench_runs
        assert set(split_names(source_root(source, BUDGETS["smoke"], cache), BUDGETS["smoke"])[0]) <= bench_runs
        for name in PARTICLE_NAMES:
            g = row["vs_blob"][name]
            assert g["lo"] <= g["hi"]
            assert g["gap"] == pytest.approx(row["own"][name] - row["blob"][name])
    md = out.with_suffix(".md").read_text()
    assert "2 fresh runs" in md and "Above the blob detector?" in md
    # another seed offset is another test set (a confirmation set): no run shared with the usual one
    source = next(iter(data["sources"]))
    other = set(list_runs(source_root(source, BUDGETS["smoke"], cache, fresh_runs=2, fresh_offset=7000)))
    assert len(other) == 2 and not other & set(data["sources"][source]["test_runs"])


@pytest.mark.filterwarnings("ignore::cryopoint.errors.PolarityWarning")  # thin stand-ins fool the check
def test_full_size_pools_tomograms_and_its_picks_are_what_detect_keeps(tmp_path):
    import cryopoint
    from benchmarks import default_model
    from cryopoint.synth import get_preset, simulate_run

    shape = (48, 128, 128)  # small stand-ins for the full-size tomograms: the same code path
    saved = tmp_path / "saved"
    full = default_model.full_size("default", 2, shape=shape, report=tmp_path / "report", first_seed=3, save=saved)
    det = cryopoint.load("default")
    params = get_preset("realistic")
    truths, picks = [], []
    for seed in (3, 4):  # first_seed 3: the simulator seeds 3 and 4, not the usual 0 and 1
        vol, truth = simulate_run(shape, params, np.random.default_rng(seed))
        peaks, kept = default_model.peaks_and_picks(det, vol, params.voxel_size)
        assert len(kept) < len(peaks)  # the thresholds removed something
        if seed == 3:  # the picks are exactly those detect keeps by default, from the same peaks
            default = cryopoint.detect(vol, det, voxel_size=params.voxel_size, device="cpu")
            cols = ["particle_type", "x", "y", "z", "score"]
            pd.testing.assert_frame_equal(
                kept[cols].sort_values(cols).reset_index(drop=True),
                default[cols].sort_values(cols).reset_index(drop=True),
            )
        truths.append(truth.assign(experiment=f"t{seed}"))
        picks.append(kept.assign(experiment=f"t{seed}"))
    truth = pd.concat(truths, ignore_index=True)
    assert full["n"] == len(truth) and full["tomograms"] == 2 and full["shape"] == list(shape)
    assert full["seeds"] == [3, 4]
    pooled = score(truth, pd.concat(picks))
    assert full["own"]["score"] == pytest.approx(pooled.score)  # pooled over both
    # the saved tables rescore to the same figures without inference (so sets of tomograms can be pooled later)
    on_disk = {k: pd.read_csv(saved / f"full_{k}.csv") for k in ("truth", "peaks", "picks")}
    assert sorted(set(on_disk["truth"].experiment)) == ["full_3", "full_4"] and len(on_disk["truth"]) == len(truth)
    assert score(on_disk["truth"], on_disk["picks"]).score == pytest.approx(full["own"]["score"])
    assert len(on_disk["peaks"]) > len(on_disk["picks"])
    # every false positive of the default picks is sorted into one place (layouts replayed from the seeds)
    assert {n: sum(full["fp_sources"][n].values()) for n in PARTICLE_NAMES} == pooled.table["fp"].to_dict()
    assert set(full["oracle"]) >= set(PARTICLE_NAMES)
    md = "\n".join(default_model.full_size_lines(full))
    assert "tomograms (simulator seeds 3-4, pooled)" in md and "48 x 128 x 128 voxels" in md
    assert f"**{full['oracle']['score']:.3f}**" in md and f"**{full['own']['score']:.3f}**" in md
    assert "Where the false positives of the shipped picks sit" in md
    report = (tmp_path / "report" / "report.md").read_text()  # the ranking's failures, on both tomograms
    assert "thresholds tuned on this same set" in report and "2 tomogram(s)" in report
    assert (tmp_path / "report" / "failures.png").stat().st_size > 0
    with pytest.raises(ValueError, match="at least 1"):
        default_model.full_size("default", 0)
    with pytest.raises(ValueError, match="0 or more"):
        default_model.full_size("default", 1, first_seed=-1)
