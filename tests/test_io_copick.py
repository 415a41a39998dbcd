"""copick as users run it: overlay roots copick sees, and picks round-tripped through copick's own API.

Tests marked ``needs_copick`` run where copick is installed: CI's second step (.ci/run) builds that environment
(copick pins zarr<3, so it is not in the main one). The rest run everywhere.
"""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from cryopoint.errors import (
    DataNotFoundError,
    MissingDependencyError,
    OutputExistsError,
    PicksFormatError,
    UnknownParticleError,
)
from cryopoint.io import overlay_picks_dir, read_overlay_picks, read_submission_csv, write_overlay_picks
from cryopoint.io.copick import copick_tomogram_paths, open_copick, read_copick_picks, write_copick_picks
from cryopoint.particles import PARTICLE_NAMES
from tests._layout_helpers import default_picks, write_challenge_store
from tools.detect import main as detect_main

try:
    import copick
except ImportError:
    copick = None

needs_copick = pytest.mark.skipif(
    copick is None, reason="copick is not installed (it pins zarr<3); CI's copick step runs these"
)
RUNS = ("TS_a", "TS_b")
SHAPE = (16, 32, 32)


def _sorted(df):
    return df.sort_values(["experiment", "particle_type", "x"]).reset_index(drop=True)


@pytest.fixture
def picks():
    return default_picks(RUNS, SHAPE).assign(score=np.linspace(0.05, 0.95, 2 * 6 * len(RUNS)))


@pytest.fixture
def project(tmp_path):
    """A copick filesystem project over a challenge-layout split: static = tomograms, overlay = picks."""
    write_challenge_store(tmp_path / "data", runs=RUNS, shape=SHAPE, split="test", picks=pd.DataFrame())
    overlay = tmp_path / "data" / "test" / "overlay"
    config = {
        "config_type": "filesystem",
        "name": "cryopoint test",
        "pickable_objects": [
            {"name": name, "is_particle": True, "label": i + 1, "radius": 60.0} for i, name in enumerate(PARTICLE_NAMES)
        ]
        + [{"name": "membrane", "is_particle": False, "label": 7}],
        "overlay_root": f"local://{overlay}",
        "static_root": f"local://{tmp_path / 'data' / 'test' / 'static'}",
        "overlay_fs_args": {"auto_mkdir": True},
    }
    path = tmp_path / "project.json"
    path.write_text(json.dumps(config))
    return path, overlay


def test_overlay_picks_land_where_a_copick_overlay_root_has_them(tmp_path, picks):
    rows = picks[picks.experiment == "TS_a"]
    paths = write_overlay_picks(tmp_path / "ov", "TS_a", rows, user_id="cryopoint")
    folder = tmp_path / "ov" / "ExperimentRuns" / "TS_a" / "Picks"
    assert overlay_picks_dir(tmp_path / "ov", "TS_a") == folder
    assert sorted(paths) == sorted(folder / f"cryopoint_0_{n}.json" for n in PARTICLE_NAMES)
    back = read_overlay_picks(tmp_path / "ov", "TS_a", user_id="cryopoint")
    pd.testing.assert_frame_equal(_sorted(back), _sorted(rows), check_exact=False, rtol=0, atol=1e-9)
    with pytest.raises(DataNotFoundError, match="ExperimentRuns"):
        read_overlay_picks(tmp_path / "ov", "TS_b")


def test_detect_overlay_root_is_a_copick_overlay_root(tmp_path):
    write_challenge_store(tmp_path / "data", runs=("TS_a",), shape=SHAPE, split="test", picks=pd.DataFrame())
    out, overlay = tmp_path / "out", tmp_path / "overlay"
    args = ["--model", "blob", "--root", str(tmp_path / "data"), "--out", str(out), "--overlay-root", str(overlay)]
    assert detect_main([*args, "--formats", "submission", "copick"]) == 0
    folder = overlay / "ExperimentRuns" / "TS_a" / "Picks"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"cryopoint_0_{n}.json" for n in PARTICLE_NAMES)
    got = read_overlay_picks(overlay, "TS_a", user_id="cryopoint")
    assert len(got) == len(read_submission_csv(out / "submission.csv"))


def test_without_copick_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "copick", None)  # as if copick were not installed
    with pytest.raises(MissingDependencyError, match=r"cryopoint\[copick\]"):
        open_copick(tmp_path / "project.json")


@needs_copick
def test_copick_sees_the_picks_written_under_its_overlay_root(project, picks):
    config, overlay = project
    for run in RUNS:
        write_overlay_picks(overlay, run, picks[picks.experiment == run], user_id="cryopoint")
    root = copick.from_file(str(config))
    for run in RUNS:
        found = root.get_run(run).get_picks(user_id="cryopoint", session_id="0")
        assert sorted(p.pickable_object_name for p in found) == sorted(PARTICLE_NAMES)
        for p in found:
            want = picks[(picks.experiment == run) & (picks.particle_type == p.pickable_object_name)]
            np.testing.assert_allclose(p.full_positions(), want[["x", "y", "z"]].to_numpy(), rtol=0, atol=1e-9)
            np.testing.assert_allclose(p.scores(), want["score"].to_numpy())


