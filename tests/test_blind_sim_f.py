"""Source F (benchmarks/blind_sim_f.py), the third blind simulator: its runs read as CZII data in cryopoint's frame."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import blind_sim_f
from cryopoint.io import list_runs, read_tomogram, read_truth, tomogram_path
from cryopoint.particles import PARTICLE_NAMES, PARTICLES

SHAPE = (48, 160, 160)
VOXEL = 10.012444


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("f")
    blind_sim_f.main(["--out", str(out), "--runs", "3", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE)])
    return out


def test_runs_read_as_czii_data_and_resume(root):
    assert sorted(list_runs(root)) == ["TS_F_1", "TS_F_2", "TS_F_3"]
    tomo = read_tomogram(tomogram_path(root, "TS_F_1"))
    assert tomo.shape == SHAPE and tomo.voxel_size == pytest.approx((VOXEL,) * 3)
    truth = read_truth(root)
    assert set(truth.particle_type) <= set(PARTICLE_NAMES) and len(truth) >= 10
    xyz = truth[["x", "y", "z"]].to_numpy()
    assert (xyz >= 0).all() and (xyz < np.array(SHAPE[::-1]) * VOXEL).all()
    before = tomogram_path(root, "TS_F_2").stat().st_mtime_ns
    blind_sim_f.main(["--out", str(root), "--runs", "3", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE)])
    assert tomogram_path(root, "TS_F_2").stat().st_mtime_ns == before  # complete runs are skipped


def test_labels_sit_on_dark_density(root):
    """Protein is darker than the ice within 0.6 radius of the labelled centres, read in cryopoint's frame (x, y, z
    in Å -> axes 2, 1, 0), and not at the same points moved 30 voxels in x. A ball rather than the centre voxels:
    F models apo-ferritin, the capsid and beta-galactosidase with hollow cores, so their centres read as ice."""
    radius = {p.name: p.radius for p in PARTICLES}
    at, off = [], []
    for run, group in read_truth(root).groupby("experiment"):
        vol = np.asarray(read_tomogram(tomogram_path(root, run)).data, dtype=np.float64)
        vol = (vol - vol.mean()) / vol.std()
        grid = np.indices(SHAPE)
        for shift, acc in ((0, at), (30, off)):
            for particle, (z, y, x) in zip(group.particle_type, group[["z", "y", "x"]].to_numpy() / VOXEL):
                x = (x + shift) % SHAPE[2]
                d2 = (grid[0] - z) ** 2 + (grid[1] - y) ** 2 + (grid[2] - x) ** 2
                acc.append(vol[d2 <= (0.6 * radius[particle] / VOXEL) ** 2].mean())
    assert np.mean(at) < -0.3 and np.mean(at) < np.mean(off) - 0.3


def test_simulator_imports_nothing_of_ours():
    source = Path(blind_sim_f.__file__).read_text()
    assert not re.search(r"^\s*(from|import)\s+(cryopoint|benchmarks)\b", source, re.MULTILINE)
    assert re.search(r"^import numpy as np$", source, re.MULTILINE)
