"""Units and axis order (issue 16): OME-Zarr axes in nm / µm / x, y, z order, copick picks in pixels or of
another run. Every store and file here is written with plain zarr / json, as other tools write them."""

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import zarr
from _layout_helpers import write_picks_json, zarr_v2_array, zarr_v2_group

from cryopoint.coords import angstroms_per_unit
from cryopoint.errors import InvalidVolumeError, MissingDependencyError, PicksFormatError, VoxelSizeError
from cryopoint.io import read_copick_json, read_picks, read_tomogram, write_mrc
from cryopoint.io.axes import zyx_layout
from cryopoint.io.tomograms import tomogram_geometry
from cryopoint.io.zarr_store import ZARR_MAJOR

SHAPE = (6, 10, 14)  # z, y, x: all different, so a wrong axis order shows


@pytest.fixture
def volume(rng):
    return rng.standard_normal(SHAPE).astype(np.float32)


def _store(path, stored, axes, scales, zarr_format=2):
    """An OME-NGFF multiscales group holding ``stored`` as level 0 (and a strided level 1) with these axes."""
    if zarr_format == 2:  # with zarr 2 or 3
        group = zarr_v2_group(path)
    else:
        group = zarr.open_group(store=str(path), mode="w", zarr_format=zarr_format)
    datasets = []
    for level, scale in enumerate(scales):
        data = stored if level == 0 else stored[tuple(slice(None, None, 2) for _ in stored.shape)]
        if zarr_format == 2:
            zarr_v2_array(group, str(level), np.ascontiguousarray(data, dtype=np.float32))
        else:
            group.create_array(str(level), shape=data.shape, dtype="float32")[...] = data
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path


def _axes(names, unit="angstrom"):
    return [{"name": n, "type": "space", "unit": unit} for n in names]


@pytest.mark.parametrize(
    "unit, scale", [("nanometer", 1.0012444), ("micrometer", 1.0012444e-3), ("nm", 1.0012444), ("Å", 10.012444)]
)
def test_length_units_are_converted_to_angstrom(tmp_path, volume, unit, scale):
    path = _store(tmp_path / "t.zarr", volume, _axes("zyx", unit), [[scale] * 3, [2 * scale] * 3])
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == pytest.approx((10.012444,) * 3, rel=1e-9)
    assert read_tomogram(path, level=1).voxel_size == pytest.approx((20.024888,) * 3, rel=1e-9)
    shape, vs = tomogram_geometry(path)
    assert shape == SHAPE and vs == pytest.approx((10.012444,) * 3, rel=1e-9)


def test_axes_stored_x_y_z_are_transposed_with_their_voxel_sizes(tmp_path, volume):
    stored = np.ascontiguousarray(volume.transpose(2, 1, 0))  # (X, Y, Z) on disk
    path = _store(tmp_path / "xyz.zarr", stored, _axes("xyz", "nanometer"), [[0.5, 1.0, 2.0]])  # x, y, z in nm
    tomo = read_tomogram(path)
    assert tomo.shape == SHAPE and tomo.data.flags.c_contiguous
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == (20.0, 10.0, 5.0)  # z, y, x in Å
    assert tomogram_geometry(path) == (SHAPE, (20.0, 10.0, 5.0))
    # an explicit voxel size replaces the scale, but the order still comes from the axes
    assert read_tomogram(path, voxel_size=7.0).shape == SHAPE


