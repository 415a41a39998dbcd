"""tools/detect.py and cryopoint.batch: every output format read back, resume, bad runs failing alone."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryopoint.batch import FORMATS, BatchOptions, run_batch, runs_from_files, runs_from_root
from cryopoint.io import read_overlay_picks, read_star, read_submission_csv
from tests._independent_metric import counts_by_hand, score_by_hand
from tests._layout_helpers import CHALLENGE_VOXEL_SIZE, write_challenge_store, write_zarr_v2_tomogram
from tests.test_api import save_tiny_checkpoint
from tools.detect import main

RUNS = ("TS_a", "TS_b")
SHAPE = (16, 32, 32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", voxel_size=CHALLENGE_VOXEL_SIZE)


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "data"
    write_challenge_store(root, runs=RUNS, shape=SHAPE, split="test", picks=pd.DataFrame())
    return root


def _status(out, run):
    return json.loads((out / "runs" / f"{run}.json").read_text())


def test_every_format_is_written_and_reads_back(store, ckpt, tmp_path):
    out = tmp_path / "out"
    args = ["--model", str(ckpt), "--root", str(store), "--out", str(out)]
    assert main([*args, "--formats", "raw"]) == 0
    raw = pd.read_csv(out / "peaks.csv")
    assert set(raw["experiment"]) == set(RUNS) and (raw["score"] > 0).all()
    cut = float(raw["score"].median())
    # Second pass: both runs are done, so only the combined files are rebuilt, with a threshold.
    assert main([*args, "--threshold", str(cut), "--formats", "submission", "raw", "copick", "star4", "star5"]) == 0
    sub = read_submission_csv(out / "submission.csv")
    expected = raw[raw["score"] >= cut].reset_index(drop=True)
    assert 0 < len(sub) < len(raw)  # the threshold applies to the submission, not to the raw peaks
    np.testing.assert_allclose(sub[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy())
    assert list(sub["particle_type"]) == list(expected["particle_type"])

    geometry = {"voxel_size": dict.fromkeys(RUNS, CHALLENGE_VOXEL_SIZE), "shape": dict.fromkeys(RUNS, SHAPE)}
    for version in (4, 5):
        star = read_star(out / f"particles_relion{version}.star", **geometry)
        np.testing.assert_allclose(star[["x", "y", "z"]].to_numpy(), sub[["x", "y", "z"]].to_numpy(), atol=1e-4)
        assert list(star["experiment"]) == list(sub["experiment"])
    for run in RUNS:
        copick = read_overlay_picks(out / "overlay", run, user_id="cryopoint")
        mine = expected[expected["experiment"] == run]
        assert len(copick) == len(mine)
        got = copick.sort_values(["particle_type", "x"])[["x", "y", "z"]].to_numpy()
        np.testing.assert_allclose(got, mine.sort_values(["particle_type", "x"])[["x", "y", "z"]].to_numpy())
        assert _status(out, run)["status"] == "ok"


def test_rerun_skips_finished_runs_unless_overwrite(store, ckpt, tmp_path):
    out = tmp_path / "out"
    opts = BatchOptions(model=str(ckpt), out_dir=out, formats=("submission",))
    inputs = runs_from_root(store, "test")
    assert list(run_batch(inputs, opts)["status"]) == ["ok", "ok"]
    first = (out / "runs" / "TS_a.peaks.csv").stat().st_mtime_ns
    (out / "runs" / "TS_b.json").unlink()  # as if the batch was killed while TS_b was in flight
    summary = run_batch(inputs, opts)
    assert list(summary["status"]) == ["skipped", "ok"]
    assert (out / "runs" / "TS_a.peaks.csv").stat().st_mtime_ns == first
    assert set(read_submission_csv(out / "submission.csv")["experiment"]) == set(RUNS)  # rebuilt from both runs
    redo = run_batch(inputs, BatchOptions(model=str(ckpt), out_dir=out, overwrite=True))
    assert list(redo["status"]) == ["ok", "ok"]


def test_bad_runs_fail_alone_with_a_message(store, ckpt, tmp_path):
    spacing = store / "test" / "static" / "ExperimentRuns"
    nan = np.zeros(SHAPE, np.float32)
    nan[3, 4, 5] = np.nan
    for run, volume in [("TS_nan", nan), ("TS_small", np.random.default_rng(0).normal(size=(16, 20, 32)))]:
        write_zarr_v2_tomogram(spacing / run / "VoxelSpacing10.000" / "denoised.zarr", volume.astype(np.float32))
    (spacing / "TS_gone" / "VoxelSpacing10.000").mkdir(parents=True)
    out = tmp_path / "out"
    assert main(["--model", str(ckpt), "--root", str(store), "--out", str(out)]) == 1
    for run in RUNS:
        assert _status(out, run)["status"] == "ok"
    messages = {run: _status(out, run)["error"] for run in ("TS_nan", "TS_small", "TS_gone")}
    assert "NaN" in messages["TS_nan"]
    assert "field of view" in messages["TS_small"]
    assert "denoised" in messages["TS_gone"]
    assert set(read_submission_csv(out / "submission.csv")["experiment"]) <= set(RUNS)


def test_file_inputs_unreadable_and_missing_voxel_size(tmp_path, ckpt):
    import mrcfile

    good = tmp_path / "good.mrc"
    with mrcfile.new(good) as mrc:
        mrc.set_data(np.random.default_rng(1).normal(size=SHAPE).astype(np.float32))
        mrc.voxel_size = CHALLENGE_VOXEL_SIZE
    no_size = tmp_path / "nosize.mrc"
    shutil.copy(good, no_size)
    with mrcfile.open(no_size, mode="r+") as mrc:
        mrc.voxel_size = 0.0
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(b"not an mrc file")
    inputs = runs_from_files([good, no_size, broken])
    summary = run_batch(inputs, BatchOptions(model=str(ckpt), out_dir=tmp_path / "out", formats=("raw",)))
    assert dict(zip(summary["run"], summary["status"])) == {"good": "ok", "nosize": "failed", "broken": "failed"}
    assert "voxel" in summary.set_index("run").loc["nosize", "error"].lower()
    assert set(pd.read_csv(tmp_path / "out" / "peaks.csv")["experiment"]) == {"good"}


def test_file_run_names_and_duplicates(tmp_path):
    names = runs_from_files(["a/TS_1/VoxelSpacing10.000/denoised.zarr", "b/other.mrc"])
    assert list(names) == ["TS_1", "other"]
    with pytest.raises(ValueError, match="rename"):
        runs_from_files(["x/t.mrc", "y/t.mrc"])


def test_blob_model_and_help_run_from_anywhere(store, tmp_path):
    out = tmp_path / "out"
    assert main(["--model", "blob", "--root", str(store), "--runs", "TS_a", "--out", str(out)]) == 0
    assert _status(out, "TS_a")["status"] == "ok" and not (out / "runs" / "TS_b.json").exists()
    script = Path(__file__).parents[1] / "tools" / "detect.py"
    helped = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert "--formats" in helped.stdout


@pytest.mark.slow
def test_one_worker_process_per_device(store, ckpt, tmp_path):
    out = tmp_path / "out"
    summary = run_batch(
        runs_from_root(store, "test"), BatchOptions(model=str(ckpt), out_dir=out, devices=("cpu", "cpu"))
    )
    assert list(summary["status"]) == ["ok", "ok"]
    serial = tmp_path / "serial"
    run_batch(runs_from_root(store, "test"), BatchOptions(model=str(ckpt), out_dir=serial))
    pd.testing.assert_frame_equal(
        read_submission_csv(out / "submission.csv"), read_submission_csv(serial / "submission.csv")
    )


@pytest.mark.slow
def test_a_worker_process_dying_fails_its_run_alone(tmp_path, monkeypatch):
    """A worker killed mid-run (no exception, no message) fails that run with a recorded reason; runs it had
    finished before it died, and the other worker's runs, stay ok (a dead process can take its last "done"
    message with it: the run's own record decides); the batch neither hangs nor loses data, and a rerun
    retries only the failed run."""
    import cryopoint.batch
    from tests._batch_helpers import CRASH_RUN, crashing_worker

    root = tmp_path / "data"
    runs = ("TS_a", "TS_b", CRASH_RUN, "TS_d")
    write_challenge_store(root, runs=runs, shape=SHAPE, split="test", picks=pd.DataFrame())
    monkeypatch.setattr(cryopoint.batch, "_worker", crashing_worker)
    out = tmp_path / "out"
    opts = BatchOptions(model="blob", out_dir=out, devices=("cpu", "cpu"), formats=("submission", "raw"))
    summary = run_batch(runs_from_root(root, "test"), opts).set_index("run")
    assert summary.loc[CRASH_RUN, "status"] == "failed" and "worker process died" in summary.loc[CRASH_RUN, "error"]
    assert _status(out, CRASH_RUN)["status"] == "failed" and "rerun" in _status(out, CRASH_RUN)["error"]
    good = [r for r in runs if r != CRASH_RUN]
    assert list(summary.loc[good, "status"]) == ["ok"] * len(good)
    assert set(pd.read_csv(out / "peaks.csv")["experiment"]) == set(good)

    monkeypatch.undo()  # the crash was transient: a rerun does the failed run only
    again = run_batch(runs_from_root(root, "test"), BatchOptions(model="blob", out_dir=out, formats=("raw",)))
    assert dict(zip(again["run"], again["status"])) == {**dict.fromkeys(good, "skipped"), CRASH_RUN: "ok"}
    assert set(pd.read_csv(out / "peaks.csv")["experiment"]) == set(runs)


@pytest.mark.slow
def test_a_worker_dying_inside_a_queue_get_does_not_hang_the_batch(tmp_path, monkeypatch):
    """A worker killed inside ``Queue.get`` leaves the queue's lock taken for good. No queue is shared between
    workers, so only the run handed to the dead worker fails; the other worker does the rest."""
    import multiprocessing
    import threading

    import cryopoint.batch
    from tests._batch_helpers import lock_holding_worker

    root = tmp_path / "data"
    runs = ("TS_a", "TS_b", "TS_c")
    write_challenge_store(root, runs=runs, shape=SHAPE, split="test", picks=pd.DataFrame())
    monkeypatch.setattr(cryopoint.batch, "_worker", lock_holding_worker)
    opts = BatchOptions(model="blob", out_dir=tmp_path / "out", devices=("cpu", "cpu"), formats=("raw",))
    done = {}
    batch = threading.Thread(target=lambda: done.update(summary=run_batch(runs_from_root(root, "test"), opts)))
    batch.daemon = True
    batch.start()
    batch.join(timeout=300)
    if batch.is_alive():  # hung: end the workers so that the test fails instead of hanging the suite
        for child in multiprocessing.active_children():
            child.terminate()
        pytest.fail("the batch hung after a worker died holding its task queue's lock")
    summary = done["summary"].set_index("run")
    assert summary.loc["TS_a", "status"] == "failed" and "worker process died" in summary.loc["TS_a", "error"]
    assert list(summary.loc[["TS_b", "TS_c"], "status"]) == ["ok", "ok"]  # worker 1 took both


@pytest.mark.slow
def test_smoke_train_then_detect_and_score(tmp_path):
    """Train the smoke config, then detect on a held-out synthetic run via the API and the CLI, and score."""
    from cryopoint.api import detect
    from cryopoint.config import load_config
    from cryopoint.engine import train
    from cryopoint.io import read_truth, tomogram_path
    from cryopoint.metric import score
    from cryopoint.synth import generate_dataset

    repo = Path(__file__).resolve().parents[1]
    # A 4-step model's heatmaps sit near the prior (0.01): keep low peaks so that there is something to compare.
    overrides = [f"data.cache_dir={tmp_path / 'cache'}", f"train.out_dir={tmp_path}", "post.min_score=0.001"]
    cfg = load_config(repo / "configs" / "smoke.yaml", [*overrides, "post.top_k=30"])
    ckpt = train(cfg) / "best.pt"
    root = tmp_path / "held_out"
    planted = {"apo-ferritin": 2, "beta-galactosidase": 1, "ribosome": 1, "thyroglobulin": 1}
    (run,) = generate_dataset(
        root, runs=1, shape=(32, 64, 64), preset="easy", split="test", seed=7, workers=1, counts=planted
    )

    api = detect(tomogram_path(root, run, split="test"), ckpt, thresholds=0.0)
    api.insert(0, "experiment", run)
    out = tmp_path / "pred"
    assert (
        main(["--model", str(ckpt), "--root", str(root), "--out", str(out), "--threshold", "0", "--formats", *FORMATS])
        == 0
    )
    sub = read_submission_csv(out / "submission.csv")
    assert len(sub) > 0 and list(sub["particle_type"]) == list(api["particle_type"])
    np.testing.assert_allclose(sub[["x", "y", "z"]].to_numpy(), api[["x", "y", "z"]].to_numpy(), atol=1e-6)

    # A 4-step model has no skill to put a floor under, so the score is checked against the written file, scored
    # a second time by hand (tests/_independent_metric.py), against a truth that has particles to find.
    truth = read_truth(root, split="test")
    assert truth["particle_type"].value_counts().to_dict() == planted
    result = score(truth, sub)
    written = pd.read_csv(out / "submission.csv")  # plain CSV reading, not cryopoint's reader
    assert result.table["tp"].to_dict() == counts_by_hand(truth, written)["tp"].to_dict()
    assert result.table["n_pred"].sum() == len(written)
    assert result.score == pytest.approx(score_by_hand(truth, written))
    assert result.score == pytest.approx(score(truth, api).score)
    shape = dict.fromkeys([run], (32, 64, 64))
    for version in (4, 5):
        star = read_star(out / f"particles_relion{version}.star", voxel_size={run: CHALLENGE_VOXEL_SIZE}, shape=shape)
        np.testing.assert_allclose(star[["x", "y", "z"]].to_numpy(), sub[["x", "y", "z"]].to_numpy(), atol=1e-4)
    assert len(read_overlay_picks(out / "overlay", run, user_id="cryopoint")) == len(sub)


def test_all_runs_failing_still_writes_empty_outputs_and_exits_1(tmp_path, ckpt):
    out = tmp_path / "out"
    code = main(["--model", str(ckpt), "--files", str(tmp_path / "gone.mrc"), "--out", str(out), "--formats", *FORMATS])
    assert code == 1 and "does not exist" in _status(out, "gone")["error"]
    assert read_submission_csv(out / "submission.csv").empty
    assert list(pd.read_csv(out / "peaks.csv").columns[:2]) == ["experiment", "particle_type"]
