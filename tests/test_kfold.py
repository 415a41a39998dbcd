"""k-fold training end to end (data.fold=all): every fold trained, interrupted and resumed, the pooled out-of-fold
predictions, thresholds tuned once on them, the honest cross-fold score, and the ensemble checkpoint.

One tiny k-fold job (2 folds x 2 steps of the smoke model on three 32 x 64 x 64 runs) serves every test: fold 1 is
interrupted after one step, then the job is resumed through tools/train.py --resume.
"""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from _layout_helpers import write_challenge_store

import cryopoint.engine.kfold as kfold
from cryopoint.api import detect, load
from cryopoint.checkpoint import load_checkpoint
from cryopoint.config import load_config
from cryopoint.errors import DataNotFoundError
from cryopoint.io.layout import read_truth
from cryopoint.model.ensemble import Ensemble
from cryopoint.post.thresholds import cross_fold_score, tune_thresholds

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
RUNS = ("run_a", "run_b", "run_c")


def _overrides(store, out):
    return [
        f"data.root={store}",
        f"train.out_dir={out}",
        "data.cache_volumes=false",
        "data.n_folds=2",
        "train.device=cpu",
        "train.steps=2",
        "data.fold=all",
        "post.min_score=0.0",  # two steps from the prior score far below the default floor: keep every peak
        "post.top_k=50",
    ]


def _tools_train():
    spec = importlib.util.spec_from_file_location("tools_train", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A k-fold run whose fold 1 was interrupted after one step, then resumed; and what each attempt trained."""
    store = tmp_path_factory.mktemp("store")
    write_challenge_store(store, runs=RUNS, shape=(32, 64, 64))
    out = tmp_path_factory.mktemp("runs")
    real = kfold.train
    calls = []

    def interrupted(cfg, **kwargs):
        calls.append(("first", cfg.data.fold, cfg.train.resume))
        if cfg.data.fold == 1:
            real(cfg, stop_after=1)
            raise KeyboardInterrupt  # as if the machine went away mid-fold
        return real(cfg, **kwargs)

    def resumed(cfg, **kwargs):
        calls.append(("resume", cfg.data.fold, cfg.train.resume))
        return real(cfg, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kfold, "train", interrupted)
        with pytest.raises(KeyboardInterrupt):
            kfold.train_kfold(load_config(SMOKE, _overrides(store, out)))
    run = out / "smoke"
    fold0_best = (run / "fold0" / "best.pt").stat().st_mtime_ns
    assert not (run / "ensemble.pt").exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kfold, "train", resumed)
        _tools_train().main([str(SMOKE), *_overrides(store, out), "--resume"])
    return {"store": store, "run": run, "calls": calls, "fold0_best_mtime": fold0_best}


def test_every_fold_is_an_ordinary_run_and_resume_skips_finished_folds(job):
    run = job["run"]
    assert job["calls"] == [("first", 0, False), ("first", 1, False), ("resume", 1, True)]  # fold 0 not retrained
    assert (run / "fold0" / "best.pt").stat().st_mtime_ns == job["fold0_best_mtime"]
    for k, val in ((0, ["run_a", "run_c"]), (1, ["run_b"])):
        fold = run / f"fold{k}"
        assert load_checkpoint(fold / "last.pt")["step"] == 2
        assert load_config(fold / "config.yaml").data.fold == k
        record = json.loads((fold / "metrics.jsonl").read_text().splitlines()[0])
        assert record["type"] == "run" and record["val_runs"] == val
    assert load_config(run / "config.yaml").data.fold == "all"
    assert not list(run.parent.glob("smoke-*")) and not list(run.glob("fold1-*"))  # resumed in place


def test_thresholds_are_tuned_once_on_the_pooled_out_of_fold_predictions(job):
    run = job["run"]
    folds = {f"fold{k}": pd.read_csv(run / f"fold{k}" / "oof_predictions.csv") for k in range(2)}
    pooled = pd.read_csv(run / "oof_predictions.csv")
    assert len(pooled) == sum(map(len, folds.values())) and set(pooled["fold"]) == {0, 1}
    assert set(pooled["experiment"]) == set(RUNS)  # every run once, from the fold that held it out
    assert (pooled.groupby("experiment")["fold"].nunique() == 1).all()
    truth = read_truth(job["store"], runs=list(RUNS))
    cfg = load_config(run / "config.yaml")
    expected = tune_thresholds(truth, pooled.drop(columns="fold"), tolerance=cfg.post.threshold_tolerance)
    ens = load_checkpoint(run / "ensemble.pt")
    assert ens["thresholds"] == pytest.approx(expected.thresholds)
    record = json.loads((run / "metrics.jsonl").read_text())
    assert record["type"] == "kfold" and record["thresholds"] == pytest.approx(expected.thresholds)
    assert record["score_tuned"] == pytest.approx(expected.score_after)
    honest = cross_fold_score(truth, folds, tolerance=cfg.post.threshold_tolerance)
    assert record["score_cross_fold"] == pytest.approx(honest.score)
    assert record["score_oracle"] == pytest.approx(honest.oracle)
    assert ens["metrics"]["score_cross_fold"] == pytest.approx(honest.score)
    assert [f["fold"] for f in record["per_fold"]] == [0, 1]


def test_ensemble_checkpoint_holds_every_fold_and_detects(job):
    run = job["run"]
    raw = torch.load(run / "ensemble.pt", weights_only=True)  # loadable like any checkpoint, never unpickles code
    assert raw["ensemble"]["members"] == 2 and raw["config"]["data"]["fold"] == "all"
    assert raw["voxel_size"] == pytest.approx([10.012444] * 3) and raw["particles"][0]["name"] == "apo-ferritin"
    for k in range(2):
        best = load_checkpoint(run / f"fold{k}" / "best.pt")
        for name, value in best["ema_state"].items():
            assert torch.equal(raw["model_state"][f"members.{k}.{name}"], value)  # the fold's EMA weights
    det = load(run / "ensemble.pt")
    assert isinstance(det.model, Ensemble) and len(det.model.members) == 2
    assert det.thresholds == pytest.approx(raw["thresholds"])
    tomo = job["store"] / "train" / "static" / "ExperimentRuns" / "run_b" / "VoxelSpacing10.000" / "denoised.zarr"
    picks = detect(tomo, det, thresholds=0.0, device="cpu")
    assert {"particle_type", "x", "y", "z", "score"} <= set(picks.columns) and len(picks) > 0


def test_resuming_a_kfold_run_that_never_started_says_so(tmp_path):
    cfg = load_config(SMOKE, [*_overrides(tmp_path / "none", tmp_path), "train.resume=true"])
    with pytest.raises(DataNotFoundError, match=r"Nothing to resume: no fold\*/last.pt"):
        kfold.train_kfold(cfg)
