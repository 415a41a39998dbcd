"""benchmarks/template_ceiling.py: the rotation grid covers what it claims, a run replays to its own truth (and
a root it cannot replay is refused), the matcher finds particles where the signal is plain, and the report's
composite is what its rows say."""

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import template_ceiling as bench
from cryopoint.data.cache import ensure_synthetic_dataset
from cryopoint.io import list_runs, read_truth
from cryopoint.synth import shapes

D2 = [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]


def _random_rotations(n, seed=0):
    q = np.random.default_rng(seed).standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


@pytest.mark.parametrize("step", [30.0, 20.0])
def test_grid_covers_so3_modulo_d2_within_its_step(step):
    grid = bench.so3_d2_grid(step)
    assert np.allclose(grid @ grid.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(grid), 1.0)
    full = np.concatenate([grid @ g for g in D2])
    rots = _random_rotations(400)
    trace = np.einsum("nij,mij->nm", rots, full)
    nearest = np.degrees(np.arccos(np.clip((trace - 1) / 2, -1, 1))).min(axis=1)
    assert nearest.max() < step  # every rotation lies within one step of the grid, modulo D2
    assert len(bench.so3_d2_grid(step / 2)) > 6 * len(grid)  # finer steps: about step^-3 more rotations


def test_beta_galactosidase_is_d2_symmetric_so_the_quotient_grid_loses_nothing():
    shp = shapes.particle_shape("beta-galactosidase")
    rot = _random_rotations(1, seed=3)[0]
    ref, _ = bench.render_template(shp, rot, 10.0)
    for g in D2[1:]:
        other, _ = bench.render_template(shp, rot @ g, 10.0)
        assert np.allclose(ref, other, atol=1e-4)
    turned, _ = bench.render_template(shp, rot @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), 10.0)
    assert not np.allclose(ref, turned, atol=1e-2)  # a 90° turn is not a symmetry: the check can fail


def test_thyroglobulin_is_not_d2_symmetric_so_it_is_matched_over_all_of_so3():
    shp = shapes.particle_shape("thyroglobulin")
    ref, _ = bench.render_template(shp, np.eye(3), 10.0)
    for g in D2[1:]:
        other, _ = bench.render_template(shp, g, 10.0)
        assert np.corrcoef(ref.ravel(), other.ravel())[0, 1] < 0.97
    rots = bench.class_rotations("thyroglobulin", 30.0)
    assert len(rots) == 4 * len(bench.class_rotations("beta-galactosidase", 30.0))
    trace = np.einsum("nij,mij->nm", _random_rotations(400, seed=1), rots)
    assert np.degrees(np.arccos(np.clip((trace - 1) / 2, -1, 1))).min(axis=1).max() < 30.0  # no symmetry assumed
    assert len(bench.class_rotations("apo-ferritin", 30.0)) == 1


def test_replay_gives_the_runs_truth_and_refuses_roots_it_cannot_replay(tmp_path):
    counts = {"thyroglobulin": 2, "apo-ferritin": 2}
    root = ensure_synthetic_dataset(
        "realistic", runs=1, shape=(32, 96, 96), seed=5, cache_dir=tmp_path, overrides={"counts": counts}
    )
    name = list_runs(root)[0]
    assert len(read_truth(root)) == 4  # particles to compare, so a wrong replay cannot pass as an empty one
    params, defocus, dose, density = bench.replay_run(root, name)
    assert density.shape == (32, 96, 96) and params.imaging == "fourier"
    assert params.defocus_um[0] <= defocus <= params.defocus_um[1] and dose > 0

    meta_path = root / "cryopoint_synthetic.json"
    meta = json.loads(meta_path.read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "cryopoint_synthetic.json").write_text(json.dumps({**meta, "seed": meta["seed"] + 1}))
    (copy / "train").symlink_to(root / "train")
    with pytest.raises(ValueError, match="another version of the simulator"):
        bench.replay_run(copy, name)
    (copy / "cryopoint_synthetic.json").write_text(json.dumps({**meta, "overrides": {"imaging": "realspace"}}))
    with pytest.raises(ValueError, match="only the Fourier path"):
        bench.replay_run(copy, name)


def test_the_matcher_finds_plain_particles_and_scores_them(tmp_path):
    counts = {"apo-ferritin": 4, "beta-galactosidase": 4}
    root = ensure_synthetic_dataset(
        "easy", runs=1, shape=(48, 128, 128), seed=11, cache_dir=tmp_path, overrides={"counts": counts}
    )
    name = list_runs(root)[0]
    truth = read_truth(root)
    classes = ["apo-ferritin", "beta-galactosidase"]
    peaks = bench.run_peaks(root, name, classes, step_deg=45.0)
    assert set(peaks.particle_type) == set(classes) and peaks.score.between(-1, 1).all()
    table = bench.per_class(truth, peaks)
    for c in classes:  # at SNR 8 with the exact templates every particle is found, ahead of the background
        assert table.loc[c, "n_true"] == counts[c]
        assert table.loc[c, "fbeta"] > 0.9, table


def test_compare_takes_the_better_column_per_matched_class_and_the_report_says_so(tmp_path):
    truth = pd.DataFrame(
        {
            "experiment": ["r"] * 4,
            "particle_type": ["apo-ferritin", "apo-ferritin", "thyroglobulin", "ribosome"],
            "x": [100.0, 900.0, 500.0, 1500.0],
            "y": [100.0] * 4,
            "z": [100.0] * 4,
        }
    )
    network = truth.iloc[[0, 1, 3]].assign(score=0.9)  # misses the thyroglobulin
    matcher = truth.iloc[[2]].assign(score=0.5)  # finds only the thyroglobulin
    result = bench.compare(truth, matcher, network, ["apo-ferritin", "thyroglobulin"])
    rows = result["classes"]
    assert rows["thyroglobulin"]["network"] == 0 and rows["thyroglobulin"]["matcher"] == 1
    assert rows["apo-ferritin"]["matcher"] == 0 and rows["ribosome"]["matcher"] is None
    w = {c: r["weight"] for c, r in rows.items()}
    assert result["network"] == pytest.approx((w["apo-ferritin"] + w["ribosome"]) / sum(w.values()))
    assert result["composite"] == pytest.approx(
        (w["apo-ferritin"] + w["ribosome"] + w["thyroglobulin"]) / sum(w.values())
    )
    rotations = {"apo-ferritin": 1, "thyroglobulin": 1872}
    meta = {"command": "c", "date": "d", "machine": "m", "root": "r", "runs": 1, "step": 20, "rotations": rotations}
    text = bench.write_report(result, {**meta, "model": "default"}, tmp_path / "t").read_text()
    assert "| thyroglobulin | 2 | 1 | 0.000 | 1.000 | 1.00 |" in text
    assert "| ribosome | 1 | 1 | 1.000 | not matched |  |" in text
    assert f"composite (each matched class at the higher of the two) {result['composite']:.3f}" in text
    assert "rotation grid 20° (apo-ferritin 1, thyroglobulin 1872)" in text