@needs_copick
def test_write_copick_picks_reads_back_through_copick(project, picks):
    config, _ = project
    written = write_copick_picks(config, picks, user_id="cryopoint", session_id="0")
    assert len(written) == len(RUNS) * len(PARTICLE_NAMES)
    root = copick.from_file(str(config))  # a fresh project object: what is on storage, not what is cached
    for run in RUNS:
        for p in root.get_run(run).get_picks(user_id="cryopoint"):
            want = picks[(picks.experiment == run) & (picks.particle_type == p.pickable_object_name)]
            assert p.meta.unit == "angstrom" and p.session_id == "0"
            np.testing.assert_allclose(p.full_positions(), want[["x", "y", "z"]].to_numpy(), rtol=0, atol=1e-9)
            np.testing.assert_allclose(p.scores(), want["score"].to_numpy())
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_copick_picks(config, picks, user_id="cryopoint")
    fewer = picks[picks.particle_type != "ribosome"]
    write_copick_picks(config, fewer, user_id="cryopoint", overwrite=True)  # stale ribosome picks are emptied
    assert copick.from_file(str(config)).get_run("TS_a").get_picks("ribosome", user_id="cryopoint")[0].numpy()[
        0
    ].shape == (0, 3)
    with pytest.raises(DataNotFoundError, match="TS_a, TS_b"):
        write_copick_picks(config, picks.assign(experiment="TS_zz"), user_id="other")


@needs_copick
def test_read_copick_picks_from_picks_copick_wrote(project):
    config, _ = project
    root = copick.from_file(str(config))
    run = root.get_run("TS_a")
    transforms = np.tile(np.eye(4), (2, 1, 1))
    transforms[:, :3, 3] = [[1.0, 2.0, 3.0], [0.0, 0.0, -5.0]]  # shifts copick keeps in the transform
    run.new_picks("ribosome", "0", "tool").from_numpy(
        np.array([[100.0, 110.0, 120.0], [50.0, 60.0, 70.0]]), transforms, scores=np.array([0.9, 0.4])
    )
    run.new_picks("ribosome", "0", "curation").from_numpy(np.array([[10.0, 20.0, 30.0]]))
    run.new_picks("apo-ferritin", "0", "curation").from_numpy(np.array([[1.0, 2.0, 3.0]]))
    run.new_picks("membrane", "0", "curation").from_numpy(np.array([[9.0, 9.0, 9.0]]))
    with pytest.raises(UnknownParticleError, match="membrane"):
        read_copick_picks(config, "TS_a")
    truth = read_copick_picks(config, "TS_a", unknown="skip")  # curation wins over the tool's picks
    assert _sorted(truth)[["particle_type", "x", "y", "z"]].values.tolist() == [
        ["apo-ferritin", 1.0, 2.0, 3.0],
        ["ribosome", 10.0, 20.0, 30.0],
    ]
    tool = read_copick_picks(config, ["TS_a"], user_id="tool")
    assert tool[["x", "y", "z", "score"]].to_numpy().tolist() == [[101.0, 112.0, 123.0, 0.9], [50.0, 60.0, 65.0, 0.4]]
    assert set(tool.experiment) == {"TS_a"}
    run.new_picks("ribosome", "1", "curation").from_numpy(np.array([[0.0, 0.0, 0.0]]))
    with pytest.raises(PicksFormatError, match="session"):
        read_copick_picks(config, "TS_a", unknown="skip")
    assert read_copick_picks(config, "TS_a", session_id="1", unknown="skip").x.tolist() == [0.0]
    other = run.new_picks("beta-amylase", "0", "px")
    other.meta.unit = "pixel"
    other.from_numpy(np.array([[1.0, 1.0, 1.0]]))
    with pytest.raises(PicksFormatError, match="'pixel', not angstrom"):
        read_copick_picks(config, "TS_a", user_id="px")


@needs_copick
def test_detect_with_a_copick_config_reads_its_tomograms_and_writes_picks_into_it(project, tmp_path):
    config, _ = project
    paths = copick_tomogram_paths(config)
    assert sorted(paths) == sorted(RUNS)
    assert paths["TS_a"] == tmp_path / "data/test/static/ExperimentRuns/TS_a/VoxelSpacing10.000/denoised.zarr"
    assert "no 'wbp' tomogram" in copick_tomogram_paths(config, ["TS_a"], "wbp")["TS_a"]
    out = tmp_path / "out"
    args = ["--model", "blob", "--copick-config", str(config), "--out", str(out), "--formats", "submission", "copick"]
    assert detect_main(args) == 0
    sub = read_submission_csv(out / "submission.csv")
    got = read_copick_picks(config, user_id="cryopoint", unknown="skip")
    assert len(got) == len(sub) > 0
    np.testing.assert_allclose(_sorted(got)[["x", "y", "z"]], _sorted(sub)[["x", "y", "z"]], atol=1e-6)
    assert not (out / "overlay").exists()  # with a copick config, picks go into the project only
    with pytest.raises(SystemExit):
        detect_main([*args, "--overlay-root", str(tmp_path / "ov")])
