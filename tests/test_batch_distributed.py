"""Batch detection under torchrun: sharding and device choice, and two gloo ranks on CPU against one process."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch.distributed as dist

from cryopoint.batch import BatchOptions, run_batch, runs_from_root
from cryopoint.batch_distributed import Ranks, launched_by_torchrun, pick_device, shard
from cryopoint.errors import ConfigError
from tests._layout_helpers import write_challenge_store

REPO = Path(__file__).resolve().parents[1]
RUNS = ("TS_a", "TS_b", "TS_c")
OUTPUTS = ("submission.csv", "peaks.csv", "particles_relion5.star")
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def test_shard_gives_every_run_to_exactly_one_rank():
    runs = [f"TS_{i}" for i in range(7)]
    shares = [shard(runs, r, 3) for r in range(3)]
    assert shares == [["TS_0", "TS_3", "TS_6"], ["TS_1", "TS_4"], ["TS_2", "TS_5"]]
    assert shard(runs, 0, 1) == runs
    assert [shard(["only"], r, 2) for r in range(2)] == [["only"], []]  # more ranks than runs: some idle
    with pytest.raises(ValueError, match="rank 2"):
        shard(runs, 2, 2)


def test_pick_device_per_local_rank():
    assert pick_device((), local_rank=1, local_world=2, cuda_count=0) == "cpu"
    assert pick_device((), local_rank=1, local_world=2, cuda_count=4) == "cuda:1"
    assert pick_device(("cuda:2", "cuda:3"), local_rank=1, local_world=2, cuda_count=4) == "cuda:3"
    assert pick_device(("cpu",), local_rank=1, local_world=2, cuda_count=4) == "cpu"  # one device for all
    with pytest.raises(ConfigError, match="--nproc-per-node 2"):
        pick_device((), local_rank=2, local_world=4, cuda_count=2)
    with pytest.raises(ConfigError, match="one device per process"):
        pick_device(("cuda:0", "cuda:1"), local_rank=0, local_world=3, cuda_count=2)


def test_torchrun_is_recognised_by_its_environment(monkeypatch):
    assert launched_by_torchrun({"RANK": "0", "WORLD_SIZE": "2"})
    assert not launched_by_torchrun({})
    with pytest.raises(ConfigError, match="torchrun"):
        launched_by_torchrun({"WORLD_SIZE": "2"})
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    assert Ranks.from_env() is None  # a plain run: run_batch keeps its process pool, no process group
    assert not dist.is_initialized()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 tools/detect.py ARGS`` on CPU (gloo)."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and k != "CUDA_VISIBLE_DEVICES"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    done = subprocess.run(
        [*cmd, str(REPO / "tools" / "detect.py"), *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _outputs(out: Path) -> dict[str, str]:
    """The combined files' text, without the STAR writer's creation-time comment."""
    return {
        name: "\n".join(line for line in (out / name).read_text().splitlines() if not line.startswith("# Created"))
        for name in OUTPUTS
    }


def _status(out: Path, run: str) -> dict:
    return json.loads((out / "runs" / f"{run}.json").read_text())


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_gloo_ranks_merge_to_the_single_process_outputs(tmp_path):
    root = tmp_path / "data"
    write_challenge_store(root, runs=RUNS, shape=(16, 32, 32), split="test", picks=pd.DataFrame())
    formats = ("submission", "raw", "star5")
    single = tmp_path / "single"
    run_batch(runs_from_root(root, "test"), BatchOptions(model="blob", out_dir=single, formats=formats))
    expected = _outputs(single)
    assert pd.read_csv(single / "peaks.csv")["experiment"].nunique() == len(RUNS)  # every run has peaks to compare

    # TS_a done before: the two ranks share TS_b and TS_c (one each), and rank 0 merges all three.
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    for name in ("TS_a.json", "TS_a.peaks.csv"):
        shutil.copy2(single / "runs" / name, out / "runs" / name)
    args = ["--model", "blob", "--root", str(root), "--out", str(out), "--formats", *formats]
    first = _torchrun(args, tmp_path)
    assert _outputs(out) == expected
    devices = {run: _status(out, run)["device"] for run in RUNS}
    assert devices == dict.fromkeys(RUNS, "cpu")
    assert "rank 0/2 (cpu) 1/1" in first.stdout and "rank 1/2 (cpu) 1/1" in first.stdout  # both ranks worked
    assert first.stdout.count("cryopoint detect") == 1  # one summary table, from rank 0

    # Resume as after a kill while TS_c was in flight: only TS_c is left, so rank 1 finds its share done and
    # waits for rank 0; the finished runs are not redone and the merge still equals the single process.
    (out / "runs" / "TS_c.json").unlink()
    for name in OUTPUTS:
        (out / name).unlink()
    kept = {run: (out / "runs" / f"{run}.peaks.csv").stat().st_mtime_ns for run in ("TS_a", "TS_b")}
    second = _torchrun(args, tmp_path)
    assert "rank 1/2 (cpu): nothing left to do" in second.stdout
    assert "rank 0/2 (cpu) 1/1 TS_c: ok" in second.stdout
    assert {run: (out / "runs" / f"{run}.peaks.csv").stat().st_mtime_ns for run in kept} == kept
    assert _status(out, "TS_c")["status"] == "ok"
    assert _outputs(out) == expected
