"""benchmarks/compare.py: scoring helpers on hand-made tables, and the whole benchmark at smoke budget."""

import json

import numpy as np
import pandas as pd
import pytest

from cryopoint.particles import PARTICLE_NAMES, PARTICLES
from tests._independent_metric import counts_by_hand, score_by_hand


@pytest.fixture(scope="module")
def compare():
    from benchmarks import compare as module  # a package module: `python -m benchmarks.compare`

    return module


def _truth_and_preds():
    rows, preds = [], []
    for run in ("r0", "r1"):
        for i, p in enumerate(PARTICLES):
            xyz = (100.0 * i, 50.0, 50.0)
            rows.append((run, p.name, *xyz))
            preds.append((run, p.name, *xyz, 0.9))  # a confident hit
            preds.append((run, p.name, xyz[0], 900.0, 900.0, 0.2))  # a weak false positive
    cols = ["experiment", "particle_type", "x", "y", "z"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(preds, columns=[*cols, "score"])


def test_evaluate_tunes_and_cross_tunes(compare):
    truth, preds = _truth_and_preds()
    res = compare.evaluate(preds, truth, {"r0": 0, "r1": 1})
    assert res["score"] == pytest.approx(1.0) and res["score_crossfold"] == pytest.approx(1.0)
    assert set(res["per_class"]) == set(PARTICLE_NAMES)
    assert all(0.2 < t <= 0.9 for t in res["thresholds"].values())
    # Fold r1 has only weak picks: thresholds tuned on r0 (0.9) reject them, so cross-fold is lower.
    weak = preds.assign(score=np.where(preds["experiment"] == "r1", preds["score"] * 0.1, preds["score"]))
    res = compare.evaluate(weak, truth, {"r0": 0, "r1": 1})
    assert res["score_crossfold"] < res["score"]


def test_verdict_says_plainly_when_the_goal_is_missed(compare):
    def fake(total, per):
        return {"score": total, "score_crossfold": total, "per_class": {n: {"fbeta": per} for n in PARTICLE_NAMES}}

    lines = compare.verdict(
        {"blob (LoG)": fake(0.1, 0.1), "unet3d + NMS": fake(0.6, 0.6), "heatmap25d": fake(0.5, 0.5)}
    )
    assert "goal NOT met" in lines[0] and "goal met" in lines[1]
    lines = compare.verdict(
        {"blob (LoG)": fake(0.1, 0.45), "unet3d + NMS": fake(0.3, 0.3), "heatmap25d": fake(0.5, 0.5)}
    )
    assert "goal met" in lines[0] and "goal NOT met" in lines[1]


def test_peak_rss_measures_an_allocation(compare):
    with compare.PeakRSS() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
    assert mem.mib > 32


def _fake_result(total):
    per = {n: {"precision": 0.5, "recall": 0.5, "fbeta": total, "tp": 1, "fp": 1, "fn": 1} for n in PARTICLE_NAMES}
    return {"score": total, "score_crossfold": total, "per_class": per, "train_s": 1.0, "infer_s_per_tomo": 0.5}


def test_report_and_extend_keep_every_row(compare, tmp_path):
    import dataclasses

    out = tmp_path / "compare"
    results = {m: _fake_result(v) for m, v in (("blob (LoG)", 0.1), ("unet3d + NMS", 0.2), ("heatmap25d", 0.3))}
    for r in results.values():
        r |= {"peak_mib": 10.0, "params": 1000}
    pre = {"blob, no low-pass": results["blob (LoG)"], "blob, low-pass": {**results["blob (LoG)"], "score": 0.05}}
    meta = {"commands": ["first"], "budget_name": "smoke", "date": "now", "machine": "here"}
    meta["truth_counts"] = dict.fromkeys(PARTICLE_NAMES, 3)
    meta["budget"] = json.loads(json.dumps(dataclasses.asdict(compare.BUDGETS["smoke"])))
    compare.write_report(results, {"Preprocessing: Gaussian low-pass before normalisation": pre}, meta, out)
    text = out.with_suffix(".md").read_text()
    assert "blob, low-pass" in text and "goal met" in text and "`first`" in text and "apo-ferritin 3" in text
    assert text.count("| blob, no low-pass |") == 1  # the repeated reference row is not listed twice per class
    # --extend keeps those rows and runs nothing already present (here: no transfer, no low-pass network).
    args = ["--budget", "smoke", "--out", str(out), "--extend", "--no-transfer", "--no-lowpass-net"]
    compare.main([*args, "--cache-dir", str(tmp_path / "cache"), "--work", str(tmp_path / "work")])
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["results"]["heatmap25d"]["score"] == 0.3 and len(payload["commands"]) == 2
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_smoke_budget_end_to_end(compare, tmp_path):
    out = tmp_path / "compare"
    md = compare.main(
        [
            "--budget",
            "smoke",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    text = md.read_text()
    for method in ("blob (LoG)", "unet3d + NMS", "unet3d + components", "heatmap25d", "low-pass", "encoder from easy"):
        assert method in text
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["budget_name"] == "smoke" and payload["budget"]["steps"] == 2
    for res in payload["results"].values():
        assert res["infer_s_per_tomo"] > 0 and set(res["per_class"]) == set(PARTICLE_NAMES)
    assert payload["results"]["unet3d + NMS"]["params"] > 0
    # Each computed row's pooled out-of-fold picks are saved for tools/report.py, scores included.
    from cryopoint.io import read_submission_csv, read_truth

    saved = {p.stem: read_submission_csv(p) for p in (tmp_path / "work" / "predictions").glob("*.csv")}
    assert {"blob-log", "unet3d-nms", "unet3d-components", "heatmap25d", "blob-low-pass-1-voxel"} <= set(saved)
    assert "heatmap25d-encoder-from-easy-then-realistic" in saved and "blob-no-low-pass" not in saved
    assert "score" in saved["blob-log"] and saved["blob-log"]["experiment"].nunique() == payload["budget"]["runs"]

    # The reported numbers are recomputed by hand (tests/_independent_metric.py) from the saved picks, the
    # reported thresholds and the dataset's truth: every out-of-fold pick is there and scored right.
    truth = read_truth(payload["data_root"])
    assert len(truth) > 0
    assert payload["truth_counts"] == {n: int((truth["particle_type"] == n).sum()) for n in PARTICLE_NAMES}
    rows = {"blob (LoG)": "blob-log", "unet3d + NMS": "unet3d-nms", "heatmap25d": "heatmap25d"}
    rows["unet3d + components"] = "unet3d-components"
    for method, stem in rows.items():
        res, picks = payload["results"][method], pd.read_csv(tmp_path / "work" / "predictions" / f"{stem}.csv")
        assert set(picks["experiment"]) <= set(truth["experiment"]), method
        kept = picks[picks["score"] >= picks["particle_type"].map(res["thresholds"]).fillna(-np.inf)]
        counts = counts_by_hand(truth, kept)
        for name in PARTICLE_NAMES:
            mine = (counts.loc[name, "tp"], counts.loc[name, "n_pred"] - counts.loc[name, "tp"])
            assert (res["per_class"][name]["tp"], res["per_class"][name]["fp"]) == mine, (method, name)
            assert res["per_class"][name]["tp"] + res["per_class"][name]["fn"] == payload["truth_counts"][name]
        assert res["score"] == pytest.approx(score_by_hand(truth, kept)), method
        assert f"| {method} | **{res['score']:.3f}** |" in text, method
