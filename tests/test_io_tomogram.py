"""Tomogram readers and writers: OME-Zarr v2/v3, MRC, voxel sizes, bad volumes, input protection."""

import json
import os
import stat

import mrcfile
import numpy as np
import pytest
import zarr

from cryopoint.errors import DataNotFoundError, InvalidVolumeError, OutputExistsError, VoxelSizeError
from cryopoint.io import read_tomogram, write_mrc, write_ome_zarr
from cryopoint.io.zarr_store import ZARR_MAJOR, downsample2x

SHAPE = (16, 32, 32)

# these build their fixtures with zarr 3's API or write zarr format 3; test_io_zarr_versions.py covers zarr 2
zarr3_api = pytest.mark.skipif(ZARR_MAJOR < 3, reason="uses zarr 3's API; zarr 2 is covered in test_io_zarr_versions")


@pytest.fixture
def volume(rng):
    return rng.standard_normal(SHAPE).astype(np.float32)


def test_ome_zarr_v2_round_trip_matches_challenge_layout(tmp_path, volume):
    path = write_ome_zarr(tmp_path / "denoised.zarr", volume, 10.012444, chunks=(8, 16, 16))
    assert {p.name for p in path.iterdir()} == {".zgroup", ".zattrs", "0", "1", "2"}
    zarray = json.loads((path / "0" / ".zarray").read_text())
    assert zarray["compressor"]["id"] == "blosc" and zarray["chunks"] == [8, 16, 16] and zarray["dtype"] == "<f4"
    ms = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"] and ms["axes"][0]["unit"] == "angstrom"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[10.012444 * 2**i] * 3 for i in range(3)]
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == (10.012444,) * 3
    level2 = read_tomogram(path, level=2)
    np.testing.assert_allclose(level2.data, downsample2x(downsample2x(volume)), rtol=1e-6)
    assert level2.shape == (4, 8, 8)


@zarr3_api
def test_ome_zarr_v3_round_trip_and_plain_v3_store(tmp_path, volume):
    path = write_ome_zarr(tmp_path / "t.zarr", volume, (5.0, 4.0, 3.0), zarr_format=3, levels=2)
    assert (path / "zarr.json").is_file() and not (path / ".zgroup").exists()
    tomo = read_tomogram(path, level=1)
    assert tomo.voxel_size == (10.0, 8.0, 6.0) and tomo.shape == (8, 16, 16)
    np.testing.assert_array_equal(read_tomogram(path).data, volume)
    # a v3 store written directly with zarr, OME-NGFF 0.4 style attributes at the top level
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    group.create_array("0", shape=SHAPE, dtype="float32")[...] = volume
    group.attrs["multiscales"] = [
        {
            "axes": [{"name": "z"}, {"name": "y"}, {"name": "x"}],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [3.0, 2.0, 1.0]}]}],
        }
    ]
    with pytest.warns(UserWarning, match="axes z, y, x have no unit; their scale is read as Å"):
        assert read_tomogram(tmp_path / "plain.zarr").voxel_size == (3.0, 2.0, 1.0)


def test_downsample_odd_sizes_and_centred_smoothing():
    data = np.arange(5 * 7 * 9, dtype=np.float32).reshape(5, 7, 9)
    out = downsample2x(data)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    # a linear ramp is reproduced exactly on the even voxels: output j sits on input 2j, no half-voxel shift
    np.testing.assert_allclose(out[1:-1, 1:-1, 1:-1], data[2:-2:2, 2:-2:2, 2:-2:2], rtol=1e-6)
    # edges repeat the outermost voxel: a constant stays constant whatever the (odd or even) size
    np.testing.assert_allclose(downsample2x(np.full((1, 2, 3), 7.0, np.float32)), np.full((1, 1, 2), 7.0))


def test_pyramid_levels_keep_the_angstrom_frame_of_level_0(tmp_path):
    """A blob at a known Å position is found at the same Å position on levels 1 and 2 (index x level voxel size)."""
    vs = 10.012444
    centre = np.array([21.0, 26.0, 37.0])  # level-0 voxels (z, y, x)
    grid = np.indices((48, 64, 80), dtype=np.float32)
    blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) / (2 * 3.0**2)).astype(np.float32)
    store = write_ome_zarr(tmp_path / "blob.zarr", blob, vs)
    for level in (1, 2):
        tomo = read_tomogram(store, level=level)
        weights = tomo.data / tomo.data.sum()
        found = np.array([(np.indices(tomo.shape)[a] * weights).sum() for a in range(3)])  # centroid, level voxels
        found_angstrom = found * np.asarray(tomo.voxel_size)
        np.testing.assert_allclose(found_angstrom, centre * vs, atol=0.5)  # a block mean is 5 / 15 Å off


@zarr3_api
def test_zarr_without_voxel_size_needs_one(tmp_path, volume):
    group = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=SHAPE, dtype="float32")[...] = volume
    with pytest.raises(VoxelSizeError, match="voxel_size="):
        read_tomogram(tmp_path / "bare.zarr")
    assert read_tomogram(tmp_path / "bare.zarr", voxel_size=12.0).voxel_size == (12.0,) * 3


