"""How many training steps fit the time left in a GPU session (used by ``benchmarks/gpu_session.sh``).

A short probe run logs its throughput in ``metrics.jsonl``; the stage then gets a fixed step count, decided before
it starts, so that its learning-rate schedule runs whole inside the lease::

    python -m benchmarks.gpu_session_steps runs/probe SECONDS_LEFT MAX_STEPS    # prints the step count
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

#: Seconds kept back from the time left for the stage's start-up, its validations, the export and the checks after.
RESERVE_S = 150.0
#: Share of the rest given to the steps (throughput wobbles; a stage killed at its limit leaves nothing).
SAFETY = 0.8


def probe_rate(run_dir: str | Path) -> float:
    """Optimiser steps per second of a probe run: the slowest of its logged intervals after the first (which
    holds the data workers' start-up), from ``samples_per_s`` and the batch size in its config."""
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    batch = int(yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["train"]["batch_size"])
    speeds = [r["samples_per_s"] for r in records if r.get("type") == "train"][1:]
    return min(speeds) / batch if speeds else 0.0


def steps_that_fit(rate: float, seconds_left: float, cap: int, *, granularity: int = 100) -> int:
    """Steps at ``rate`` steps/s that fit ``SAFETY`` of the time left after ``RESERVE_S``, rounded down to
    ``granularity`` and at most ``cap``; 0 when none fit."""
    usable = SAFETY * max(seconds_left - RESERVE_S, 0.0) * max(rate, 0.0)
    return min(int(usable) // granularity * granularity, int(cap))


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        raise SystemExit("usage: python -m benchmarks.gpu_session_steps PROBE_RUN_DIR SECONDS_LEFT MAX_STEPS")
    run_dir, left, cap = Path(args[0]), float(args[1]), int(args[2])
    rate = probe_rate(run_dir) if (run_dir / "metrics.jsonl").is_file() else 0.0
    steps = steps_that_fit(rate, left, cap)
    print(f"probe: {rate:.1f} steps/s; {left:.0f} s left -> {steps} steps", file=sys.stderr)
    print(steps)


if __name__ == "__main__":
    main()
