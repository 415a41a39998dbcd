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


def test_kfold_overrides_hold_one_labelled_run_out_per_fold(tmp_path):
    over = finetune_runs.kfold_overrides(tmp_path, ["TS_1", "TS_4", "TS_9"], "A_d0_kfold", tmp_path / "w", ["x=1"])
    assert "data.runs=[TS_1,TS_4,TS_9]" in over and "data.val_runs=[]" in over
    assert "data.fold=all" in over and "data.n_folds=3" in over and over[-1] == "x=1"
    with pytest.raises(ValueError, match="two labelled runs"):
        finetune_runs.kfold_overrides(tmp_path, ["TS_1"], "x", tmp_path)


def test_a_kfold_training_counts_as_finished_with_done_and_the_ensemble(tmp_path):
    from benchmarks.compare_plan import finished_run

    (tmp_path / "A_kfold").mkdir()
    (tmp_path / "A_kfold" / "ensemble.pt").write_bytes(b"x")  # interrupted before done.json
    (tmp_path / "A_kfold_other").mkdir()  # another name that starts the same
    for f in ("done.json", "ensemble.pt"):
        (tmp_path / "A_kfold_other" / f).write_text("{}")
    assert finished_run(tmp_path, "A_kfold", finetune_runs.KFOLD_FILES) is None
    (tmp_path / "A_kfold-1").mkdir()
    for f in ("done.json", "ensemble.pt"):
        (tmp_path / "A_kfold-1" / f).write_text("{}")
    assert finished_run(tmp_path, "A_kfold", finetune_runs.KFOLD_FILES) == tmp_path / "A_kfold-1"
    assert finished_run(tmp_path, "A_kfold") is None  # no best.pt: not a finished single training


def test_kfold_scores_are_the_ensembles_held_out_scores(plain_detector):
    truth, peaks = dataset(3, n_exp=5)
    runs = sorted(set(peaks.experiment))
    held = runs[2:]
    geometry = {r: ((32, 96, 96), (10.0, 10.0, 10.0)) for r in runs}
    s = finetune_runs.kfold_scores(plain_detector, truth, peaks, held, geometry)
    assert set(s) == {*finetune_runs.KFOLD_ARMS, *finetune_runs.KFOLD_ORACLES}
    t_h, p_h = truth[truth.experiment.isin(held)], peaks[peaks.experiment.isin(held)]
    kept = apply_thresholds(p_h, plain_detector.default_thresholds)
    assert s["k-fold ensemble"] == pytest.approx(score(t_h, kept).score)
    assert s["k-fold oracle"] == pytest.approx(tune_thresholds(t_h, p_h).score_after)
    assert s["k-fold oracle"] >= s["k-fold ensemble"] - 1e-12
    # Peaks on labelled runs are not scored.
    other = pd.concat([p_h, peaks[~peaks.experiment.isin(held)].assign(score=1.0)])
    assert finetune_runs.kfold_scores(plain_detector, truth, other, held, geometry) == s


def test_arms_of_reports_the_kfold_arm_only_when_every_draw_has_it():
    plain = {"scores": dict.fromkeys((*finetune_runs.ARMS, *finetune_runs.ORACLES), 0.5)}
    both = {"scores": {**plain["scores"], "k-fold ensemble": 0.6, "k-fold oracle": 0.7}}
    assert finetune_runs.arms_of({"A": {"draws": [plain]}}) == (finetune_runs.ARMS, finetune_runs.ORACLES)
    assert finetune_runs.arms_of({"A": {"draws": [both]}, "B": {"draws": [both]}})[0][-1] == "k-fold ensemble"
    assert finetune_runs.arms_of({"A": {"draws": [both]}, "B": {"draws": [plain]}})[0] == finetune_runs.ARMS


@pytest.mark.filterwarnings("ignore::cryopoint.errors.PolarityWarning")  # small stand-ins fool the check
def test_kfold_arm_fine_tunes_every_fold_scores_the_ensemble_and_resumes(tmp_path, monkeypatch):
    out, work = tmp_path / "kf", tmp_path / "work"
    argv = [
        *"--budget smoke --sources B --test-runs 3 --k 2 --draws 1 --seed-offset 5000 --kfold".split(),
        *["--set", "train.steps=2", "train.val_every=2", "data.samples_per_epoch=4"],
        *["--work", str(work), "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
    ]
    md = finetune_runs.main(argv)
    data = json.loads(out.with_suffix(".json").read_text())
    (d,) = data["results"]["B"]["draws"]
    assert data["meta"]["kfold"] is True
    kfold = work / "B_5000_k2_s1_d0_kfold"
    assert d["kfold_run"] == str(kfold) and d["kfold_train_min"] > 0
    assert (kfold / "ensemble.pt").is_file() and (kfold / "done.json").is_file()
    folds = [kfold / "fold0", kfold / "fold1"]
    records = [[json.loads(x) for x in (f / "metrics.jsonl").read_text().splitlines() if x.strip()] for f in folds]
    validated = [next(r for r in recs if r.get("type") == "run")["val_runs"] for recs in records]
    assert sorted(r for v in validated for r in v) == sorted(d["labelled"])  # each labelled run validates once
    ens_held = set(pd.read_csv(kfold / "held_out_peaks.csv").experiment)
    assert ens_held and not ens_held & set(d["labelled"])  # the ensemble is scored on unseen runs only
    import cryopoint

    ens = cryopoint.load(kfold / "ensemble.pt")
    record = json.loads((kfold / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["type"] == "kfold" and ens.default_thresholds == pytest.approx(record["thresholds"])
    assert all(0.0 <= d["scores"][a] <= 1.0 for a in ("k-fold ensemble", "k-fold oracle"))
    text = md.read_text()
    assert "| k-fold ensemble |" in text and "k-fold ensemble above fine-tuned in" in text
    assert_png(out.with_suffix(".png"))

    def no_training(*a, **k):
        raise AssertionError("a finished training was trained again")

    monkeypatch.setattr("cryopoint.engine.train", no_training)
    monkeypatch.setattr("cryopoint.engine.train_kfold", no_training)
    finetune_runs.main(argv)
    again = json.loads(out.with_suffix(".json").read_text())["results"]["B"]["draws"]
    assert again[0]["scores"] == d["scores"]
