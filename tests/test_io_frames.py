"""Picks in the wrong frame (issue 16): predictions in voxels, truth outside the tomogram, and the report tool
that crashed on them and left a half-written folder."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _layout_helpers import CHALLENGE_VOXEL_SIZE, write_challenge_store
from _tool_helpers import run_tool

from cryopoint.coords import looks_like_voxels, outside_volume
from cryopoint.errors import CryopointError, PicksFormatError, PointsOutsideVolumeError
from cryopoint.io.layout import tomogram_geometries
from cryopoint.io.picks import check_picks_frame

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SHAPE = (16, 40, 40)
VS = CHALLENGE_VOXEL_SIZE
VOXELS = "Coordinates look like voxels: multiply by the voxel size"


def _refused(script: Path, argv: list[str], capsys) -> str:
    """The message of a tool's refusal: a CryopointError raised from main, or exit status 2 with it on stderr."""
    try:
        code = run_tool(script, argv)
    except CryopointError as err:
        return str(err)
    assert code == 2, f"{script.name} exited {code}: expected a refusal"
    return capsys.readouterr().err


@pytest.fixture
def store(tmp_path):
    """Two runs, 12 true particles each (Å, inside), and scored predictions on every one of them."""
    root = tmp_path / "data"
    truth, _ = write_challenge_store(root, runs=("TS_a", "TS_b"), shape=SHAPE)
    preds = truth.assign(score=np.linspace(0.5, 1.0, len(truth)))
    return root, truth, preds


def _csv(tmp_path, preds, name="pred.csv"):
    path = tmp_path / name
    preds.to_csv(path, index=False)
    return path


def _in_voxels(preds):
    return preds.assign(x=preds.x / VS, y=preds.y / VS, z=preds.z / VS)


# --- the pure checks -------------------------------------------------------------------------------------------


def test_looks_like_voxels():
    rng = np.random.default_rng(0)
    shape, vs = (184, 630, 630), 10.012444
    truth = rng.uniform(0, 1, (50, 3)) * np.array([630, 630, 184]) * vs  # x, y, z in Å across the volume
    assert looks_like_voxels(truth / vs, truth, shape, vs)
    assert not looks_like_voxels(truth, truth, shape, vs)
    assert not looks_like_voxels(truth[:1] + 1.0, truth, shape, vs)  # one Å pick, far from the origin corner
    assert looks_like_voxels(np.array([[629.0, 629.0, 183.0]]), truth, shape, vs)  # the far voxel corner
    assert not looks_like_voxels(np.array([[700.0, 10.0, 10.0]]), truth, shape, vs)  # beyond the voxel box
    assert not looks_like_voxels(truth / 1.2, truth, shape, 1.2)  # near 1 Å per voxel the frames are alike
    assert not looks_like_voxels(truth / vs, truth / vs, shape, vs)  # truth in the same frame: consistent
    assert not looks_like_voxels(np.empty((0, 3)), truth, shape, vs)
    assert not looks_like_voxels(truth / vs, np.empty((0, 3)), shape, vs)


def test_outside_volume_matches_check_points_in_volume_rule():
    xyz = np.array([[-5.0, 0, 0], [-5.1, 0, 0], [395.0, 0, 155.0], [0, 0, 155.1]])  # faces at -5 and n*10 - 5
    assert outside_volume(xyz, (16, 40, 40), 10.0).tolist() == [False, True, False, True]


def test_check_picks_frame(store):
    root, truth, preds = store
    geometry = tomogram_geometries(root, ["TS_a", "TS_b"])
    assert geometry["TS_a"] == (SHAPE, (VS,) * 3)
    check_picks_frame(preds, truth, geometry)  # right frame: silent
    with pytest.raises(PicksFormatError, match=f"{VOXELS}.*TS_a: all 12 predictions lie within x <= 40, y <= 40"):
        check_picks_frame(_in_voxels(preds), truth, geometry)
    mixed = pd.concat([_in_voxels(preds[preds.experiment == "TS_a"]), preds[preds.experiment == "TS_b"]])
    with pytest.warns(UserWarning, match=f"In 1 of 2 runs: {VOXELS}.*TS_a"):
        check_picks_frame(mixed, truth, geometry)
    far = truth.copy()
    far.loc[far.index[:2], "z"] += 1000.0  # two true particles of TS_a above the tomogram
    with pytest.warns(UserWarning, match="TS_a: 2 of 12 true particles lie outside its tomogram"):
        check_picks_frame(preds, far, geometry)
    with pytest.raises(PointsOutsideVolumeError, match="TS_a: 2 of 12 true particles"):
        check_picks_frame(preds, far, geometry, outside="raise")
    check_picks_frame(_in_voxels(preds), truth, {})  # no tomogram at hand: nothing to check against


# --- tools/tune_thresholds.py ----------------------------------------------------------------------------------


