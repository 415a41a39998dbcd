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


def test_out_on_unshared_disks_is_refused_before_any_work(tmp_path, monkeypatch):
    """Rank 0's view when another machine cannot see its probe file: every rank raises the same clear error."""
    import cryopoint.batch_distributed as bd
    from cryopoint.engine.distributed import DistInfo

    sent = []
    monkeypatch.setattr(bd, "broadcast_object", lambda obj, info: sent.append(obj) or obj)
    monkeypatch.setattr(bd, "gather_objects", lambda obj, info: [obj, ("node-b", False)])
    ranks = Ranks(info=DistInfo(rank=0, world_size=2), device="cpu")
    with pytest.raises(ConfigError, match="node-b cannot see"):
        ranks.run({"TS_a": tmp_path / "a.zarr"}, tmp_path / "out", lambda *a: pytest.fail("ran"), None, None)
    assert sent and sent[0].parent == tmp_path / "out" / "runs" and not sent[0].exists()  # probe removed
    monkeypatch.setattr(bd, "gather_objects", lambda obj, info: [obj, ("node-b", True)])
    ranks.check_shared(tmp_path / "out")  # every rank sees it: no error
    assert list((tmp_path / "out" / "runs").iterdir()) == []


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports (held open together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _torchrun_all(arg_lists: list[list[str]], cwd: Path) -> list[str]:
    """``python -m torch.distributed.run --nproc-per-node 2 tools/detect.py ARGS`` on CPU (gloo), one launch per
    argument list, run side by side; returns each launch's stdout once all succeeded."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    launches = []
    for args, port in zip(arg_lists, _free_ports(len(arg_lists))):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
        launches.append(
            subprocess.Popen(
                [*cmd, str(REPO / "tools" / "detect.py"), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=cwd,
                env=env,
            )  # fmt: skip
        )
    outputs = []
    try:
        for launch in launches:
            stdout, stderr = launch.communicate(timeout=240)
            assert launch.returncode == 0, stdout[-3000:] + stderr[-3000:]
            outputs.append(stdout)
    finally:
        for launch in launches:
            if launch.poll() is None:
                launch.kill()
                launch.wait()
    return outputs


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

    # Two jobs side by side, as after interrupted runs. "both": TS_a was done before, so the two ranks share
    # TS_b and TS_c. "idle": TS_a and TS_b were done, so only TS_c is left and rank 1 finds its share done.
    jobs = {"both": ("TS_a",), "idle": ("TS_a", "TS_b")}
    kept = {}
    for job, done in jobs.items():
        (tmp_path / job / "runs").mkdir(parents=True)
        for run in done:
            for suffix in (".json", ".peaks.csv"):
                shutil.copy2(single / "runs" / f"{run}{suffix}", tmp_path / job / "runs" / f"{run}{suffix}")
            kept[job, run] = (tmp_path / job / "runs" / f"{run}.peaks.csv").stat().st_mtime_ns
    args = ["--model", "blob", "--root", str(root), "--formats", *formats]
    both, idle = _torchrun_all([[*args, "--out", str(tmp_path / job)] for job in jobs], tmp_path)

    for job in jobs:  # rank 0 merged every run, whichever rank (or earlier job) wrote it, as one process does
        out = tmp_path / job
        assert _outputs(out) == expected, job
        assert {run: _status(out, run)["status"] for run in RUNS} == dict.fromkeys(RUNS, "ok")
    assert {(job, run): (tmp_path / job / "runs" / f"{run}.peaks.csv").stat().st_mtime_ns for job, run in kept} == kept
    assert "rank 0/2 (cpu) 1/1 TS_b: ok" in both and "rank 1/2 (cpu) 1/1 TS_c: ok" in both  # both ranks worked
    assert "rank 1/2 (cpu): nothing left to do" in idle and "rank 0/2 (cpu) 1/1 TS_c: ok" in idle
    assert both.count("cryopoint detect") == idle.count("cryopoint detect") == 1  # one summary table, from rank 0
