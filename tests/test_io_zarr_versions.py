"""cryopoint installs and works with zarr 2.18 (copick's, ome-zarr-py's) and zarr 3; OME-Zarr outputs validate.

The main environment has zarr 3; CI's second step (.ci/run) builds one with copick, hence zarr 2, and runs this file
there too, so each side's tests run in one of the two.
"""

import configparser
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from packaging.requirements import Requirement

from cryopoint.errors import MissingDependencyError
from cryopoint.io import read_tomogram, write_ome_zarr
from cryopoint.io.zarr_store import ZARR_MAJOR

SHAPE = (12, 20, 24)
ROOT = Path(__file__).resolve().parents[1]

zarr2_only = pytest.mark.skipif(ZARR_MAJOR >= 3, reason="checks zarr 2 behaviour; CI's copick step has zarr 2")
zarr3_only = pytest.mark.skipif(ZARR_MAJOR < 3, reason="zarr format 3 needs zarr 3; the main environment has it")


@pytest.fixture
def volume(rng):
    return rng.standard_normal(SHAPE).astype(np.float32)


def _requirement(name: str) -> Requirement:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [Requirement(line) for line in cfg["options"]["install_requires"].split("\n") if line.strip()]
    return next(r for r in reqs if r.name == name)


def test_install_requires_admits_the_zarr_copick_needs_and_zarr_3():
    spec = _requirement("zarr").specifier
    assert spec.contains("2.18.7") and spec.contains("3.1.6")  # copick 1.31 and ome-zarr 0.11 pin zarr<3
    assert not spec.contains("2.17.0")  # zarr 2.17 lacks what zarr_store uses (and copick's minimum is 2.18)


def test_copick_extra_is_declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extra = [Requirement(x) for x in cfg["options.extras_require"]["copick"].split("\n") if x.strip()]
    assert [r.name for r in extra] == ["copick"] and extra[0].specifier.contains("1.31.0")


def test_v2_round_trip_with_the_installed_zarr(tmp_path, volume):
    path = write_ome_zarr(tmp_path / "t.zarr", volume, (7.0, 6.0, 5.0), chunks=(8, 8, 8))
    zarray = json.loads((path / "0" / ".zarray").read_text())
    assert zarray["compressor"]["id"] == "blosc" and zarray["chunks"] == [8, 8, 8] and zarray["zarr_format"] == 2
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == (7.0, 6.0, 5.0)
    assert read_tomogram(path, level=1).voxel_size == (14.0, 12.0, 10.0)


@zarr2_only
def test_zarr_format_3_under_zarr_2_says_what_to_install(tmp_path, volume):
    with pytest.raises(MissingDependencyError, match=r"zarr>=3.*zarr format 2"):
        write_ome_zarr(tmp_path / "v3.zarr", volume, 10.0, zarr_format=3)
    assert not (tmp_path / "v3.zarr").exists()
    store = tmp_path / "other.zarr"  # a format 3 store someone else wrote
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(MissingDependencyError, match=r"other\.zarr is zarr format 3"):
        read_tomogram(store)


@zarr2_only
def test_reads_a_store_written_by_ome_zarr_py(tmp_path, volume):
    """ome-zarr-py with zarr 2 is how copick and the CZII portal write tomograms: nested "/" chunk keys."""
    writer = pytest.importorskip("ome_zarr.writer", reason="ome-zarr-py comes with copick in CI's copick step")
    from ome_zarr.io import parse_url

    group = zarr.group(store=parse_url(str(tmp_path / "denoised.zarr"), mode="w").store)
    scale = [10.012444196428572] * 3
    writer.write_multiscale(
        [volume],
        group,
        axes=[{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"],
        coordinate_transformations=[[{"type": "scale", "scale": scale}]],
        storage_options={"chunks": (8, 8, 8)},
    )
    assert (tmp_path / "denoised.zarr" / "0" / "1" / "2" / "2").is_file()  # nested chunk files
    tomo = read_tomogram(tmp_path / "denoised.zarr")
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_size == tuple(scale)


@pytest.mark.skipif(ZARR_MAJOR < 3, reason="ome-zarr-models reads through zarr 3 (pydantic-zarr); main env has it")
def test_v2_output_validates_as_ome_ngff_0_4(tmp_path, volume):
    image = pytest.importorskip("ome_zarr_models.v04.image", reason="ome-zarr-models is in the dev extra")
    path = write_ome_zarr(tmp_path / "t.zarr", volume, 10.012444, levels=2)
    model = image.Image.from_zarr(zarr.open_group(str(path), mode="r"))
    assert [a.name for a in model.attributes.multiscales[0].axes] == ["z", "y", "x"]


@zarr3_only
def test_v3_output_has_dimension_names_and_validates_as_ome_ngff_0_5(tmp_path, volume):
    image = pytest.importorskip("ome_zarr_models.v05.image", reason="ome-zarr-models is in the dev extra")
    path = write_ome_zarr(tmp_path / "t.zarr", volume, (5.0, 4.0, 3.0), zarr_format=3, levels=2)
    for level in ("0", "1"):
        meta = json.loads((path / level / "zarr.json").read_text())
        assert meta["dimension_names"] == ["z", "y", "x"]
    model = image.Image.from_zarr(zarr.open_group(str(path), mode="r"))
    ome = model.ome_attributes
    assert ome.version == "0.5"
    ms = ome.multiscales[0]
    assert [a.name for a in ms.axes] == ["z", "y", "x"] and {a.unit for a in ms.axes} == {"angstrom"}
    assert [d.coordinateTransformations[0].scale for d in ms.datasets] == [[5.0, 4.0, 3.0], [10.0, 8.0, 6.0]]
