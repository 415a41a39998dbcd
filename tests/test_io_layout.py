"""The challenge layout written with plain zarr/json is read back through cryopoint, exactly."""

import json

import numpy as np
import pandas as pd
import pytest

from cryopoint.errors import DataNotFoundError, OutputExistsError, PicksFormatError, UnknownParticleError
from cryopoint.io import list_runs, read_picks, read_tomogram, read_truth, tomogram_path, write_run_picks
from cryopoint.particles import PARTICLE_NAMES
from tests._layout_helpers import CHALLENGE_VOXEL_SIZE, write_challenge_store, write_picks_json

RUNS = ("TS_5_4", "TS_69_2")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("challenge")
    picks, volumes = write_challenge_store(root, runs=RUNS, shape=(16, 32, 32))
    return root, picks, volumes


def _sorted(df):
    return df.sort_values(["experiment", "particle_type", "x"]).reset_index(drop=True)


def test_layout_files_are_exactly_the_challenge_ones(store):
    root, _, _ = store
    zarr_dir = root / "train/static/ExperimentRuns/TS_5_4/VoxelSpacing10.000/denoised.zarr"
    assert {p.name for p in zarr_dir.iterdir()} == {".zgroup", ".zattrs", "0", "1", "2"}
    assert json.loads((zarr_dir / "0" / ".zarray").read_text())["compressor"]["id"] == "blosc"
    assert (root / "train/overlay/ExperimentRuns/TS_5_4/Picks/apo-ferritin.json").is_file()


def test_list_runs_and_tomogram_path(store):
    root, _, _ = store
    assert list_runs(root) == sorted(RUNS)
    path = tomogram_path(root, "TS_69_2")
    assert path == root / "train/static/ExperimentRuns/TS_69_2/VoxelSpacing10.000/denoised.zarr"


def test_tomogram_shape_voxel_size_and_values(store):
    root, _, volumes = store
    for level, shape in enumerate([(16, 32, 32), (8, 16, 16), (4, 8, 8)]):
        tomo = read_tomogram(tomogram_path(root, "TS_5_4"), level=level)
        assert tomo.shape == shape
        assert tomo.data.dtype == np.float32
        assert tomo.voxel_size == pytest.approx((CHALLENGE_VOXEL_SIZE * 2**level,) * 3, abs=1e-9)
        assert tomo.name == "TS_5_4"
    np.testing.assert_array_equal(read_tomogram(tomogram_path(root, "TS_5_4")).data, volumes["TS_5_4"])


def test_every_pick_is_read_back(store):
    root, picks, _ = store
    got = read_picks(root, "TS_5_4")
    assert list(got.columns) == ["experiment", "particle_type", "x", "y", "z"]
    want = picks[picks.experiment == "TS_5_4"]
    pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_exact=False, rtol=0, atol=1e-9)
    truth = read_truth(root)
    pd.testing.assert_frame_equal(_sorted(truth), _sorted(picks), check_exact=False, rtol=0, atol=1e-9)
    assert len(read_truth(root, runs=["TS_69_2"])) == 12


def test_voxel_size_falls_back_to_folder_name_without_metadata(tmp_path):
    write_challenge_store(tmp_path, runs=("r1",), picks=pd.DataFrame())
    path = tomogram_path(tmp_path, "r1")
    attrs = path / ".zattrs"
    attrs.write_text("{}")
    assert read_tomogram(path).voxel_size == (10.0, 10.0, 10.0)
    assert read_tomogram(path, level=1).voxel_size == (20.0, 20.0, 20.0)
    assert read_tomogram(path, voxel_size=7.0).voxel_size == (7.0, 7.0, 7.0)


