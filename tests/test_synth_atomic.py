"""Particles from atomic models: mmCIF reading, contrast maps, the map shape and the simulator's particle_maps."""

import numpy as np
import pytest

from cryopoint.errors import ConfigError, DataNotFoundError
from cryopoint.synth import get_preset
from cryopoint.synth.atomic import (
    MapShape,
    contrast_map,
    load_particle_map,
    read_mmcif_atoms,
    save_particle_map,
)
from cryopoint.synth.sample import draw_slab, place_objects, render_density

CIF = """data_TEST
#
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_comp_id
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.pdbx_PDB_model_num
ATOM 1 C ALA 1.0 2.0 3.0 1
ATOM 2 N ALA 4.0 5.0 6.0 1
ATOM 3 H ALA 4.5 5.0 6.0 1
HETATM 4 O HOH 9.0 9.0 9.0 1
ATOM 5 P U 7.0 8.0 9.5 1
ATOM 6 C ALA 1.0 2.0 3.0 2
#
"""


def test_mmcif_atoms_of_the_first_model_without_hydrogens_and_waters(tmp_path):
    path = tmp_path / "model.cif"
    path.write_text(CIF)
    symbols, xyz = read_mmcif_atoms(path)
    assert list(symbols) == ["C", "N", "P"]
    np.testing.assert_array_equal(xyz, [[1, 2, 3], [4, 5, 6], [7, 8, 9.5]])
    (tmp_path / "bad.cif").write_text("data_X\n_cell.length_a 10\n")
    with pytest.raises(ConfigError, match="_atom_site"):
        read_mmcif_atoms(tmp_path / "bad.cif")
    with pytest.raises(DataNotFoundError):
        read_mmcif_atoms(tmp_path / "missing.cif")


def _lattice(step: float, size: float, rng, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Atoms filling a ball of radius ``size`` Å at one atom per ``step**3`` Å³ (jittered)."""
    g = np.arange(-size, size + step, step)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    pts = pts[np.linalg.norm(pts, axis=1) <= size]
    return pts + rng.uniform(-step / 2, step / 2, pts.shape) + np.asarray(centre)


def _protein_like(n: int, rng) -> np.ndarray:
    """Elements in protein's proportions (by heavy atom)."""
    return rng.choice(["C", "N", "O", "S"], size=n, p=[0.63, 0.17, 0.19, 0.01])


def test_a_ball_of_protein_packing_has_protein_contrast_and_rna_packing_is_darker(rng):
    # 17.4 Å³ per heavy atom is protein's packing: inside the ball the contrast comes out near 1 (protein).
    protein = _lattice(17.4 ** (1 / 3), 40.0, rng)
    m = contrast_map(_protein_like(len(protein), rng), protein, spacing=5.0)
    c = np.array(m.shape) // 2
    assert all(n % 2 == 1 for n in m.shape)
    core = m[c[0] - 3 : c[0] + 4, c[1] - 3 : c[1] + 4, c[2] - 3 : c[2] + 4]
    assert 0.8 < core.mean() < 1.4, core.mean()
    assert m[0].max() < 0.01 and m[:, 0].max() < 0.01, "the map holds the whole particle"
    # the ball was centred on its atoms: the map's centre of mass is its centre voxel
    com = np.array(np.unravel_index(np.arange(m.size), m.shape)) @ m.ravel() / m.sum()
    np.testing.assert_allclose(com, c, atol=0.5)
    # RNA: phosphorus-rich, packed tighter: darker than protein, as atomic-model simulators make it
    rna = _lattice(14.4 ** (1 / 3), 40.0, rng)
    dark = contrast_map(rng.choice(["C", "N", "O", "P"], size=len(rna), p=[0.45, 0.18, 0.32, 0.05]), rna)
    assert dark[tuple(c)] > 1.4 * core.mean()


def test_map_shape_renders_the_map_at_any_rotation_and_knows_its_radius(rng):
    protein = _lattice(17.4 ** (1 / 3), 50.0, rng, centre=(20.0, 0.0, 0.0))
    density = contrast_map(_protein_like(len(protein), rng), protein)
    shape = MapShape(density, 5.0, label="ribosome")
    assert 50.0 <= shape.radius <= 65.0, "a 50 Å ball plus its blurred edge"
    zero = np.zeros(1, np.float32)
    centre = float(shape((zero, zero, zero))[0])
    assert centre == pytest.approx(float(density[tuple(np.array(density.shape) // 2)]), rel=1e-5)
    far = np.full(1, 200.0, np.float32)
    assert float(shape((far, zero, zero))[0]) == 0.0


def test_particle_map_files_round_trip_and_bad_ones_are_refused(tmp_path):
    density = np.random.default_rng(0).random((5, 7, 9)).astype(np.float32)
    path = save_particle_map(tmp_path / "m.npz", density, 4.0, source="test")
    loaded, spacing = load_particle_map(path)
    np.testing.assert_allclose(loaded, density, atol=1e-3)
    assert spacing == 4.0
    np.savez(tmp_path / "bad.npz", other=np.zeros(3))
    with pytest.raises(ConfigError, match="not a particle map"):
        load_particle_map(tmp_path / "bad.npz")
    with pytest.raises(DataNotFoundError, match="save_particle_map"):
        load_particle_map(tmp_path / "none.npz")


def test_the_simulator_draws_a_class_from_its_map(tmp_path):
    density = np.zeros((21, 21, 21), np.float32)
    density[5:16, 5:16, 5:16] = 3.0  # an 11-voxel cube of 5 Å voxels, three times protein's contrast
    save_particle_map(tmp_path / "cube.npz", density, 5.0)
    params = get_preset("easy", counts={"ribosome": 2}, particle_maps={"ribosome": str(tmp_path / "cube.npz")})
    shape = (48, 128, 128)
    rng = np.random.default_rng(1)
    slab = draw_slab(shape, params, rng)
    objects = place_objects(shape, params, rng, slab)
    ribosomes = [o for o in objects if o.shape.label == "ribosome"]
    assert len(ribosomes) == 2 and all(isinstance(o.shape, MapShape) for o in ribosomes)
    vol = render_density(shape, objects, slab, params)
    for obj in ribosomes:
        x, y, z = np.round(np.asarray(obj.center) / params.voxel_size).astype(int)
        assert vol[z, y, x] == pytest.approx(3.0, abs=0.05), "the map's value, not the analytic ribosome's"
    with pytest.raises(ConfigError, match="particle_maps has unknown"):
        get_preset("easy", particle_maps={"ribosomes": "x.npz"})
