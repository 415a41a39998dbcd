"""Robust normalisation: ice-slab median and IQR (not min/max, not whole-volume percentiles), tiny raw values,
memmaps, vacuum slices and gold beads, constant and NaN volumes."""

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
    # ~3k voxels of the searched region: a ~2 % sampling error on the scale, which near the clip (|v| ~ 3) is
    # ~0.1 in absolute terms, hence a relative tolerance (was: absolute 0.1 with whole-volume percentiles).
    np.testing.assert_allclose(sub, full, rtol=0.05, atol=0.03)


def test_mostly_constant_volume_falls_back_to_the_spread():
    vol = np.zeros((10, 10, 10))
    vol[5, 5, 5] = 1.0  # 99.9 % padding: the percentiles coincide but the volume has contrast
    out = normalize_volume(vol, max_samples=vol.size)
    assert np.isfinite(out).all() and out[5, 5, 5] > 0 and out[0, 0, 0] == 0


@pytest.mark.parametrize("vol", [np.full((4, 4, 4), 7.0), np.zeros((0, 4, 4))])
def test_constant_or_empty_volume_is_a_clear_error(vol):
    with pytest.raises(InvalidVolumeError, match="constant|empty"):
        normalize_volume(vol)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("method", ["robust", "percentile"])
def test_nan_or_inf_anywhere_is_an_error(rng, bad, method):
    vol = rng.normal(0, 1, (16, 16, 16))
    vol[3, 5, 7] = bad  # off the subsample grid: caught by the final check (an Inf too: checked before clipping)
    with pytest.raises(InvalidVolumeError, match="NaN"):
        normalize_volume(vol, max_samples=100, method=method)
    vol[8, 8, 8] = bad  # on the grid, in the searched region: caught before any estimate
    with pytest.raises(InvalidVolumeError, match="NaN"):
        normalize_volume(vol, max_samples=100, method=method)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low": 60, "high": 40},
        {"low": 0, "high": 99},  # no Gaussian quantile for 0 %: only the percentile method takes it
        {"method": "minmax"},
        {"xy_fraction": 0.0},
        {"xy_fraction": 1.5},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        normalize_volume(np.arange(8.0).reshape(2, 2, 2), **kwargs)


# --- robustness of the ice-slab estimate -------------------------------------------------------------------------


def _old(vol):
    """The previous estimator (whole-volume median and 1-99 % half range), kept as ``method="percentile"``."""
    return normalize_volume(vol, method="percentile")


def test_percentile_method_is_the_previous_estimator(rng):
    vol = rng.gamma(2.0, 1.0, (16, 32, 32))
    p1, median, p99 = np.percentile(vol, [1, 50, 99])
    expected = np.clip((vol - median) / ((p99 - p1) / 2), -3, 3)
    np.testing.assert_allclose(_old(vol), expected, atol=1e-5)


def test_gaussian_percentiles_map_to_plus_minus_one(rng):
    out = normalize_volume(rng.normal(-7.0, 0.5, (32, 64, 64)))
    p1, p50, p99 = np.percentile(out, [1, 50, 99])
    assert p1 == pytest.approx(-1.0, abs=0.03) and p99 == pytest.approx(1.0, abs=0.03) and abs(p50) < 0.01
    # the same convention for other percentiles: 5/95 % of a Gaussian land on -1/+1
    out = normalize_volume(rng.normal(-7.0, 0.5, (32, 64, 64)), low=5, high=95)
    assert np.percentile(out, 95) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    "where, mean, sd",
    [
        ("top", 4.0, 0.3),  # vacuum on one side: brighter (less dense) and quieter than ice
        ("both", 4.0, 0.3),  # vacuum split above and below the slab
        ("top", -2.5, 3.0),  # a very different, noisier band
    ],
)
def test_vacuum_slices_do_not_move_the_ice_normalisation(rng, where, mean, sd):
    clean = rng.normal(0.0, 1.0, (40, 48, 48))
    vacuum = clean.copy()
    n = 12  # 30 % of the slices
    rows = slice(0, n) if where == "top" else np.r_[0 : n // 2, 40 - n // 2 : 40]
    vacuum[rows] = rng.normal(mean, sd, vacuum[rows].shape)
    ice = np.ones(40, bool)
    ice[rows] = False
    reference = normalize_volume(clean)[ice]
    # the old whole-volume estimate is clearly off on the ice...
    assert np.abs(_old(vacuum)[ice] - _old(clean)[ice]).mean() > 0.15
    # ...the slab estimate is not
    new = normalize_volume(vacuum)[ice]
    assert np.abs(new - reference).mean() < 0.01 and np.abs(new - reference).max() < 0.05
    assert np.percentile(new, 99) == pytest.approx(1.0, abs=0.03)


def test_gold_beads_do_not_move_the_ice_normalisation(rng):
    clean = rng.normal(0.0, 1.0, (32, 64, 64))
    beads = clean.copy()
    is_bead = rng.random(clean.shape) < 0.02  # ~2 % of the voxels, at 50 sd
    beads[is_bead] = rng.normal(50.0, 1.0, is_bead.sum())
    ice = ~is_bead
    old, new = _old(beads)[ice], normalize_volume(beads)[ice]
    # old: the 99th percentile sits on the beads, so the ice is squashed ~10x
    assert np.percentile(old, 99) < 0.2
    # new: median shift ~0.03 sd and scale ~2.5 % from 2 % contamination of the quartiles
    assert np.percentile(new, 99) == pytest.approx(1.0, abs=0.06)
    assert np.percentile(new, 1) == pytest.approx(-1.0, abs=0.06)
    np.testing.assert_allclose(new, normalize_volume(clean)[ice], rtol=0.05, atol=0.03)


def test_border_clutter_is_ignored(rng):
    clean = rng.normal(0.0, 1.0, (24, 64, 64))
    clutter = clean.copy()
    clutter[:, :, :5] = 30.0  # a bright carbon edge / padding band at the x border
    clutter[:, -5:, :] = -30.0
    inner = (slice(None), slice(5, -5), slice(5, -5))
    np.testing.assert_allclose(normalize_volume(clutter)[inner], normalize_volume(clean)[inner], atol=1e-6)
    assert np.abs(_old(clutter)[inner] - _old(clean)[inner]).mean() > 0.1
