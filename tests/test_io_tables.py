"""Submission CSV and RELION 4/5 STAR: round trips, the exact coordinate conventions, bad input."""

import numpy as np
import pandas as pd
import pytest
import starfile

from cryopoint.errors import (
    DataNotFoundError,
    OutputExistsError,
    PicksFormatError,
    PointsOutsideVolumeError,
    PointsOutsideVolumeWarning,
    UnknownParticleError,
    VoxelSizeError,
)
from cryopoint.io import check_points_in_volume, read_star, read_submission_csv, write_star, write_submission_csv
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.tomogram import Tomogram

VS = 10.012444
SHAPE = (16, 32, 32)


@pytest.fixture
def picks(rng):
    n = 12
    zyx = rng.uniform(0, np.asarray(SHAPE) - 1, size=(n, 3)) * VS
    return pd.DataFrame(
        {
            "experiment": ["TS_5_4"] * 6 + ["TS_69_2"] * 6,
            "particle_type": [PARTICLE_NAMES[i % 6] for i in range(n)],
            "x": zyx[:, 2],
            "y": zyx[:, 1],
            "z": zyx[:, 0],
            "score": rng.uniform(size=n),
        }
    )


def test_submission_round_trip(tmp_path, picks):
    path = write_submission_csv(tmp_path / "submission.csv", picks)
    assert path.read_text().splitlines()[0] == "id,experiment,particle_type,x,y,z"
    back = read_submission_csv(path)
    pd.testing.assert_frame_equal(back, picks.drop(columns="score"), check_exact=True)
    with pytest.raises(OutputExistsError):
        write_submission_csv(path, picks)


def test_submission_bad_input(tmp_path, picks):
    with pytest.raises(UnknownParticleError, match="apo-ferritin"):
        write_submission_csv(tmp_path / "a.csv", picks.assign(particle_type="proteasome"))
    with pytest.raises(PicksFormatError, match="experiment"):
        write_submission_csv(tmp_path / "a.csv", picks.drop(columns="experiment"))
    assert not (tmp_path / "a.csv").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,experiment,particle_type,x,y\n0,TS_5_4,ribosome,1,2\n")
    with pytest.raises(PicksFormatError, match="lacks column"):
        read_submission_csv(bad)
    bad.write_text("id,experiment,particle_type,x,y,z\n0,TS_5_4,ribosome,1,2,oops\n")
    with pytest.raises(PicksFormatError, match="numbers"):
        read_submission_csv(bad)
    bad.write_text("id,experiment,particle_type,x,y,z\n0,TS_5_4,ribosome,1,2,nan\n")
    with pytest.raises(PicksFormatError, match="NaN"):
        read_submission_csv(bad)
    with pytest.raises(DataNotFoundError, match="id,experiment"):
        read_submission_csv(tmp_path / "absent.csv")


@pytest.mark.parametrize("version", [4, 5])
def test_star_round_trip(tmp_path, picks, version):
    shapes = {"TS_5_4": SHAPE, "TS_69_2": (20, 30, 40)}
    path = write_star(tmp_path / "p.star", picks, version=version, voxel_size=VS, shape=shapes)
    back = read_star(path, voxel_size=VS, shape=shapes)
    pd.testing.assert_frame_equal(back, picks, check_exact=False, rtol=0, atol=1e-5)


