import numpy as np
import pytest

from cryopoint.coords import angstrom_to_voxel, as_voxel_size, voxel_to_angstrom
from cryopoint.errors import InvalidVolumeError, OutputExistsError, UnknownParticleError, VoxelSizeError
from cryopoint.io.atomic import atomic_dir, atomic_path, atomic_write_text
from cryopoint.particles import NUM_CLASSES, PARTICLE_NAMES, PARTICLES, get_particle, total_weight
from cryopoint.tomogram import Tomogram, check_volume


def test_catalogue_matches_challenge():
    table = {p.name: (p.radius, p.weight) for p in PARTICLES}
    assert table == {
        "apo-ferritin": (60, 1),
        "beta-amylase": (65, 0),
        "beta-galactosidase": (90, 2),
        "ribosome": (150, 1),
        "thyroglobulin": (130, 2),
        "virus-like-particle": (135, 1),
    }
    assert [p.label for p in PARTICLES] == list(range(NUM_CLASSES))
    assert total_weight() == 7
    assert get_particle("thyroglobulin").match_distance == 65


def test_unknown_particle_lists_valid_names():
    with pytest.raises(UnknownParticleError) as err:
        get_particle("ferritin")
    for name in PARTICLE_NAMES:
        assert name in str(err.value)


def test_voxel_angstrom_round_trip_and_axis_order(rng):
    zyx = rng.uniform(0, 600, size=(50, 3))
    vs = (10.5, 10.012444, 9.0)
    xyz = voxel_to_angstrom(zyx, vs)
    np.testing.assert_allclose(xyz[:, 0], zyx[:, 2] * 9.0)  # x <-> axis 2
    np.testing.assert_allclose(xyz[:, 2], zyx[:, 0] * 10.5)  # z <-> axis 0
    np.testing.assert_allclose(angstrom_to_voxel(xyz, vs), zyx)
    # voxel 0's centre is at 0 Å: no half-voxel offset
    np.testing.assert_allclose(voxel_to_angstrom(np.zeros((1, 3)), 10.012444), 0.0)


@pytest.mark.parametrize("bad", [None, 0, -1, float("nan"), (1, 2)])
def test_bad_voxel_size(bad):
    with pytest.raises(VoxelSizeError):
        as_voxel_size(bad)


def test_check_volume_errors():
    with pytest.raises(InvalidVolumeError, match="3-D"):
        check_volume(np.zeros((4, 4)))
    vol = np.zeros((3, 4, 5), np.float32)
    vol[1, 2, 3] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN/Inf"):
        check_volume(vol)
    with pytest.raises(InvalidVolumeError, match="empty"):
        check_volume(np.zeros((0, 4, 4)))


def test_tomogram_value(tmp_path):
    t = Tomogram(np.zeros((2, 3, 4), np.float32), 10.0, path=tmp_path / "TS_1.zarr")
    assert t.voxel_size == (10.0, 10.0, 10.0)
    assert t.name == "TS_1"
    assert t.extent == (20.0, 30.0, 40.0)


def test_atomic_writes_never_leave_partial_files(tmp_path):
    target = tmp_path / "out.csv"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with pytest.raises(OutputExistsError):
        atomic_write_text(target, "new", overwrite=False)


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "store.zarr"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, overwrite=True) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with pytest.raises(OutputExistsError):
        with atomic_dir(target):
            pass
