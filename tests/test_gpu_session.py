"""benchmarks/gpu_session.sh: valid shell, and the step count it gives a training stage from a probe's throughput."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.gpu_session_steps import RESERVE_S, SAFETY, main, probe_rate, steps_that_fit

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_session.sh"


def test_script_is_valid_bash_and_sizes_the_stage_with_the_module():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    text = SCRIPT.read_text()
    assert "benchmarks.gpu_session_steps" in text and "make_synthetic.py" in text and "--processes" in text


def test_steps_fit_the_time_left_after_the_reserve():
    assert steps_that_fit(30.0, RESERVE_S + 300, cap=100_000) == int(SAFETY * 300 * 30) // 100 * 100 == 7200
    assert steps_that_fit(30.0, RESERVE_S + 300, cap=5000) == 5000
    assert steps_that_fit(30.0, RESERVE_S - 1, cap=5000) == 0  # nothing left after the reserve
    assert steps_that_fit(0.0, 10_000, cap=5000) == 0  # a probe that logged nothing


def _probe(tmp_path, speeds, batch):
    run = tmp_path / "probe"
    run.mkdir()
    records = [{"type": "run", "step": 0}] + [
        {"type": "train", "step": 10 * (i + 1), "samples_per_s": s} for i, s in enumerate(speeds)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"batch_size": batch}}))
    return run


def test_probe_rate_skips_the_start_up_interval_and_takes_the_slowest(tmp_path):
    run = _probe(tmp_path, [10.0, 640.0, 320.0, 480.0], batch=32)  # the first interval holds worker start-up
    assert probe_rate(run) == pytest.approx(10.0)  # 320 samples/s / 32


def test_main_prints_the_step_count(tmp_path, capsys):
    run = _probe(tmp_path, [1.0, 640.0, 640.0], batch=32)
    main([str(run), str(RESERVE_S + 100), "20000"])
    assert capsys.readouterr().out.strip() == str(int(SAFETY * 100 * 20) // 100 * 100)
    main([str(tmp_path / "missing"), "1000", "20000"])  # the probe failed: no stage
    assert capsys.readouterr().out.strip() == "0"
