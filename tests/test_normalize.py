"""Robust normalisation: percentiles not min/max, tiny raw values, memmaps, constant and NaN volumes."""

import numpy as np
import pytest

from cryopoint.data.normalize import normalize_volume
from cryopoint.errors import InvalidVolumeError


def test_median_centred_and_percentile_scaled(rng):
    vol = rng.normal(3.0, 2.0, (24, 40, 40))
    out = normalize_volume(vol)
    assert out.dtype == np.float32 and out.shape == vol.shape
    assert abs(np.median(out)) < 0.02
    assert np.percentile(out, 1) == pytest.approx(-1.0, abs=0.05)
    assert np.percentile(out, 99) == pytest.approx(1.0, abs=0.05)


def test_outliers_do_not_change_the_scale_and_are_clipped(rng):
    vol = rng.normal(0.0, 1.0, (24, 40, 40))
    spiked = vol.copy()
    spiked[0, 0, :5] = 1e6  # a gold bead / hot voxels: min/max scaling would flatten everything else
    a, b = normalize_volume(vol), normalize_volume(spiked)
    assert np.abs(a[1:] - b[1:]).max() < 0.01
    assert b.max() == pytest.approx(3.0)  # clipped at the documented +-3 half-ranges
    assert normalize_volume(spiked, clip=10.0).max() == pytest.approx(10.0)


def test_tiny_raw_values_like_the_challenge_data(rng):
    vol = rng.normal(2e-5, 1e-5, (16, 32, 32)).astype(np.float32)
    out = normalize_volume(vol)
    assert np.percentile(out, 99) == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(out.ravel(), vol.ravel())[0, 1] > 0.999  # sign and ordering kept (dark protein stays dark)


def test_memmap_input_is_read_not_modified(tmp_path, rng):
    path = tmp_path / "vol.npy"
    np.save(path, rng.normal(0, 1, (8, 16, 16)).astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    out = normalize_volume(mm)
    assert isinstance(out, np.ndarray) and not isinstance(out, np.memmap)
    assert np.array_equal(np.load(path), mm)
    np.testing.assert_allclose(out, normalize_volume(np.load(path)), rtol=1e-6)


def test_float32_input_is_not_modified_in_place(rng):
    vol = rng.normal(5, 1, (8, 8, 8)).astype(np.float32)
    before = vol.copy()
    normalize_volume(vol)
    assert np.array_equal(vol, before)


def test_subsample_estimate_matches_the_full_volume(rng):
    vol = rng.gamma(2.0, 1.0, (32, 64, 64))
    sub = normalize_volume(vol, max_samples=5_000)
    full = normalize_volume(vol, max_samples=vol.size)
    assert np.abs(sub - full).max() < 0.1


def test_mostly_constant_volume_falls_back_to_the_spread():
    vol = np.zeros((10, 10, 10))
    vol[5, 5, 5] = 1.0  # 99.9 % padding: the percentiles coincide but the volume has contrast
    out = normalize_volume(vol, max_samples=vol.size)
    assert np.isfinite(out).all() and out[5, 5, 5] > 0 and out[0, 0, 0] == 0


@pytest.mark.parametrize("vol", [np.full((4, 4, 4), 7.0), np.zeros((0, 4, 4))])
def test_constant_or_empty_volume_is_a_clear_error(vol):
    with pytest.raises(InvalidVolumeError, match="constant|empty"):
        normalize_volume(vol)


def test_nan_anywhere_is_an_error(rng):
    vol = rng.normal(0, 1, (16, 16, 16))
    vol[3, 5, 7] = np.nan  # off the subsample grid: caught by the final check
    with pytest.raises(InvalidVolumeError, match="NaN"):
        normalize_volume(vol, max_samples=100)


def test_bad_percentiles():
    with pytest.raises(ValueError):
        normalize_volume(np.ones((2, 2, 2)), low=60, high=40)
