"""tools/demo.py: one command simulates a tomogram, detects, and writes picks, a picture and the score."""

from pathlib import Path

import pandas as pd
from _tool_helpers import run_tool
from PIL import Image

TOOL = Path(__file__).resolve().parents[1] / "tools" / "demo.py"


def _run(argv):
    return run_tool(TOOL, argv)


def test_demo_writes_picks_picture_and_score(tmp_path, capsys):
    out = tmp_path / "demo"
    # the training-free blob model keeps this test independent of the shipped weights (tested on their own)
    code = _run(["--out", str(out), "--model", "blob", "--preset", "easy", "--shape", "48", "128", "128"])
    assert code == 0
    picks = pd.read_csv(out / "picks.csv")
    assert {"particle_type", "x", "y", "z", "score"} <= set(picks.columns) and len(picks) > 0
    assert Image.open(out / "demo.png").size[0] > 400
    assert "weighted F-beta" in capsys.readouterr().out


def test_demo_reports_a_bad_model_cleanly(tmp_path, capsys):
    assert _run(["--out", str(tmp_path / "d"), "--model", str(tmp_path / "nope.pt"), "--shape", "32", "64", "64"]) == 2
    assert "No checkpoint" in capsys.readouterr().err  # errors go to stderr