def test_star_conventions_exactly(tmp_path):
    # voxel (z, y, x) = (3, 4, 5) at voxel size (z, y, x) = (4, 3, 2) Å in a (10, 20, 30) tomogram
    one = pd.DataFrame({"experiment": ["r"], "particle_type": ["ribosome"], "x": [10.0], "y": [12.0], "z": [12.0]})
    vs, shape = (4.0, 3.0, 2.0), (10, 20, 30)
    iso = starfile.read(write_star(tmp_path / "iso.star", one, 4, voxel_size=2.0))
    assert iso["particles"][["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy().tolist() == [
        [5.0, 6.0, 6.0]  # voxel indices
    ]
    assert iso["particles"]["rlnTomoName"].tolist() == ["r"] and iso["particles"]["rlnClassNumber"].tolist() == [4]
    # RELION 4 pixels have one size: anisotropic voxels are written in pixels of the smallest, and it is stated
    v4 = starfile.read(write_star(tmp_path / "4.star", one, 4, voxel_size=vs))
    assert v4["particles"][["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy().tolist() == [
        [5.0, 6.0, 6.0]
    ]
    assert v4["optics"]["rlnTomoTiltSeriesPixelSize"].tolist() == [2.0]
    v5 = starfile.read(write_star(tmp_path / "5.star", one, 5, voxel_size=vs, shape=shape))
    cols = ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]
    # centre = size / 2 x pixel size = (15 x 2, 10 x 3, 5 x 4) = (30, 30, 20) Å
    assert v5[cols].to_numpy().tolist() == [[-20.0, -18.0, -8.0]]


def test_star_bad_input(tmp_path, picks):
    with pytest.raises(VoxelSizeError):
        write_star(tmp_path / "a.star", picks, 4)
    with pytest.raises(PicksFormatError, match="shape"):
        write_star(tmp_path / "a.star", picks, 5, voxel_size=VS)
    with pytest.raises(PicksFormatError, match="TS_69_2"):
        write_star(tmp_path / "a.star", picks, 5, voxel_size=VS, shape={"TS_5_4": SHAPE})
    assert not (tmp_path / "a.star").exists()
    path = write_star(tmp_path / "p.star", picks, 4, voxel_size=VS)
    block = starfile.read(path)["particles"]  # rewritten below without its optics block: voxel_size= is needed
    starfile.write(block.assign(rlnClassNumber=9), tmp_path / "c.star")
    with pytest.raises(UnknownParticleError, match="1=apo-ferritin"):
        read_star(tmp_path / "c.star", voxel_size=VS)
    starfile.write(block.drop(columns="rlnClassNumber"), tmp_path / "n.star")
    with pytest.raises(PicksFormatError, match="particle_type="):
        read_star(tmp_path / "n.star", voxel_size=VS)
    assert set(read_star(tmp_path / "n.star", voxel_size=VS, particle_type="ribosome").particle_type) == {"ribosome"}
    starfile.write(block.drop(columns="rlnCoordinateZ"), tmp_path / "z.star")
    with pytest.raises(PicksFormatError, match="RELION 4"):
        read_star(tmp_path / "z.star", voxel_size=VS)
    with pytest.raises(DataNotFoundError):
        read_star(tmp_path / "absent.star", voxel_size=VS)


def test_star4_states_the_pixel_size_of_its_coordinates(tmp_path, picks):
    vs = {"TS_5_4": VS, "TS_69_2": 7.5}
    path = write_star(tmp_path / "p.star", picks, 4, voxel_size=vs)
    blocks = starfile.read(path, always_dict=True)
    optics, particles = blocks["optics"], blocks["particles"]
    assert optics[["rlnOpticsGroupName", "rlnTomoTiltSeriesPixelSize"]].values.tolist() == [
        ["TS_5_4", pytest.approx(VS)],
        ["TS_69_2", 7.5],
    ]
    assert particles["rlnOpticsGroup"].tolist() == [1] * 6 + [2] * 6
    # the file says what its pixels are: no voxel size needed, and a wrong one does not change the result
    for given in (None, 1.0):
        back = read_star(path, voxel_size=given)
        pd.testing.assert_frame_equal(back, picks, check_exact=False, rtol=0, atol=1e-5)


def test_star4_pixel_size_is_what_copicks_converter_reads(tmp_path, picks):
    formats = pytest.importorskip("copick.util.formats", reason="copick is in CI's copick step, not the main env")
    blocks = starfile.read(write_star(tmp_path / "p.star", picks, 4, voxel_size=VS), always_dict=True)
    # voxel_spacing=None: copick would raise rather than guess if the file stated no pixel size
    angstrom = formats.relion_coordinates_to_angstrom(blocks["particles"], optics=blocks["optics"], voxel_spacing=None)
    np.testing.assert_allclose(angstrom, picks[["x", "y", "z"]].to_numpy(), rtol=0, atol=1e-4)


def test_points_outside_volume(picks):
    tomo = Tomogram(np.zeros(SHAPE, np.float32), VS, name="TS_5_4")
    assert check_points_in_volume(picks, tomo) is picks
    edge = picks.iloc[:1].assign(x=(SHAPE[2] - 0.5) * VS, z=-0.5 * VS)  # exactly on the outer voxel faces
    assert len(check_points_in_volume(edge, tomo)) == 1
    outside = pd.concat([picks, picks.iloc[:2].assign(z=SHAPE[0] * VS), picks.iloc[:1].assign(x=-6.0)])
    with pytest.raises(PointsOutsideVolumeError, match="3 of 15 picks"):
        check_points_in_volume(outside, tomo)
    with pytest.warns(PointsOutsideVolumeWarning, match="Dropping"):
        kept = check_points_in_volume(outside, tomo, on_outside="drop")
    pd.testing.assert_frame_equal(kept, picks)


def test_writers_refuse_their_inputs(tmp_path, picks):
    src = write_submission_csv(tmp_path / "in.csv", picks)
    with pytest.raises(OutputExistsError, match="input"):
        write_submission_csv(src, picks, overwrite=True, inputs=[src])
    star = write_star(tmp_path / "in.star", picks, 4, voxel_size=VS)
    with pytest.raises(OutputExistsError, match="input"):
        write_star(star, picks, 4, voxel_size=VS, overwrite=True, inputs=[star])


def test_check_picks_table_rejects_non_numeric_coordinates():
    from cryopoint.io import check_picks_table

    bad = pd.DataFrame({"experiment": ["TS_1"], "particle_type": ["ribosome"], "x": ["12 Å"], "y": [1.0], "z": [2.0]})
    with pytest.raises(PicksFormatError, match="must be numbers"):
        check_picks_table(bad)