def test_copick_names_and_choice_between_files(tmp_path):
    picks, _ = write_challenge_store(tmp_path, runs=("r1",))
    folder = tmp_path / "train/overlay/ExperimentRuns/r1/Picks"
    # a prediction file next to the curated one: curation wins by default, user_id selects the other
    write_picks_json(folder / "cryopoint_0_ribosome.json", "r1", "ribosome", [(1.0, 2.0, 3.0)], "cryopoint", "0", [0.9])
    default = read_picks(tmp_path, "r1")
    assert len(default[default.particle_type == "ribosome"]) == 2
    mine = read_picks(tmp_path, "r1", user_id="cryopoint")
    assert mine[["x", "y", "z", "score"]].to_numpy().tolist() == [[1.0, 2.0, 3.0, 0.9]]
    assert set(mine.particle_type) == {"ribosome"}
    # two non-curated sessions for one object: ambiguous unless a session is named
    write_picks_json(folder / "cryopoint_1_ribosome.json", "r1", "ribosome", [(4.0, 5.0, 6.0)], "cryopoint", "1")
    with pytest.raises(PicksFormatError, match="session_id"):
        read_picks(tmp_path, "r1", user_id="cryopoint")
    assert read_picks(tmp_path, "r1", user_id="cryopoint", session_id="1").x.tolist() == [4.0]


def test_translation_in_transformation_is_added(tmp_path):
    path = tmp_path / "train/overlay/ExperimentRuns/r1/Picks/ribosome.json"
    write_picks_json(path, "r1", "ribosome", [(1.0, 2.0, 3.0)])
    doc = json.loads(path.read_text())
    doc["points"][0]["transformation_"] = [[1, 0, 0, 10], [0, 1, 0, 20], [0, 0, 1, 30], [0, 0, 0, 1]]
    path.write_text(json.dumps(doc))
    assert read_picks(tmp_path, "r1")[["x", "y", "z"]].to_numpy().tolist() == [[11.0, 22.0, 33.0]]


def test_write_run_picks_round_trip_with_scores(tmp_path):
    truth, _ = write_challenge_store(tmp_path, runs=("r1",))
    pred = truth.assign(score=np.linspace(0.1, 0.9, len(truth)), x=truth.x + 1.5)
    paths = write_run_picks(tmp_path, "r1", pred, user_id="cryopoint", session_id="0")
    assert sorted(p.name for p in paths)[0] == "cryopoint_0_apo-ferritin.json"
    doc = json.loads(paths[0].read_text())
    assert doc["points"][0]["transformation_"] == np.eye(4).tolist()
    assert [p["instance_id"] for p in doc["points"]] == [0, 1]
    back = read_picks(tmp_path, "r1", user_id="cryopoint")
    pd.testing.assert_frame_equal(_sorted(back), _sorted(pred), check_exact=False, rtol=0, atol=1e-9)
    # the ground truth is untouched and still chosen by default
    pd.testing.assert_frame_equal(_sorted(read_picks(tmp_path, "r1")), _sorted(truth), check_exact=False, atol=1e-9)
    with pytest.raises(OutputExistsError):
        write_run_picks(tmp_path, "r1", pred, user_id="cryopoint")


def test_write_run_picks_challenge_names_for_curation(tmp_path):
    table = pd.DataFrame({"particle_type": ["ribosome"], "x": [1.0], "y": [2.0], "z": [3.0]})
    paths = write_run_picks(tmp_path, "new", table)
    assert sorted(p.name for p in paths) == sorted(f"{n}.json" for n in PARTICLE_NAMES)
    got = read_picks(tmp_path, "new")
    assert got[["experiment", "particle_type"]].values.tolist() == [["new", "ribosome"]]


def test_write_run_picks_rejects_other_runs_and_unknown_names(tmp_path):
    table = pd.DataFrame({"experiment": ["a", "b"], "particle_type": ["ribosome"] * 2, "x": 1.0, "y": 1.0, "z": 1.0})
    with pytest.raises(PicksFormatError, match="other runs"):
        write_run_picks(tmp_path, "a", table)
    with pytest.raises(UnknownParticleError, match="apo-ferritin"):
        write_run_picks(tmp_path, "a", table.assign(experiment="a", particle_type="proteasome"))
    assert not (tmp_path / "train").exists()


def test_missing_paths_list_what_exists(store, tmp_path):
    root, _, _ = store
    with pytest.raises(DataNotFoundError, match="TS_5_4, TS_69_2"):
        tomogram_path(root, "TS_404")
    with pytest.raises(DataNotFoundError, match="denoised.zarr"):
        tomogram_path(root, "TS_5_4", kind="wbp")
    with pytest.raises(DataNotFoundError, match="VoxelSpacing10.000"):
        tomogram_path(root, "TS_5_4", voxel_spacing=5.0)
    with pytest.raises(DataNotFoundError, match="train"):
        list_runs(root, split="test")
    with pytest.raises(DataNotFoundError, match="TS_5_4"):
        read_picks(root, "nope")
    with pytest.raises(DataNotFoundError, match="0, 1, 2"):
        read_tomogram(tomogram_path(root, "TS_5_4"), level=3)