@pytest.mark.parametrize(
    "zarr_format",
    [2, pytest.param(3, marks=pytest.mark.skipif(ZARR_MAJOR < 3, reason="zarr format 3 needs zarr 3 (main env)"))],
)
def test_length_one_time_and_channel_axes_are_dropped(tmp_path, volume, zarr_format):
    axes = [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"}, *_axes("zyx", "nm")]
    stored = volume[None, None]
    path = _store(tmp_path / "tczyx.zarr", stored, axes, [[1.0, 1.0, 3.0, 2.0, 1.0]], zarr_format=zarr_format)
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == (30.0, 20.0, 10.0)


def test_axes_that_cannot_be_read_are_refused_with_what_was_found(tmp_path, volume):
    path = _store(tmp_path / "px.zarr", volume, _axes("zyx", "pixel"), [[1.0] * 3])
    with pytest.raises(VoxelSizeError, match="axis 'z' has unit 'pixel'.*z \\(space, pixel\\).*voxel_size="):
        read_tomogram(path)
    assert read_tomogram(path, voxel_size=10.0).voxel_size == (10.0,) * 3  # explicit voxel size: units unused
    path = _store(tmp_path / "abc.zarr", volume, _axes("abc"), [[1.0] * 3])
    with pytest.raises(InvalidVolumeError, match="named z, y, x; the metadata's axes are a \\(space, angstrom\\)"):
        read_tomogram(path)
    axes = [{"name": "c", "type": "channel"}, *_axes("zyx")]
    path = _store(tmp_path / "c2.zarr", np.stack([volume, volume]), axes, [[1.0] * 4])
    with pytest.raises(InvalidVolumeError, match="axis 'c' \\(channel\\) has 2 entries"):
        read_tomogram(path)
    path = _store(tmp_path / "n.zarr", volume, _axes("yx"), [[1.0] * 2])
    with pytest.raises(InvalidVolumeError, match="lists 2 axes .* 3 dimensions"):
        read_tomogram(path)
    path = _store(tmp_path / "s.zarr", volume, _axes("zyx"), [[1.0] * 2])
    with pytest.raises(VoxelSizeError, match="has 2 values for 3 axes"):
        read_tomogram(path)


def test_zyx_layout_pure():
    layout = zyx_layout([{"name": "X"}, {"name": "z"}, {"name": "y"}], None, (4, 5, 6))  # names alone, no scale
    assert layout.transpose == (1, 2, 0) and layout.voxel_size is None and layout.shape((4, 5, 6)) == (5, 6, 4)
    stored = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    np.testing.assert_array_equal(layout.apply(stored), stored.transpose(1, 2, 0))
    mixed = [{"name": "z", "unit": "micrometer"}, {"name": "y", "unit": "nanometer"}, {"name": "x", "unit": "pm"}]
    assert zyx_layout(mixed, [1e-3, 1.0, 100.0], (4, 5, 6)).voxel_size == pytest.approx((10.0, 10.0, 1.0))
    with pytest.warns(UserWarning, match="axes z, y, x have no unit"):
        assert zyx_layout(None, [2.0, 3.0, 4.0], (4, 5, 6)).voxel_size == (2.0, 3.0, 4.0)


def test_angstroms_per_unit():
    cases = {"angstrom": 1.0, "ANGSTROM": 1.0, "\u212b": 1.0, "nanometre": 10.0, "µm": 1e4, "micron": 1e4, "m": 1e10}
    assert {u: angstroms_per_unit(u) for u in cases} == cases
    assert angstroms_per_unit("pixel") is None and angstroms_per_unit("second") is None


def test_geometry_of_mrc_matches_reading_it(tmp_path, volume):
    path = write_mrc(tmp_path / "t.mrc", volume, (3.0, 2.0, 1.0))
    tomo = read_tomogram(path)
    assert tomogram_geometry(path) == (tomo.shape, tomo.voxel_size) == (SHAPE, (3.0, 2.0, 1.0))
    with mrcfile.new(tmp_path / "zero.mrc") as mrc:
        mrc.set_data(volume)
    with pytest.raises(VoxelSizeError, match="unset"):
        tomogram_geometry(tmp_path / "zero.mrc")


@pytest.mark.skipif(ZARR_MAJOR >= 3, reason="checks zarr 2 behaviour; CI's copick step has zarr 2")
def test_geometry_of_a_format_3_store_under_zarr_2_says_what_to_install(tmp_path):
    store = tmp_path / "v3.zarr"  # a format 3 store someone else wrote
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(MissingDependencyError, match=r"v3\.zarr is zarr format 3.*zarr>=3"):
        tomogram_geometry(store)


def test_geometry_reads_no_voxels(tmp_path, volume, monkeypatch):
    from cryopoint.io.axes import AxesLayout

    path = _store(tmp_path / "t.zarr", volume, _axes("xyz"), [[1.0, 2.0, 3.0]])
    monkeypatch.setattr(AxesLayout, "apply", lambda self, array: pytest.fail("geometry read the voxels"))
    assert tomogram_geometry(path) == ((14, 10, 6), (3.0, 2.0, 1.0))


# --- copick picks files ----------------------------------------------------------------------------------------


def _edit(path, **fields):
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))
    return path


def test_copick_picks_in_pixels_are_converted_or_refused(tmp_path):
    path = write_picks_json(tmp_path / "p.json", "TS_1", "ribosome", [(10.0, 20.0, 3.0)])
    _edit(path, unit="pixel", voxel_spacing=10.0)
    _, table = read_copick_json(path)
    assert table[["x", "y", "z"]].to_numpy().tolist() == [[100.0, 200.0, 30.0]]
    _edit(path, voxel_spacing=None)
    with pytest.raises(PicksFormatError, match="unit 'pixel' .* no \"voxel_spacing\".*voxel_size="):
        read_copick_json(path)
    _, table = read_copick_json(path, voxel_size=(4.0, 2.0, 1.0))  # z, y, x
    assert table[["x", "y", "z"]].to_numpy().tolist() == [[10.0, 40.0, 12.0]]
    _edit(path, unit="nanometer")
    assert read_copick_json(path)[1][["x", "y", "z"]].to_numpy().tolist() == [[100.0, 200.0, 30.0]]
    _edit(path, unit="furlong")
    with pytest.raises(PicksFormatError, match="unit 'furlong'"):
        read_copick_json(path)
    doc = json.loads(path.read_text())
    del doc["unit"]  # copick's default unit is angstrom
    path.write_text(json.dumps(doc))
    assert read_copick_json(path)[1][["x", "y", "z"]].to_numpy().tolist() == [[10.0, 20.0, 3.0]]


def test_picks_of_another_run_in_a_run_folder_are_refused(tmp_path):
    picks = tmp_path / "train" / "overlay" / "ExperimentRuns" / "TS_5_4" / "Picks"
    write_picks_json(picks / "ribosome.json", "TS_5_4", "ribosome", [(1.0, 2.0, 3.0)])
    write_picks_json(picks / "apo-ferritin.json", "TS_6_4", "apo-ferritin", [(4.0, 5.0, 6.0)])
    with pytest.raises(PicksFormatError, match="lies in run 'TS_5_4'.* run_name 'TS_6_4'.*copied between runs"):
        read_picks(tmp_path, "TS_5_4")
    _edit(picks / "apo-ferritin.json", run_name="TS_5_4")
    table = read_picks(tmp_path, "TS_5_4")
    assert isinstance(table, pd.DataFrame) and sorted(table.particle_type) == ["apo-ferritin", "ribosome"]
    _, alone = read_copick_json(picks / "ribosome.json")  # no run given: the file's own run_name
    assert alone.experiment.tolist() == ["TS_5_4"]
