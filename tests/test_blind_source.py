"""Source D (benchmarks/blind_sim.py, benchmarks/blind_source.py): the blind simulator writes data cryopoint reads
as a user's CZII data, with labels on the particles, and the benchmark scores a model on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cryopoint
from benchmarks import blind_sim, blind_source
from cryopoint.io import list_runs, read_tomogram, read_truth, tomogram_path
from cryopoint.particles import PARTICLE_NAMES, get_particle

SHAPE = (48, 160, 160)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return blind_source.dataset(7, 1, 4, SHAPE, str(tmp_path_factory.mktemp("cache")))


def test_runs_read_as_czii_data(root):
    names = list_runs(root)
    assert sorted(names) == blind_source.run_names(1, 4)
    tomo = read_tomogram(tomogram_path(root, "TS_D_1"))
    assert tomo.shape == SHAPE
    assert tomo.voxel_size == pytest.approx((10.012444,) * 3)  # from .zattrs, not the folder's 10.000
    truth = read_truth(root)
    assert set(truth.particle_type) <= set(PARTICLE_NAMES) and len(truth) >= 8
    extent = np.array(SHAPE[::-1]) * 10.012444  # x, y, z in Å
    xyz = truth[["x", "y", "z"]].to_numpy()
    assert (xyz >= 0).all() and (xyz < extent).all()


def test_dataset_resumes_and_is_deterministic(root, tmp_path):
    again = blind_source.dataset(7, 1, 1, SHAPE, str(tmp_path))  # a fresh cache: generated again
    a = read_tomogram(tomogram_path(root, "TS_D_1")).data
    b = read_tomogram(tomogram_path(again, "TS_D_1")).data
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    stamp = (root / "train" / "overlay" / "ExperimentRuns" / "TS_D_2").stat().st_mtime_ns
    assert blind_source.dataset(7, 1, 4, SHAPE, str(root.parents[1])) == root  # same key, nothing regenerated
    assert (root / "train" / "overlay" / "ExperimentRuns" / "TS_D_2").stat().st_mtime_ns == stamp


def _mean_near(volume: np.ndarray, centres_zyx: np.ndarray, radius: int) -> float:
    values = []
    for c in np.round(centres_zyx).astype(int):
        lo, hi = np.maximum(c - radius, 0), np.minimum(c + radius + 1, volume.shape)
        values.append(volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].mean())
    return float(np.mean(values))


def test_labels_sit_on_dark_density(root):
    """Protein is darker than ice at the labelled centres (in cryopoint's frame: x, y, z in Å -> axes 2, 1, 0), and
    not at the same points moved 30 voxels in x: a slip of frame or units would fail this."""
    truth = read_truth(root)
    at, off = [], []
    for run, group in truth.groupby("experiment"):
        tomo = read_tomogram(tomogram_path(root, run))
        vol = np.asarray(tomo.data, dtype=np.float64)
        vol = (vol - vol.mean()) / vol.std()
        zyx = group[["z", "y", "x"]].to_numpy() / 10.012444
        moved = zyx + [0, 0, 30]
        moved[:, 2] %= SHAPE[2]
        at.append(_mean_near(vol, zyx, 2))
        off.append(_mean_near(vol, moved, 2))
    assert np.mean(at) < -0.3 and np.mean(at) < np.mean(off) - 0.3


def _random_peaks(names, n, rng, scores):
    """``n`` peaks of random classes at random places in the runs ``names`` (Å), scores uniform in ``scores``."""
    return pd.DataFrame(
        {
            "experiment": rng.choice(names, n),
            "particle_type": rng.choice(PARTICLE_NAMES, n),
            "x": rng.uniform(0, SHAPE[2] * 10, n),
            "y": rng.uniform(0, SHAPE[1] * 10, n),
            "z": rng.uniform(0, SHAPE[0] * 10, n),
            "score": rng.uniform(*scores, n),
        }
    )


def test_evaluate_scores_perfect_picks_and_writes_report(root, tmp_path):
    names = blind_source.run_names(1, 4)
    truth = read_truth(root, runs=names)
    rng = np.random.default_rng(0)
    hits = truth.assign(score=0.95)
    noise = _random_peaks(names, 400, rng, (0.0, 0.05))
    peaks = pd.concat([hits[noise.columns], noise], ignore_index=True)
    blobs = noise.assign(score=rng.uniform(0, 1, 400))  # a detector that finds nothing
    res = blind_source.evaluate(cryopoint.load("default"), root, peaks, blobs, truth, names)
    present = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0 and (truth.particle_type == n).any()]
    assert present
    for n in present:
        assert res["ranking"][n] == pytest.approx(1.0)
        assert res["default"][n + " recall"] == pytest.approx(1.0)  # shipped thresholds are far below 0.95
    split = res["split_half"]
    assert split["tune_runs"] == names[:2] and split["test_runs"] == names[2:]
    assert split["gap"]["weighted"]["gap"] > 0  # perfect picks beat a blind detector
    res["seconds"] = [1.0] * 4
    meta = dict(command="python -m benchmarks.blind_source", when="now", machine="test", minutes=0.1, model="default")
    meta.update(model_sha="0" * 64, sim_digest="x", seed=7, first=1, runs=4, shape=list(SHAPE), notes="")
    text = blind_source.write_report({"small": res}, meta, tmp_path / "r").read_text()
    assert "| default | **" in text and "LoG blob" in text
    assert f"{res['ranking']['score']:.3f}" in text


def test_simulator_is_kept_blind():
    """The simulator imports nothing from cryopoint: its choices stay its own."""
    source = Path(blind_sim.__file__).read_text()
    assert not re.search(r"^\s*(from|import)\s+(cryopoint|benchmarks)\b", source, re.MULTILINE)
    assert re.search(r"^import numpy as np$", source, re.MULTILINE)  # the pattern does match an import line


def test_main_writes_the_report_and_json(tmp_path):
    """The command end to end at a small size: the shipped file on 4 runs and 1 'full-size' run."""
    out = tmp_path / "res" / "blind"
    args = ["--runs", "4", "--seed", "7", "--first", "1", "--shape", *map(str, SHAPE), "--full", "1"]
    args += ["--full-shape", *map(str, SHAPE), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    path = blind_source.main(args)
    text = path.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["meta"]["shape"] == list(SHAPE) and len(data["result"]["full"]["seconds"]) == 1
    assert f"**{data['result']['small']['default']['score']:.3f}**" in text and "Full size: 1 runs" in text
    assert 0.0 <= data["result"]["small"]["ranking"]["score"] <= 1.0


def test_run_names_per_source():
    assert blind_source.run_names(3, 2, "F") == ["TS_F_3", "TS_F_4"]
    assert blind_source.run_names(1, 1) == ["TS_D_1"]  # D by default
    assert blind_source.run_names(1, 1, "H") == ["TS_H_1"]
    with pytest.raises(ValueError, match="unknown blind source 'I'"):
        blind_source.run_names(1, 1, "I")
    with pytest.raises(ValueError, match="choose one of D, E, F"):
        blind_source.dataset(1, 1, 1, SHAPE, "/nonexistent", source="d")


@pytest.mark.parametrize("source", ["E", "F", "G", "H"])
def test_dataset_of_another_source_is_keyed_and_resumes(source, tmp_path):
    """E, F, G and H runs come from their own simulators into their own cache folders, and a second call generates
    nothing; a call for more runs adds only the missing ones."""
    root = blind_source.dataset(3, 1, 1, SHAPE, str(tmp_path), source=source)
    assert root.parent.name == f"blind_sim_{source.lower()}" and list_runs(root) == [f"TS_{source}_1"]
    stamp = tomogram_path(root, f"TS_{source}_1").stat().st_mtime_ns
    assert blind_source.dataset(3, 1, 2, SHAPE, str(tmp_path), source=source) == root
    assert sorted(list_runs(root)) == [f"TS_{source}_1", f"TS_{source}_2"]
    assert tomogram_path(root, f"TS_{source}_1").stat().st_mtime_ns == stamp  # complete: not regenerated
    assert read_tomogram(tomogram_path(root, f"TS_{source}_2")).shape == SHAPE


def test_main_scores_source_f_into_its_own_report(tmp_path, monkeypatch):
    """``--source F`` end to end at a small size; without ``--out`` the report is named for the source."""
    monkeypatch.setattr(blind_source, "REPO", tmp_path)
    args = ["--source", "F", "--runs", "4", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE), "--full", "0"]
    path = blind_source.main([*args, "--cache-dir", str(tmp_path / "cache")])
    assert path == tmp_path / "benchmarks" / "results" / "blind_source_F.md"
    text = path.read_text()
    data = json.loads(path.with_suffix(".json").read_text())
    assert text.startswith("# Source F: a simulator written blind") and "`benchmarks/blind_sim_f.py`" in text
    assert data["meta"]["source"] == "F" and data["result"]["small"]["runs"] == 4
    assert data["result"]["small"]["split_half"]["test_runs"] == ["TS_F_3", "TS_F_4"]
    assert f"**{data['result']['small']['default']['score']:.3f}**" in text


def test_baseline_gap_is_zero_against_itself_and_positive_against_a_worse_detector(root):
    """``against_baseline``: the same peaks give a difference of exactly 0; perfect peaks against noise-only peaks give
    a positive weighted difference whose interval excludes 0."""
    names = blind_source.run_names(1, 4)
    truth = read_truth(root, runs=names)
    noise = _random_peaks(names, 200, np.random.default_rng(1), (0.9, 1.0))
    perfect = pd.concat([truth.assign(score=0.95)[noise.columns], noise.assign(score=0.01)], ignore_index=True)
    det = cryopoint.load("default")
    same = blind_source.against_baseline(det, perfect, det, perfect, root, truth, names)
    assert same["gap"]["weighted"] == {"gap": 0.0, "lo": 0.0, "hi": 0.0}
    better = blind_source.against_baseline(det, perfect, det, noise, root, truth, names)
    assert better["gap"]["weighted"]["lo"] > 0.3
    assert better["default"]["score"] < 0.2  # the baseline's own scores are the noise's


def test_main_with_a_baseline_reports_the_paired_difference(tmp_path):
    """``--baseline`` end to end: the shipped file against itself differs by exactly 0, small and full size."""
    out = tmp_path / "res" / "paired"
    args = ["--source", "G", "--runs", "2", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE), "--full", "1"]
    args += ["--full-shape", *map(str, SHAPE), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    path = blind_source.main([*args, "--baseline", "default"])
    text = path.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["meta"]["baseline"] == "default" and data["meta"]["baseline_sha"] == data["meta"]["model_sha"]
    for part in ("small", "full"):
        base = data["result"]["baseline"][part]
        assert base["gap"]["weighted"]["gap"] == 0.0
        assert base["default"]["score"] == pytest.approx(data["result"][part]["default"]["score"])
    assert text.count("| difference, default picks | +0.000 [+0.000, +0.000]") == 2
    assert "Against the baseline `default`" in text