def test_malformed_json_missing_keys_and_unknown_names(tmp_path):
    folder = tmp_path / "train/overlay/ExperimentRuns/r1/Picks"
    folder.mkdir(parents=True)
    bad = folder / "ribosome.json"
    bad.write_text("{not json")
    with pytest.raises(PicksFormatError, match="not valid JSON"):
        read_picks(tmp_path, "r1")
    bad.write_text(json.dumps({"pickable_object_name": "ribosome"}))
    with pytest.raises(PicksFormatError, match='"points"'):
        read_picks(tmp_path, "r1")
    bad.write_text(json.dumps({"pickable_object_name": "ribosome", "points": [{"location": {"x": 1, "y": 2}}]}))
    with pytest.raises(PicksFormatError, match="point 0"):
        read_picks(tmp_path, "r1")
    bad.unlink()
    write_picks_json(folder / "membrane.json", "r1", "membrane", [(1.0, 2.0, 3.0)])
    with pytest.raises(UnknownParticleError, match="virus-like-particle"):
        read_picks(tmp_path, "r1")
    assert len(read_picks(tmp_path, "r1", unknown="skip")) == 0
    write_picks_json(folder / "ribosome.json", "r1", "ribosome", [(4.0, 5.0, 6.0)])
    with pytest.raises(UnknownParticleError, match='unknown="skip"'):
        read_truth(tmp_path)
    truth = read_truth(tmp_path, unknown="skip")  # a copick project with other objects still gives its truth
    assert truth[["particle_type", "x"]].values.tolist() == [["ribosome", 4.0]]


def test_copick_json_round_trip_and_table_checks(tmp_path):
    from cryopoint.io import check_picks_table, read_copick_json, write_copick_json

    table = pd.DataFrame(
        {"particle_type": ["ribosome", "ribosome", "apo-ferritin"], "x": [1.5, 2.5, 9.0], "y": 3.0, "z": 4.0}
    ).assign(score=[0.25, 0.75, 0.5])
    path = write_copick_json(tmp_path / "p.json", table, "ribosome", "r9", user_id="me", session_id="7")
    meta, back = read_copick_json(path)
    assert (meta["user_id"], meta["session_id"], meta["run_name"], meta["unit"]) == ("me", "7", "r9", "angstrom")
    assert back.experiment.tolist() == ["r9", "r9"]
    assert back[["x", "y", "z", "score"]].to_numpy().tolist() == [[1.5, 3.0, 4.0, 0.25], [2.5, 3.0, 4.0, 0.75]]
    with pytest.raises(OutputExistsError):
        write_copick_json(path, table, "ribosome", "r9")
    with pytest.raises(PicksFormatError, match="NaN"):
        check_picks_table(table.assign(x=np.nan), need_experiment=False)
    with pytest.raises(PicksFormatError, match="experiment"):
        check_picks_table(table)


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DataNotFoundError, match="not a readable zarr"):
        read_tomogram(tmp_path / "empty.zarr")


def test_tomograms_by_run_reads_lazily_and_keeps_few(tmp_path, monkeypatch):
    import cryopoint.io.layout as layout

    runs = ["TS_a", "TS_b", "TS_c"]
    write_challenge_store(tmp_path, runs=runs, shape=(8, 16, 16))
    reads = []
    real = layout.read_tomogram
    monkeypatch.setattr(layout, "read_tomogram", lambda path: reads.append(path) or real(path))
    tomos = layout.TomogramsByRun(tmp_path, runs, keep=2)
    assert len(tomos) == 3 and list(tomos) == runs and "TS_b" in tomos and reads == []
    assert tomos["TS_a"].shape == (8, 16, 16)
    tomos["TS_a"]
    tomos["TS_b"]
    assert len(reads) == 2  # the second TS_a came from the cache
    tomos["TS_c"]  # evicts TS_a, the least recently used
    tomos["TS_a"]
    assert len(reads) == 4 and len(tomos._cache) == 2
    with pytest.raises(KeyError):
        tomos["TS_x"]