def test_tune_thresholds_refuses_predictions_in_voxels(store, tmp_path, capsys):
    root, truth, preds = store
    out = tmp_path / "th.yaml"
    argv = ["--predictions", str(_csv(tmp_path, _in_voxels(preds))), "--truth", str(root), "--out", str(out)]
    assert VOXELS in _refused(TOOLS / "tune_thresholds.py", argv, capsys)
    assert not out.exists()


def test_tune_thresholds_counts_truth_outside_the_tomogram(store, tmp_path, capsys):
    root, truth, preds = store
    far = preds.copy()
    far.loc[far.index[:3], "x"] = 1e5  # and the truth files get three points out there too
    write_challenge_store(root, runs=("TS_a", "TS_b"), shape=SHAPE, picks=far.drop(columns="score"))
    out = tmp_path / "th.yaml"
    argv = ["--predictions", str(_csv(tmp_path, preds)), "--truth", str(root), "--out", str(out)]
    assert run_tool(TOOLS / "tune_thresholds.py", argv) == 0
    err = capsys.readouterr().err  # the CLI prints cryopoint's warnings as "<script>: warning: ..." lines
    assert "tune_thresholds.py: warning:" in err and "TS_a: 3 of 12 true particles lie outside its tomogram" in err
    assert out.is_file()


# --- tools/report.py -------------------------------------------------------------------------------------------


def _report_argv(root, csv, out, *extra):
    return ["--predictions", str(csv), "--truth", str(root), "--out", str(out), *extra]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_report_refuses_truth_outside_the_tomogram_before_writing(store, tmp_path, capsys):
    root, truth, preds = store
    far = truth.copy()
    far.loc[far.index[0], "x"] = 1e5  # this one made report.py crash in the failure gallery (IndexError)
    write_challenge_store(root, runs=("TS_a", "TS_b"), shape=SHAPE, picks=far)
    out = tmp_path / "report"
    message = _refused(TOOLS / "report.py", _report_argv(root, _csv(tmp_path, preds), out), capsys)
    assert "TS_a: 1 of 12 true particles lie outside its tomogram" in message and "--no-tomograms" in message
    assert not out.exists() and not _leftovers(tmp_path)


def test_report_refuses_predictions_in_voxels(store, tmp_path, capsys):
    root, truth, preds = store
    out = tmp_path / "report"
    message = _refused(TOOLS / "report.py", _report_argv(root, _csv(tmp_path, _in_voxels(preds)), out), capsys)
    assert VOXELS in message and not out.exists()


def test_report_folder_is_written_atomically(store, tmp_path, monkeypatch, capsys):
    import cryopoint.viz.report

    root, truth, preds = store
    csv, out = _csv(tmp_path, preds), tmp_path / "report"

    def crashing(methods, truth, out_dir, **kwargs):
        (Path(out_dir) / "fbeta_curves.png").write_bytes(b"half")
        raise RuntimeError("figure failed")

    monkeypatch.setattr(cryopoint.viz.report, "make_report", crashing)
    with pytest.raises(RuntimeError, match="figure failed"):
        run_tool(TOOLS / "report.py", _report_argv(root, csv, out, "--no-tomograms"))
    assert not out.exists() and not _leftovers(tmp_path)  # nothing half-written, no temporary folder left

    def fake(methods, truth, out_dir, **kwargs):
        (Path(out_dir) / "report.md").write_text(f"{len(truth)} particles")
        return Path(out_dir) / "report.md"

    monkeypatch.setattr(cryopoint.viz.report, "make_report", fake)
    assert run_tool(TOOLS / "report.py", _report_argv(root, csv, out, "--no-tomograms")) == 0
    assert (out / "report.md").read_text() == "24 particles"
    capsys.readouterr()
    assert run_tool(TOOLS / "report.py", _report_argv(root, csv, out, "--no-tomograms")) == 2  # user error
    assert "--overwrite" in capsys.readouterr().err
    (out / "old.png").write_bytes(b"old")
    assert run_tool(TOOLS / "report.py", _report_argv(root, csv, out, "--no-tomograms", "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and not _leftovers(tmp_path)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert run_tool(TOOLS / "report.py", _report_argv(root, csv, other, "--no-tomograms", "--overwrite")) == 2
    assert "holds no report.md" in capsys.readouterr().err
    assert run_tool(TOOLS / "report.py", _report_argv(root, csv, root, "--no-tomograms", "--overwrite")) == 2
    assert "input" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep" and (root / "train").is_dir()


def test_report_without_tomograms_scores_truth_outside_with_a_warning(store, tmp_path, capsys):
    root, truth, preds = store
    far = truth.copy()
    far.loc[far.index[0], "x"] = 1e5
    write_challenge_store(root, runs=("TS_a", "TS_b"), shape=SHAPE, picks=far)
    out = tmp_path / "report"
    assert run_tool(TOOLS / "report.py", _report_argv(root, _csv(tmp_path, preds), out, "--no-tomograms")) == 0
    assert (
        "report.py: warning:" in (err := capsys.readouterr().err) and "TS_a: 1 of 12 true particles lie outside" in err
    )
    assert "1 true particles are missed" in (out / "report.md").read_text()
