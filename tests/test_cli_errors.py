"""Every tools/ script: a user error is one message and exit status 2 (no traceback; --debug shows it), and the
CLI behaviours of issue 16: detect.py's bad inputs, --thresholds, stale results, logs, tune_thresholds --overwrite."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _layout_helpers import write_challenge_store
from _tool_helpers import run_tool

from cryopoint.checkpoint import catalogue_payload, save_checkpoint
from cryopoint.cli import read_thresholds
from cryopoint.errors import ConfigError, DataNotFoundError, UnknownParticleError
from cryopoint.io import read_submission_csv
from tests.test_api import TINY_CONFIG, save_tiny_checkpoint

TOOLS = Path(__file__).resolve().parents[1] / "tools"
RUNS = ("TS_a_run_with_a_rather_long_name", "TS_b")
SHAPE = (16, 32, 32)

# One bad input per script; the message each must print.
BAD_INPUTS = {
    "cache.py": (["--root", "{tmp}/nowhere"], "No cache folder"),
    "demo.py": (["--out", "{tmp}/demo", "--model", "Blob"], "Did you mean 'blob'"),
    "detect.py": (["--root", "{tmp}/nowhere", "--out", "{tmp}/out"], "No runs for split 'test'"),
    "average_models.py": (["{tmp}/missing.pt", "{tmp}/other.pt", "--out", "{tmp}/x.pt"], "No checkpoint at"),
    "export_model.py": (["{tmp}/missing.pt", "--out", "{tmp}/x.pt"], "No checkpoint at"),
    "make_synthetic.py": (["--out", "{tmp}/s", "--runs", "1", "--set", "bogus=1"], "Unknown synthetic parameter"),
    "report.py": (["--predictions", "{tmp}/p.csv", "--truth", "{tmp}", "--out", "{tmp}/r"], "p.csv does not exist"),
    "show_tomogram.py": (["{tmp}/missing.zarr", "--out", "{tmp}/t.png"], "missing.zarr does not exist"),
    "train.py": (["{tmp}/missing.yaml"], "No config file at"),
    "tune_thresholds.py": (["--predictions", "{tmp}/p.csv", "--truth", "{tmp}", "--out", "{tmp}/t.yaml"], "p.csv"),
}


def _tool(name, argv, capsys):
    """Exit code, stdout and stderr of ``python tools/NAME ARGV`` run in-process."""
    code = run_tool(TOOLS / name, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_script_is_covered():
    assert sorted(p.name for p in TOOLS.glob("*.py") if p.name != "__init__.py") == sorted(BAD_INPUTS)


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_user_error_is_one_message_and_status_2(name, tmp_path, capsys):
    argv, message = BAD_INPUTS[name]
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, out, err = _tool(name, argv, capsys)
    assert code == 2
    assert f"{name}: error:" in err and message in err and "--debug" in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "demo").exists()  # demo.py checks --model before it simulates or writes
    with pytest.raises((DataNotFoundError, ConfigError), match=message):  # --debug: the error with its traceback
        run_tool(TOOLS / name, [*argv, "--debug"])


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    return [save_tiny_checkpoint(folder / f"m{i}.pt", seed=i, voxel_size=10.0) for i in range(2)]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "data"
    write_challenge_store(root, runs=RUNS, shape=SHAPE, split="test", picks=pd.DataFrame())
    return root


def test_detect_bad_inputs_stop_before_any_run(store, ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--model", ckpts[0], "--root", store, "--out", out]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    broken = tmp_path / "broken.yaml"
    broken.write_text("thresholds: {ribosome: [0.1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"thresholds": {"ribosomes": 0.2}}))
    cases = [
        (["--model", "Blob", "--root", store, "--out", out], "Did you mean 'blob'"),
        (["--model", ckpts[0], "--root", store, "--split", "tset", "--out", out], "No runs for split 'tset'"),
        (["--model", ckpts[0], "--root", store, "--out", a_file], "is a file; give a folder"),
        ([*base, "--thresholds", tmp_path / "none.yaml"], "No thresholds file at"),
        ([*base, "--thresholds", broken], "is not valid YAML"),
        ([*base, "--thresholds", unknown], "ribosomes"),
        ([*base, "--batch-size", "0"], "batch_size must be a whole number >= 1"),
        ([*base, "--roi", "0", "32", "32"], "roi must be three"),
        ([*base, "--voxel-size", "1e-6"], "outside the plausible 1-100 Å"),
    ]
    for argv, message in cases:
        code, _, err = _tool("detect.py", argv, capsys)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    assert not out.exists()  # every check ran before the first tomogram


def test_read_thresholds_accepts_tool_output_and_plain_mappings(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("ribosome: 0.25\napo-ferritin: 1\n")
    assert read_thresholds(plain) == {"ribosome": 0.25, "apo-ferritin": 1.0}
    for text, error in [
        ("thresholds: {ribosome: yes}", ConfigError),
        ("[]", ConfigError),
        ("x: 1", UnknownParticleError),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(error):
            read_thresholds(bad)


def test_detect_applies_per_class_thresholds_from_yaml_also_for_blob(store, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", "blob", "--root", store, "--out", out, "--formats", "raw", "submission"]
    code, stdout, _ = _tool("detect.py", argv, capsys)
    assert code == 0 and "no tuned thresholds" in stdout  # blob alone: every peak, and a note saying so
    raw = pd.read_csv(out / "peaks.csv")
    assert len(read_submission_csv(out / "submission.csv")) == len(raw) > 0
    cuts = raw.groupby("particle_type")["score"].median().to_dict()
    yaml_path = tmp_path / "thresholds.yaml"
    yaml_path.write_text(yaml.safe_dump({"thresholds": cuts, "beta": 4.0}))
    code, stdout, _ = _tool("detect.py", [*argv, "--thresholds", yaml_path], capsys)
    assert code == 0 and "no tuned thresholds" not in stdout
    sub = read_submission_csv(out / "submission.csv")
    keep = raw[raw["score"] >= raw["particle_type"].map(cuts)]
    assert 0 < len(sub) == len(keep) < len(raw)
    np.testing.assert_allclose(np.sort(sub["x"].to_numpy()), np.sort(keep["x"].to_numpy()))


def test_resuming_with_another_model_or_settings_is_refused_and_says_what_differs(store, ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--root", store, "--out", out, "--formats", "raw"]
    assert _tool("detect.py", ["--model", ckpts[0], *args], capsys)[0] == 0
    status = json.loads((out / "runs" / "TS_b.json").read_text())
    assert status["made_with"]["model"].startswith("sha256:") and status["made_with"]["roi"] == [8, 32, 32]
    first = pd.read_csv(out / "peaks.csv")

    code, _, err = _tool("detect.py", ["--model", ckpts[1], *args], capsys)
    assert code == 2 and "2 run(s) made differently" in err and "model sha256:" in err and "--overwrite" in err
    code, _, err = _tool("detect.py", ["--model", ckpts[0], *args, "--roi", "8", "64", "64"], capsys)
    assert code == 2 and "roi [8, 32, 32] now [8, 64, 64]" in err
    pd.testing.assert_frame_equal(pd.read_csv(out / "peaks.csv"), first)  # refused: nothing touched

    code, stdout, _ = _tool("detect.py", ["--model", ckpts[1], *args, "--overwrite"], capsys)
    assert code == 0 and "done before" not in stdout
    redone = json.loads((out / "runs" / "TS_b.json").read_text())
    assert redone["made_with"]["model"] != status["made_with"]["model"]
    assert not pd.read_csv(out / "peaks.csv")["score"].equals(first["score"])
    code, stdout, _ = _tool("detect.py", ["--model", ckpts[1], *args], capsys)  # same model again: resumes
    assert code == 0 and stdout.count("done before") == 2

    legacy = {k: v for k, v in redone.items() if k != "made_with"}  # a result from before made_with existed
    (out / "runs" / "TS_b.json").write_text(json.dumps(legacy))
    code, _, err = _tool("detect.py", ["--model", ckpts[1], *args], capsys)
    assert code == 2 and "TS_b" in err and "made before cryopoint recorded" in err


def test_logs_get_full_width_tables_and_per_tomogram_progress(store, ckpts, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    argv = ["--model", ckpts[0], "--root", store, "--out", tmp_path / "o", "--roi", "1", "1", "1"]
    code, stdout, err = _tool("detect.py", argv, capsys)
    assert code == 0
    assert err.count("detect.py: warning: roi (1, 1, 1) is smaller") == 1  # once, not once per tomogram
    assert f"{RUNS[0]}: started on cpu" in stdout and f"{RUNS[0]}: " in stdout and " peaks in " in stdout
    row = next(line for line in stdout.splitlines() if RUNS[0] in line and "│" in line)
    assert "ok" in row and "…" not in stdout  # the whole run name and status, nothing cut to 80 columns


@pytest.fixture
def tune_inputs(tmp_path):
    root = tmp_path / "data"
    truth, _ = write_challenge_store(root, runs=("TS_a",), shape=(16, 40, 40))
    csv = tmp_path / "pred.csv"
    truth.assign(score=0.9).to_csv(csv, index=False)
    return ["--predictions", csv, "--truth", root]


def test_tune_thresholds_refuses_to_overwrite_and_writes_nothing_on_bad_input(tune_inputs, tmp_path, capsys):
    out = tmp_path / "th.yaml"
    out.write_text("mine: 1\n")
    code, _, err = _tool("tune_thresholds.py", [*tune_inputs, "--out", out], capsys)
    assert code == 2 and "already exists; pass --overwrite" in err and out.read_text() == "mine: 1\n"
    not_a_ckpt = tmp_path / "bad.pt"
    not_a_ckpt.write_bytes(b"not a checkpoint")
    fresh = tmp_path / "fresh.yaml"
    code, _, err = _tool("tune_thresholds.py", [*tune_inputs, "--out", fresh, "--checkpoint", not_a_ckpt], capsys)
    assert code == 2 and "Cannot load" in err and not fresh.exists()  # checked before the YAML is written
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        {"model_state": {"w": torch.zeros(1)}, "config": TINY_CONFIG, "particles": catalogue_payload(),
         "voxel_size": [10.0] * 3},
    )  # fmt: skip
    code, _, _ = _tool("tune_thresholds.py", [*tune_inputs, "--out", out, "--checkpoint", ckpt, "--overwrite"], capsys)
    assert code == 0 and "thresholds" in yaml.safe_load(out.read_text())
