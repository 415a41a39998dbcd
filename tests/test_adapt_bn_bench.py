"""benchmarks/adapt_bn.py: its scores are what the metric says, and it runs end to end (every weight, the
full-size path on small tomograms), writing a report whose rows come from real detection."""

import json

import pytest
from _figures import assert_png
from test_thresholds_rules import dataset

from benchmarks import adapt_bn, default_model
from benchmarks.bench_common import own_picks
from cryopoint.metric import score
from cryopoint.post.thresholds import apply_thresholds, tune_thresholds


def test_set_scores_are_default_picks_thresholds_alone_and_the_oracle(plain_detector):
    truth, preds = dataset(3, n_exp=3)
    geometry = {r: ((32, 96, 96), (10.0, 10.0, 10.0)) for r in set(preds.experiment)}
    got = adapt_bn.set_scores(plain_detector, truth, preds, geometry)
    assert got["default"]["score"] == pytest.approx(score(truth, own_picks(plain_detector, preds, geometry)).score)
    assert got["alone"] == pytest.approx(score(truth, apply_thresholds(preds, plain_detector.default_thresholds)).score)
    assert got["ranking"] == pytest.approx(tune_thresholds(truth, preds).score_after)
    assert got["ranking"] >= got["alone"]  # argmax on the set beats any fixed thresholds on it
    assert got["particles"] == int((truth.particle_type != "beta-amylase").sum())


def test_benchmark_runs_end_to_end_and_reuses_given_peaks(tmp_path, monkeypatch):
    monkeypatch.setattr(default_model, "FULL_SHAPE", (32, 96, 96))  # "full-size" small enough for a test
    out = tmp_path / "adapt"
    common = ["--budget", "smoke", "--test-runs", "2", "--full-tomograms", "1", "--cache-dir", str(tmp_path / "c")]
    md = adapt_bn.main([*common, "--weights", "0", "0.5", "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["results"]) == {"A", "B", "C", "full"}
    for per in data["results"].values():
        assert set(per) == {"0.0", "0.5"}
        for r in per.values():
            assert 0.0 <= r["alone"] <= r["ranking"] <= 1.0 and r["particles"] > 0
    assert set(data["seconds_per_tomogram"]["A"]) == {"0.0", "0.5"}
    text = md.read_text()
    assert "| A |" in text and "| full |" in text and "| weight 0.5 |" in text
    assert_png(out.with_suffix(".png"))

    # peaks given for a weight are read, not computed: the same scores as the run that computed them
    from benchmarks.generalization import BUDGETS, predict, source_root
    from cryopoint.io import list_runs

    given = tmp_path / "given"
    given.mkdir()
    for s in "ABC":
        root = source_root(s, BUDGETS["smoke"], str(tmp_path / "c"), fresh_runs=2, fresh_offset=data["seed_offset"])
        runs = sorted(list_runs(root), key=lambda n: int(n.rsplit("_", 1)[1]))
        predict("default", root, runs).to_csv(given / f"source_{s}.csv", index=False)  # the shipped file: weight 0
    reread = tmp_path / "reread"
    small = ["--budget", "smoke", "--test-runs", "2", "--cache-dir", str(tmp_path / "c")]
    adapt_bn.main([*small, "--weights", "0", "--predictions", f"0={given}", "--out", str(reread)])
    back = json.loads(reread.with_suffix(".json").read_text())
    for s in "ABC":
        a, b = back["results"][s]["0.0"], data["results"][s]["0.0"]
        assert (a["alone"], a["ranking"], a["default"]["score"]) == pytest.approx(
            (b["alone"], b["ranking"], b["default"]["score"])
        )
    assert "A" not in back["seconds_per_tomogram"]
    assert "Peaks read for weights 0.0" in reread.with_suffix(".md").read_text()


def test_weights_outside_zero_one_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        adapt_bn.main(["--budget", "smoke", "--weights", "1.5", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        adapt_bn.main(
            ["--budget", "smoke", "--weights", "0", "--predictions", f"0.5={tmp_path}", "--out", str(tmp_path / "x")]
        )
