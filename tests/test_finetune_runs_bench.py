"""benchmarks/finetune_runs.py: a draw's fine-tuning trains on all labelled runs but the last and validates on
that one, every arm's score is the held-out score it names, and the benchmark runs end to end (a real fine-tuning
of the shipped model at smoke size), resumes without training again and writes its report."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from _figures import assert_png
from test_thresholds_rules import dataset

from benchmarks import finetune_runs
from benchmarks.labelled_runs import rule_thresholds
from cryopoint.metric import score
from cryopoint.post.thresholds import apply_thresholds, tune_thresholds


def test_overrides_train_on_the_labelled_runs_and_validate_on_the_last(tmp_path):
    over = finetune_runs.finetune_overrides(
        tmp_path, ["TS_1", "TS_4", "TS_9"], "A_d0", tmp_path / "w", ["train.steps=5"]
    )
    assert f"data.root={tmp_path}" in over
    assert "data.runs=[TS_1,TS_4,TS_9]" in over and "data.val_runs=[TS_9]" in over
    assert "train.name=A_d0" in over and f"train.out_dir={tmp_path / 'w'}" in over and over[-1] == "train.steps=5"
    with pytest.raises(ValueError, match="one to validate on"):
        finetune_runs.finetune_overrides(tmp_path, ["TS_1"], "x", tmp_path)


def test_alone_thresholds_are_the_last_validation_before_the_prior(tmp_path):
    records = [
        {"type": "train", "step": 1},
        {"type": "val", "step": 5, "thresholds": {"a": 0.3}, "thresholds_tuned_alone": {"a": 0.1}},
        {"type": "val", "step": 10, "thresholds": {"a": 0.4}, "thresholds_tuned_alone": {"a": 0.2}},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert finetune_runs.alone_thresholds(tmp_path) == {"a": 0.2}
    # A run without a prior records only its own thresholds.
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"type": "val", "thresholds": {"a": 0.5}}) + "\n")
    assert finetune_runs.alone_thresholds(tmp_path) == {"a": 0.5}
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"type": "train"}) + "\n")
    with pytest.raises(SystemExit, match="no validation record"):
        finetune_runs.alone_thresholds(tmp_path)


def test_draw_scores_are_the_held_out_scores_of_each_arm(plain_detector):
    truth, peaks = dataset(3, n_exp=5)
    runs = sorted(set(peaks.experiment))
    labelled, held = runs[:2], runs[2:]
    geometry = {r: ((32, 96, 96), (10.0, 10.0, 10.0)) for r in runs}
    # A "fine-tuned" model: other thresholds, other peaks (the same peaks with their scores shuffled).
    ft = dataclasses.replace(
        plain_detector, thresholds={k: min(0.9, v + 0.1) for k, v in plain_detector.default_thresholds.items()}
    )
    ft_peaks = peaks.assign(score=np.random.default_rng(0).permutation(peaks.score.to_numpy()))
    alone = {k: 0.05 for k in ft.thresholds}
    s = finetune_runs.draw_scores(plain_detector, ft, alone, truth, peaks, ft_peaks, labelled, held, geometry, 25.0)
    assert set(s) == {*finetune_runs.ARMS, *finetune_runs.ORACLES}
    t_h = truth[truth.experiment.isin(held)]
    p_h, f_h = peaks[peaks.experiment.isin(held)], ft_peaks[ft_peaks.experiment.isin(held)]
    assert s["untouched"] == pytest.approx(score(t_h, apply_thresholds(p_h, plain_detector.default_thresholds)).score)
    recal = rule_thresholds(
        truth[truth.experiment.isin(labelled)],
        peaks[peaks.experiment.isin(labelled)],
        plain_detector.default_thresholds,
        25.0,
    )["prior"]
    assert s["recalibrated"] == pytest.approx(score(t_h, apply_thresholds(p_h, recal)).score)
    assert s["fine-tuned, validation alone"] == pytest.approx(score(t_h, apply_thresholds(f_h, alone)).score)
    assert s["fine-tuned"] == pytest.approx(score(t_h, apply_thresholds(f_h, ft.thresholds)).score)
    assert s["untouched oracle"] == pytest.approx(tune_thresholds(t_h, p_h).score_after)
    assert s["fine-tuned oracle"] == pytest.approx(tune_thresholds(t_h, f_h).score_after)
    # The oracle's thresholds see the answers: no fixed set does better on the same picks.
    assert s["untouched oracle"] >= max(s["untouched"], s["recalibrated"]) - 1e-12
    assert s["fine-tuned oracle"] >= max(s["fine-tuned"], s["fine-tuned, validation alone"]) - 1e-12
    # The labelled runs are not scored: moving them changes nothing.
    other = peaks.assign(score=np.where(peaks.experiment.isin(held), peaks.score, 0.0))
    again = finetune_runs.draw_scores(plain_detector, ft, alone, truth, other, ft_peaks, labelled, held, geometry, 25.0)
    assert again["untouched"] == s["untouched"] and again["fine-tuned"] == s["fine-tuned"]


@pytest.mark.filterwarnings("ignore::cryopoint.errors.PolarityWarning")  # small stand-ins fool the check
def test_benchmark_fine_tunes_end_to_end_resumes_and_reports(tmp_path, monkeypatch):
    out, work = tmp_path / "ft", tmp_path / "work"
    argv = [
        *"--budget smoke --sources B --test-runs 3 --k 2 --draws 2 --seed-offset 5000".split(),
        *["--set", "train.steps=2", "train.val_every=2", "data.samples_per_epoch=4"],
        *["--work", str(work), "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
    ]
    # Whatever state benchmarks.compare was left in by an earlier --report-only run, this one trains.
    monkeypatch.setattr("benchmarks.compare.REPORT_ONLY", True)
    md = finetune_runs.main(argv)
    data = json.loads(out.with_suffix(".json").read_text())
    draws = data["results"]["B"]["draws"]
    assert len(draws) == 2 and data["meta"]["overrides"] == [
        "train.steps=2",
        "train.val_every=2",
        "data.samples_per_epoch=4",
    ]
    for d in draws:
        assert len(d["labelled"]) == 2 and d["steps"] == 2
        assert all(0.0 <= v <= 1.0 for v in d["scores"].values())
        run = work / f"B_5000_k2_s1_d{draws.index(d)}"
        assert (run / "best.pt").is_file() and (run / "held_out_peaks.csv").is_file()
        held_runs = set(pd.read_csv(run / "held_out_peaks.csv").experiment)
        assert held_runs and not held_runs & set(d["labelled"])  # the fine-tuned model is scored on unseen runs
        # The fine-tuned model started from the shipped one and shrank toward its thresholds.
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert records[-1]["thresholds_prior_strength"] == data["meta"]["prior_strength"] == 25.0
    text = md.read_text()
    assert "| B | 0 |" in text and "| B | 1 |" in text and "Means over draws" in text
    assert_png(out.with_suffix(".png"))

    # Resumed: the finished trainings are reused, none is trained again, and the scores come out the same.
    def no_training(*a, **k):
        raise AssertionError("a finished training was trained again")

    monkeypatch.setattr("cryopoint.engine.train", no_training)
    finetune_runs.main(argv)
    again = json.loads(out.with_suffix(".json").read_text())["results"]["B"]["draws"]
    assert [d["scores"] for d in again] == [d["scores"] for d in draws]
    with pytest.raises(SystemExit):
        finetune_runs.main([*argv, "--k", "1"])
    # Another recipe in the same work folder is refused, not mixed into the table.
    with pytest.raises(SystemExit, match=r"train\.steps"):
        finetune_runs.main([*argv[: argv.index("--set")], "--set", "train.steps=3", *argv[argv.index("--work") :]])