def test_mrc_round_trip_and_memory_map(tmp_path, volume):
    path = write_mrc(tmp_path / "t.mrc", volume, (7.0, 6.0, 5.0))
    with mrcfile.open(path) as mrc:
        assert (mrc.voxel_size.x, mrc.voxel_size.y, mrc.voxel_size.z) == (5.0, 6.0, 7.0)
    tomo = read_tomogram(path)
    assert isinstance(tomo.data, np.memmap) and tomo.data.dtype == np.float32
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == (7.0, 6.0, 5.0) and tomo.name == "t"
    rec = tmp_path / "t.rec"
    rec.write_bytes(path.read_bytes())
    assert read_tomogram(rec).shape == SHAPE


def test_mrc_int16_is_converted_and_zero_voxel_size_refused(tmp_path, volume):
    path = tmp_path / "int.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data((volume * 100).astype(np.int16))
    with pytest.raises(VoxelSizeError, match="voxel_size="):
        read_tomogram(path)
    tomo = read_tomogram(path, voxel_size=10.0)
    assert tomo.data.dtype == np.float32 and tomo.voxel_size == (10.0,) * 3


@zarr3_api
def test_bad_volumes(tmp_path, volume):
    with pytest.raises(InvalidVolumeError, match="3-D"):
        write_ome_zarr(tmp_path / "a.zarr", volume[0], 10.0)
    bad = volume.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN/Inf"):
        write_mrc(tmp_path / "a.mrc", bad, 10.0)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "a.mrc").exists()
    # files written by other tools with NaN/Inf or 4-D arrays are refused on reading
    with mrcfile.new(tmp_path / "nan.mrc") as mrc, pytest.warns(RuntimeWarning, match="NaN"):
        mrc.set_data(bad)
        mrc.voxel_size = 10.0
    with pytest.raises(InvalidVolumeError, match="NaN/Inf"):
        read_tomogram(tmp_path / "nan.mrc")
    group = zarr.open_group(str(tmp_path / "4d.zarr"), mode="w")
    group.create_array("0", shape=(2, *SHAPE), dtype="float32")[...] = np.stack([volume, volume])
    with pytest.raises(InvalidVolumeError, match="'dim_0' .* has 2 entries"):
        read_tomogram(tmp_path / "4d.zarr", voxel_size=10.0)
    group.create_array("1", shape=(1, *SHAPE), dtype="float32")[...] = volume[None]  # a length-1 leading axis
    np.testing.assert_array_equal(read_tomogram(tmp_path / "4d.zarr", level=1, voxel_size=10.0).data, volume)
    with pytest.raises(VoxelSizeError):
        write_mrc(tmp_path / "b.mrc", volume, 0.0)


def test_missing_and_unknown_paths(tmp_path):
    (tmp_path / "present.mrc").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="present.mrc"):
        read_tomogram(tmp_path / "absent.mrc")
    with pytest.raises(DataNotFoundError, match="OME-Zarr"):
        read_tomogram(tmp_path / "absent.zarr")
    (tmp_path / "vol.tif").write_bytes(b"x")
    with pytest.raises(InvalidVolumeError, match="Supported"):
        read_tomogram(tmp_path / "vol.tif")
    with pytest.raises(InvalidVolumeError, match="not a valid MRC"):
        read_tomogram(tmp_path / "present.mrc")


def test_writers_never_replace_inputs(tmp_path, volume):
    src = write_mrc(tmp_path / "in.mrc", volume, 10.0)
    before = src.read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        write_mrc(src, volume * 2, 10.0)
    with pytest.raises(OutputExistsError, match="input"):
        write_mrc(src, volume * 2, 10.0, overwrite=True, inputs=[src])
    with pytest.raises(OutputExistsError, match="input"):
        write_ome_zarr(tmp_path, volume, 10.0, overwrite=True, inputs=[src])
    assert src.read_bytes() == before
    store = write_ome_zarr(tmp_path / "z.zarr", volume, 10.0)
    with pytest.raises(OutputExistsError):
        write_ome_zarr(store, volume, 10.0)
    write_ome_zarr(store, volume * 2, 10.0, overwrite=True, levels=1)
    np.testing.assert_array_equal(read_tomogram(store).data, volume * 2)
    assert not (store / "1").exists()


def test_outputs_get_ordinary_permissions_not_owner_only(tmp_path, volume):
    umask = os.umask(0o022)
    os.umask(umask)
    mrc = write_mrc(tmp_path / "v.mrc", volume, 10.0)
    store = write_ome_zarr(tmp_path / "v.zarr", volume, 10.0)
    assert stat.S_IMODE(mrc.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(store.stat().st_mode) == 0o777 & ~umask


@zarr3_api
def test_nested_chunk_keys_and_full_precision_scale_as_ome_zarr_py_writes(tmp_path, volume):
    """ome-zarr-py (copick, the CZII portal) writes "/"-separated chunk keys and the exact scale 10.012444196..."""
    group = zarr.open_group(store=str(tmp_path / "denoised.zarr"), mode="w", zarr_format=2)
    arr = group.create_array(
        "0", shape=SHAPE, chunks=(8, 8, 8), dtype="float32", chunk_key_encoding={"name": "v2", "separator": "/"}
    )
    arr[...] = volume
    scale = [10.012444196428572] * 3
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    assert (tmp_path / "denoised.zarr" / "0" / "1" / "3" / "3").is_file()  # nested chunk files
    tomo = read_tomogram(tmp_path / "denoised.zarr")
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == (10.012444196428572,) * 3
