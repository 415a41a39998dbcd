"""The blind simulators E, F, G and H (benchmarks/blind_sim_e.py ... blind_sim_h.py; E and F may be trained on, G and H
are for evaluation only): their runs read as CZII data in cryopoint's frame, resume, carry labels on dark density, and
import nothing of ours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import blind_sim_e, blind_sim_f, blind_sim_g, blind_sim_h
from cryopoint.io import list_runs, read_tomogram, read_truth, tomogram_path
from cryopoint.particles import PARTICLE_NAMES, PARTICLES

SHAPE = (48, 160, 160)
VOXEL = 10.012444
#: name -> (module, run prefix, command line for 3 runs of SHAPE at seed 3)
SIMULATORS = {
    "E": (blind_sim_e, "TS_E_", ["--runs", "3", "--seed", "3", "--shape", *map(str, SHAPE)]),
    "F": (blind_sim_f, "TS_F_", ["--runs", "3", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE)]),
    "G": (blind_sim_g, "TS_G_", ["--runs", "3", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE)]),
    "H": (blind_sim_h, "TS_H_", ["--runs", "3", "--seed", "3", "--first", "1", "--shape", *map(str, SHAPE)]),
}


@pytest.fixture(scope="module", params=sorted(SIMULATORS))
def sim(request, tmp_path_factory):
    """(name, module, run prefix, command line, data root with its 3 runs)."""
    module, prefix, args = SIMULATORS[request.param]
    out = tmp_path_factory.mktemp(request.param.lower())
    module.main(["--out", str(out), *args])
    return request.param, module, prefix, args, out


def test_runs_read_as_czii_data_and_resume(sim):
    _, module, prefix, args, root = sim
    assert sorted(list_runs(root)) == [f"{prefix}{k}" for k in (1, 2, 3)]
    tomo = read_tomogram(tomogram_path(root, f"{prefix}1"))
    assert tomo.shape == SHAPE and tomo.voxel_size == pytest.approx((VOXEL,) * 3)
    truth = read_truth(root)
    assert set(truth.particle_type) <= set(PARTICLE_NAMES) and len(truth) >= 10
    xyz = truth[["x", "y", "z"]].to_numpy()
    assert (xyz >= 0).all() and (xyz < np.array(SHAPE[::-1]) * VOXEL).all()
    before = tomogram_path(root, f"{prefix}2").stat().st_mtime_ns
    module.main(["--out", str(root), *args])
    assert tomogram_path(root, f"{prefix}2").stat().st_mtime_ns == before  # complete runs are skipped


def _normalised(root: Path, run: str) -> np.ndarray:
    vol = np.asarray(read_tomogram(tomogram_path(root, run)).data, dtype=np.float64)
    return (vol - vol.mean()) / vol.std()


def test_labels_sit_on_dark_density(sim):
    """Protein is darker than the ice at the labelled centres, read in cryopoint's frame (x, y, z in Å -> axes 2, 1,
    0), and not at the same points moved 30 voxels in x. E: the 3 x 3 x 3 voxels at each centre. F, G and H: a ball of
    0.6 radius, because they model apo-ferritin, the capsid and beta-galactosidase with hollow cores whose centres
    read as ice."""
    name, _, _, _, root = sim
    radius = {p.name: p.radius for p in PARTICLES}
    grid = np.indices(SHAPE)
    at, off = [], []
    for run, group in read_truth(root).groupby("experiment"):
        vol = _normalised(root, run)
        for shift, acc in ((0, at), (30, off)):
            for particle, (z, y, x) in zip(group.particle_type, group[["z", "y", "x"]].to_numpy() / VOXEL):
                if name == "E":
                    z, y, x = np.round((z, y, x)).astype(int)
                    x = (x + shift) % SHAPE[2]
                    acc.append(vol[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].mean())
                else:
                    x = (x + shift) % SHAPE[2]
                    d2 = (grid[0] - z) ** 2 + (grid[1] - y) ** 2 + (grid[2] - x) ** 2
                    acc.append(vol[d2 <= (0.6 * radius[particle] / VOXEL) ** 2].mean())
    assert np.mean(at) < -0.3 and np.mean(at) < np.mean(off) - 0.3


@pytest.mark.parametrize("module", [blind_sim_e, blind_sim_f, blind_sim_g, blind_sim_h], ids=["E", "F", "G", "H"])
def test_simulator_imports_nothing_of_ours(module):
    source = Path(module.__file__).read_text()
    assert not re.search(r"^\s*(from|import)\s+(cryopoint|benchmarks)\b", source, re.MULTILINE)
    assert re.search(r"^import numpy as np$", source, re.MULTILINE)
