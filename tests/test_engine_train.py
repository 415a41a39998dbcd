"""End-to-end training: the smoke config, checkpoints, metrics log, OOF CSV, resume equivalence, DDP."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from _layout_helpers import write_challenge_store

from cryopoint.checkpoint import load_checkpoint
from cryopoint.config import load_config
from cryopoint.engine import train
from cryopoint.engine.schedule import WarmupCosine
from cryopoint.errors import DataNotFoundError
from cryopoint.particles import PARTICLE_NAMES

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three tiny runs in the challenge layout (random volumes, two picks per class per run)."""
    root = tmp_path_factory.mktemp("store")
    write_challenge_store(root, runs=("run_a", "run_b", "run_c"), shape=(32, 64, 64))
    return root


def _cfg(store, out, *extra):
    # CPU even where a GPU exists: bit-exact resume is promised on CPU (cuDNN kernels are not deterministic).
    base = [
        f"data.root={store}",
        f"train.out_dir={out}",
        "data.cache_volumes=false",
        "data.n_folds=3",
        "train.device=cpu",
    ]
    return load_config(SMOKE, [*base, *extra])


def _tools_train():
    spec = importlib.util.spec_from_file_location("tools_train", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.mark.slow
def test_smoke_config_end_to_end_on_synthetic_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tools_train().main([str(SMOKE), f"data.cache_dir={tmp_path / 'cache'}", "train.out_dir=runs"])
    run = tmp_path / "runs" / "smoke"
    assert any((tmp_path / "cache" / "synthetic").iterdir())  # generated into the configured cache
    for name in ("best.pt", "last.pt"):
        raw = torch.load(run / name, weights_only=True)  # must never need to unpickle code
        assert raw["particles"][0]["name"] == PARTICLE_NAMES[0]
        assert len(raw["voxel_size"]) == 3 and raw["config"]["model"]["arch"] == "heatmap25d"
        assert set(raw["ema_state"]) == set(raw["model_state"])
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == 4 and "optimizer_state" in last and "rng_state" in last
    best = load_checkpoint(run / "best.pt")
    assert "optimizer_state" not in best and set(best["thresholds"]) <= set(PARTICLE_NAMES)
    assert load_config(run / "config.yaml") == load_config(
        SMOKE, ["train.out_dir=runs", f"data.cache_dir={tmp_path / 'cache'}"]
    )
    vals = _records(run, "val")
    assert [v["step"] for v in vals] == [2, 4]
    assert set(vals[0]["per_class"]) == set(PARTICLE_NAMES) and vals[0]["thresholds_tuned_on_same_predictions"]
    assert {"score", "score_fixed"} <= set(vals[0])
    assert [r["step"] for r in _records(run, "train")] == [1, 2, 3, 4]
    oof = pd.read_csv(run / "oof_predictions.csv")
    assert {"experiment", "particle_type", "x", "y", "z", "score"} <= set(oof.columns)
    # Rerunning never overwrites: the second run gets its own folder.
    cfg = load_config(SMOKE, [f"data.cache_dir={tmp_path / 'cache'}", "train.out_dir=runs", "train.steps=1"])
    assert train(cfg) == tmp_path / "runs" / "smoke-2"


def test_checkpoint_rebuilds_a_detector(store, tmp_path, capsys):
    run = train(_cfg(store, tmp_path, "train.steps=2"))
    printed = capsys.readouterr().out
    assert "Validation at step 2" in printed and "optimistic" in printed  # the per-class table
    assert "Best weighted F-beta" in printed and "best.pt" in printed  # the closing summary
    from cryopoint.api import load

    detector = load(run / "best.pt")
    ck = load_checkpoint(run / "best.pt")
    ema = {k: v for k, v in ck["ema_state"].items()}
    for name, value in detector.model.state_dict().items():
        torch.testing.assert_close(value, ema[name])  # the detector uses the EMA weights
    assert detector.voxel_size == pytest.approx((10.012444,) * 3)


def test_resume_gives_the_same_result_as_an_uninterrupted_run(store, tmp_path):
    # 4 steps per epoch; validations at 3 and 6; the interruption at 5 lands mid-epoch, after a validation.
    extra = ["train.steps=6", "train.val_every=3", "data.samples_per_epoch=8", "train.warmup_steps=2"]
    full = train(_cfg(store, tmp_path / "a", *extra))
    part = train(_cfg(store, tmp_path / "b", *extra), stop_after=5)
    assert load_checkpoint(part / "last.pt")["step"] == 5 and not _records(part, "val")[-1]["step"] == 6
    resumed = train(_cfg(store, tmp_path / "b", *extra, "train.resume=true"))
    assert resumed == part
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["step"] == b["step"] == 6
    for key in ("model_state", "ema_state"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    for sa, sb in zip(a["optimizer_state"]["state"].values(), b["optimizer_state"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["thresholds"] == b["thresholds"] and a["metrics"] == b["metrics"]
    schedule = WarmupCosine(6, 2, 0.01)  # the smoke config's lr and min_lr_ratio: 1e-3, 0.01
    assert [r["lr"] for r in _records(full, "train")] == pytest.approx([1e-3 * schedule(s) for s in range(1, 7)])
    timing = ("samples_per_s", "seconds")
    for kind in ("train", "val"):
        strip = [{k: v for k, v in r.items() if k not in timing} for r in _records(full, kind)]
        again = [{k: v for k, v in r.items() if k not in timing} for r in _records(resumed, kind)]
        assert strip == again
    pd.testing.assert_frame_equal(
        pd.read_csv(full / "oof_predictions.csv"), pd.read_csv(resumed / "oof_predictions.csv")
    )


def test_resume_without_a_run_says_so(store, tmp_path):
    with pytest.raises(DataNotFoundError, match="Nothing to resume"):
        train(_cfg(store, tmp_path, "train.resume=true"))


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(store, tmp_path):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
        str(REPO / "tools" / "train.py"), str(SMOKE),
        f"data.root={store}", f"train.out_dir={tmp_path}", "data.cache_volumes=false", "data.n_folds=3",
        "train.device=cpu", "train.batch_size=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "smoke"
    assert _records(run, "run")[0]["world_size"] == 2
    assert [r["step"] for r in _records(run, "val")] == [2, 4]  # validated once per step, by rank 0 only
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert (run / "best.pt").is_file() and (run / "oof_predictions.csv").is_file()
    assert not list(tmp_path.glob("smoke-*"))  # one run folder: only rank 0 writes
