"""Appearance augmentations: look only (never points), no contrast inversion, seeded, fixed draw layout, and
the knobs at 0 leave ``random_augment`` bit for bit as it was."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from cryopoint.config import AugmentConfig, config_from_dict
from cryopoint.data import appearance as app
from cryopoint.data.transforms import flip, random_augment, rot90_xy, transpose_xy
from cryopoint.errors import ConfigError

#: Every knob on, strongly (the probabilities at 1), so each test exercises every operation.
ALL_ON = dict(blur=2.0, sharpen=1.5, gamma=0.5, noise_color=0.3, bandpass=1.0, nonlinearity=0.9, local_norm=1.0)
#: The recipe suggested in AugmentConfig's docstring.
RECIPE = dict(blur=1.5, sharpen=1.0, gamma=0.4, noise_color=0.3, bandpass=0.3, nonlinearity=0.5, local_norm=0.2)
NO_GEOMETRY = dict(flip_axes=(), rot90=False, transpose=False)
BLOB = (14, 27, 37)


@pytest.fixture
def crop(rng):
    """A normalised-looking crop: smooth-ish Gaussian ice, all sizes different so a wrong axis shows up."""
    vol = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (12, 20, 24)), 0.7)
    return (vol / (2.326 * vol.std())).astype(np.float32)


@pytest.fixture(scope="module")
def blob_crop():
    """32 x 64 x 64 noisy ice with one dark Gaussian blob (a particle) at ``BLOB``."""
    rng = np.random.default_rng(5)
    grid = np.indices((32, 64, 64), dtype=np.float32)
    r2 = sum((g - c) ** 2 for g, c in zip(grid, BLOB))
    vol = rng.normal(0.0, 0.4, (32, 64, 64)) - 2.0 * np.exp(-r2 / (2 * 3.0**2))
    return np.clip(vol, -3, 3).astype(np.float32)


def _ops(rng):
    """One call of each pure operation, as ``name -> volume -> new volume``."""
    return {
        "blur": lambda v: app.gaussian_blur(v, (0.8, 1.5, 1.5)),
        "sharpen": lambda v: app.unsharp_mask(v, 1.0, 1.0),
        "contrast_gamma": lambda v: app.contrast_gamma(v, 1.3, 0.6, 1.5),
        "white_noise": lambda v: app.add_noise(v, 0.2, np.random.default_rng(1)),
        "correlated_noise": lambda v: app.add_noise(v, 0.2, np.random.default_rng(1), sigma=1.5),
        "bandpass": lambda v: app.bandpass_filter(v, 0.7, 6.0, 0.8),
        "nonlinearity": lambda v: app.smooth_nonlinearity(v, [-0.5, 0.2, 1.0], [0.4, 0.8, 1.2], [1, 2, 1], 0.8),
        "local_norm": lambda v: app.local_normalize(v, 4.0),
        "restandardize": lambda v: app.restandardize(v, 0.3, 0.2),
        "random_appearance": lambda v: app.random_appearance(v, rng, **ALL_ON),
    }


@pytest.mark.parametrize("name", list(_ops(None)))
def test_every_op_keeps_shape_and_dtype_and_leaves_its_input(crop, rng, name):
    before = crop.copy()
    out = _ops(rng)[name](crop)
    assert out.shape == crop.shape and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert np.isfinite(out).all()
    assert np.array_equal(crop, before)  # pure: the input is not modified
    assert not np.allclose(out, crop, atol=1e-3)  # and it does change something


@pytest.mark.parametrize("seed", range(6))
def test_points_are_untouched(crop, seed):
    points = np.array([[1.0, 2.0, 3.0], [11.0, 19.0, 0.0], [5.5, 7.25, 20.0]])
    vol_off, pts_off = random_augment(crop, points, np.random.default_rng(seed))
    vol_on, pts_on = random_augment(crop, points, np.random.default_rng(seed), **ALL_ON)
    assert np.array_equal(pts_on, pts_off)
    assert vol_on.shape == vol_off.shape  # the same geometry was applied
    assert not np.allclose(vol_on, vol_off, atol=1e-2)


def _today(
    volume, points_zyx, rng, *, flip_axes=(0, 1, 2), rot90=True, transpose=True, scale=0.1, shift=0.1, noise=0.05
):
    """``random_augment`` as it was before the appearance knobs (a verbatim copy of its body)."""
    do_flip = rng.random(3) < 0.5
    quarter_turns = int(rng.integers(4))
    do_transpose = rng.random() < 0.5
    gain, offset, sd = rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0)
    points = np.array(points_zyx, dtype=np.float64, copy=True).reshape(-1, 3)
    for axis in flip_axes:
        if do_flip[axis]:
            volume, points = flip(volume, points, axis)
    if rot90:
        volume, points = rot90_xy(volume, points, quarter_turns)
    if transpose and do_transpose:
        volume, points = transpose_xy(volume, points)
    out = np.array(volume, dtype=np.float32, order="C", copy=True)
    out *= np.float32(1.0 + gain * scale)
    out += np.float32(offset * shift)
    if noise > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sd * noise)
    return out, points


@pytest.mark.parametrize("kwargs", [{}, {"noise": 0.0}, {"scale": 0.3, "noise": 0.2, "flip_axes": (1,)}])
def test_knobs_at_zero_reproduce_todays_output_bit_for_bit(crop, kwargs):
    square = np.ascontiguousarray(crop[:, :20, :20])
    points = np.array([[3.0, 4.0, 5.0]])
    zeros = {k: 0.0 for k in ALL_ON}
    for seed in range(8):
        rng_old, rng_new = np.random.default_rng(seed), np.random.default_rng(seed)
        old_vol, old_pts = _today(square, points, rng_old, **kwargs)
        new_vol, new_pts = random_augment(square, points, rng_new, **kwargs, **zeros)
        assert np.array_equal(old_vol, new_vol) and np.array_equal(old_pts, new_pts)
        assert rng_old.random() == rng_new.random()  # and the stream after it is untouched too


def test_knobs_at_zero_reproduce_a_recorded_draw():
    """A draw recorded with the code before the appearance knobs (seed 0, default knobs): guards against the
    copy in ``_today`` and ``random_augment`` drifting together."""
    vol = np.linspace(-1, 1, 4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    out, pts = random_augment(vol, np.array([[1.0, 2.0, 3.0]]), np.random.default_rng(0))
    recorded = [-0.17325735092163086, -0.168275848031044, -0.24985647201538086, -0.18071520328521729]
    recorded += [-0.1761280596256256, -0.23353566229343414]
    assert out[1, 2].tolist() == recorded and pts.tolist() == [[1.0, 3.0, 2.0]]
    assert float(out.astype(np.float64).sum()) == pytest.approx(3.2953827809542418, abs=1e-9)


def test_one_knob_off_does_not_change_the_others(blob_crop):
    """Blur and sharpen share a draw: with sharpen switched on, every blurred crop stays exactly the same."""
    blurred = sharpened = 0
    for seed in range(16):
        blur_only = app.random_appearance(blob_crop, np.random.default_rng(seed), blur=2.0, noise_color=0.2)
        both = app.random_appearance(blob_crop, np.random.default_rng(seed), blur=2.0, sharpen=1.0, noise_color=0.2)
        if np.array_equal(blur_only, both):
            blurred += 1
        else:
            sharpened += 1
            assert np.abs(both - blob_crop).mean() > np.abs(blur_only - blob_crop).mean() * 0.5
    assert blurred >= 3 and sharpened >= 3


def test_appearance_draws_do_not_depend_on_the_white_noise_knob(blob_crop):
    for seed in range(4):
        base = dict(scale=0.0, shift=0.0, **NO_GEOMETRY, **RECIPE)
        quiet, _ = random_augment(blob_crop, np.zeros((0, 3)), np.random.default_rng(seed), noise=0.0, **base)
        noisy, _ = random_augment(blob_crop, np.zeros((0, 3)), np.random.default_rng(seed), noise=0.1, **base)
        rng = np.random.default_rng(seed)  # replay random_augment's own draws to get its white-noise field
        rng.random(3), rng.integers(4), rng.random()
        sd = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 1)
        field = rng.standard_normal(blob_crop.shape, dtype=np.float32)
        np.testing.assert_allclose(noisy - quiet, field * np.float32(sd[2] * 0.1), atol=1e-5)


def test_random_stream_after_appearance_is_the_same_whatever_the_knobs(crop):
    after = set()
    for knobs in [ALL_ON, RECIPE, {"blur": 1.0}, {"local_norm": 0.5, "noise_color": 0.1}]:
        rng = np.random.default_rng(3)
        app.random_appearance(crop, rng, **knobs)
        after.add(rng.random())
    assert len(after) == 1


@pytest.mark.parametrize(
    "knobs",
    [
        {"blur": 3.0},
        {"sharpen": 2.0},
        {"gamma": 0.7},
        {"noise_color": 0.3},
        {"bandpass": 1.0},
        {"nonlinearity": 1.0},
        {"local_norm": 1.0},
        ALL_ON,
        RECIPE,
    ],
    ids=lambda k: "+".join(k) if len(k) < 3 else f"{len(k)} knobs",
)
def test_dark_blob_stays_dark_and_in_place(blob_crop, knobs):
    median = np.median(blob_crop)
    for seed in range(6):
        out, _ = random_augment(blob_crop, np.zeros((0, 3)), np.random.default_rng(seed), **NO_GEOMETRY, **knobs)
        smooth = ndimage.gaussian_filter(out, 2.0)
        where = np.unravel_index(np.argmin(smooth), smooth.shape)
        assert np.abs(np.subtract(where, BLOB)).max() <= 1, (seed, where)
        # dark sign: the blob is well below the crop's median and its surroundings
        assert smooth[BLOB] < np.median(out) - 0.3 and np.median(out) == pytest.approx(median, abs=0.1)


def test_intensity_curves_are_monotone_and_sign_preserving(rng):
    x = np.sort(rng.normal(0.0, 1.0, 20_000)).astype(np.float32).reshape(1, 100, 200)
    for _ in range(20):
        c, gd, gb = np.exp(rng.uniform(-0.7, 0.7, 3))
        y = app.contrast_gamma(x, c, gd, gb).ravel()
        assert np.all(np.diff(y) >= 0) and np.array_equal(np.sign(y), np.sign(x.ravel()))
        centres, widths, weights = rng.uniform(-1.5, 1.5, 3), rng.uniform(0.3, 1.5, 3), rng.uniform(0, 1, 3)
        y = app.smooth_nonlinearity(x, centres, widths, weights, mix=0.95).ravel()
        assert np.all(np.diff(y) >= 0) and np.all(np.diff(y)[np.diff(x.ravel()) > 1e-3] > 0)
    # and so is random_appearance made of pointwise ops only (contrast, gamma, curve, affine re-standardising)
    for seed in range(5):
        y = app.random_appearance(x, np.random.default_rng(seed), gamma=0.6, nonlinearity=1.0).ravel()
        assert np.all(np.diff(y) >= 0) and not np.allclose(y, x.ravel(), atol=0.02)


def test_local_normalisation_gives_zero_local_mean(rng):
    grid = np.indices((24, 48, 48), dtype=np.float32)
    vol = rng.normal(0.0, 1.0, grid.shape[1:]).astype(np.float32) * (1.0 + grid[2] / 24)  # contrast grows with x
    vol += 5.0 + 0.3 * grid[1] - 0.2 * grid[0]  # offset and ramps: a slowly varying local mean
    sigma = 4.0
    out = app.local_normalize(vol, sigma)
    assert np.abs(app.gaussian_blur(vol, sigma)).mean() > 3 * vol.std() * 0.5  # the input's local mean is far from 0
    local_mean = np.abs(app.gaussian_blur(out, sigma))
    # inside (1.5 windows from the borders) ~0 up to the sampling noise of a 4-voxel window (~0.02); at the
    # borders the reflected ramps bend, so only ~0
    assert local_mean[6:-6, 6:-6, 6:-6].mean() < 0.05 * out.std() and local_mean.mean() < 0.15 * out.std()
    local_sd = np.sqrt(app.gaussian_blur(np.square(out), sigma))
    assert np.percentile(local_sd, 5) > 0.8 and np.percentile(local_sd, 95) < 1.2  # and ~unit local sd


def test_bandpass_and_sharpen_do_not_invert_a_flat_or_a_step(rng):
    step = np.zeros((8, 16, 32), np.float32)
    step[..., 16:] = -1.0  # dark half
    for out in (app.bandpass_filter(step, 1.0, 8.0, 1.0), app.unsharp_mask(step, 2.0, 1.5)):
        assert out[..., 17:].mean() < out[..., :15].mean()
    flat = np.full((8, 16, 16), 2.0, np.float32)
    assert np.allclose(app.bandpass_filter(flat, 1.0, 8.0, 1.0), 0.0, atol=1e-5)  # strength 1 removes the mean


def test_seeded(crop):
    a = app.random_appearance(crop, np.random.default_rng(7), **ALL_ON)
    b = app.random_appearance(crop, np.random.default_rng(7), **ALL_ON)
    c = app.random_appearance(crop, np.random.default_rng(8), **ALL_ON)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_restandardised_to_the_input_median_and_spread(blob_crop):
    median, spread = app.robust_centre_spread(blob_crop)
    for seed in range(4):
        out = app.random_appearance(blob_crop, np.random.default_rng(seed), **ALL_ON)
        m, s = app.robust_centre_spread(out)
        assert m == pytest.approx(median, abs=0.02) and s == pytest.approx(spread, rel=0.05)
        assert np.abs(out).max() <= 3.0


def test_constant_padding_crop_is_left_as_it_is():
    pad = np.full((8, 16, 16), 0.25, np.float32)
    rng = np.random.default_rng(0)
    assert np.array_equal(app.random_appearance(pad, rng, **ALL_ON), pad)  # no noise blown up to unit sd
    assert rng.random() == _after_appearance_draws(0)  # and the same draws as for any other crop


def _after_appearance_draws(seed):
    rng = np.random.default_rng(seed)
    app.random_appearance(np.arange(64, dtype=np.float32).reshape(4, 4, 4), rng, blur=1.0)
    return rng.random()


@pytest.mark.parametrize("knobs", [{"blur": -0.1}, {"bandpass": 1.5}, {"local_norm": 2.0}, {"nonlinearity": -1}])
def test_bad_knobs_raise(crop, knobs):
    with pytest.raises(ValueError, match=next(iter(knobs))):
        app.random_appearance(crop, np.random.default_rng(0), **knobs)
    with pytest.raises(ValueError, match=next(iter(knobs))):
        random_augment(crop, np.zeros((0, 3)), np.random.default_rng(0), **knobs)


def test_augment_config_accepts_the_new_keys_and_rejects_unknown_ones():
    cfg = config_from_dict({"data": {"augment": {**RECIPE, "bandpass": 1}}})
    assert cfg.data.augment.blur == 1.5 and cfg.data.augment.bandpass == 1.0
    assert isinstance(cfg.data.augment.bandpass, float)
    assert AugmentConfig().local_norm == 0.0  # off by default
    with pytest.raises(ConfigError, match=r"'data\.augment\.blurr'.*valid keys.*noise_color"):
        config_from_dict({"data": {"augment": {"blurr": 1.0}}})
    with pytest.raises(ConfigError, match=r"data\.augment\.local_norm"):
        config_from_dict({"data": {"augment": {"local_norm": 1.5}}})
    with pytest.raises(ConfigError, match=r"data\.augment\.gamma"):
        config_from_dict({"data": {"augment": {"gamma": -0.1}}})
    with pytest.raises(ConfigError, match=r"data\.augment\.sharpen.*float"):
        config_from_dict({"data": {"augment": {"sharpen": "strong"}}})
    # the engine passes every field but ``enabled`` to the crop dataset, which resamples for ``zoom`` itself
    # (tests/test_zoom.py) and hands the rest to random_augment as keywords: they must all be accepted
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.data.augment).items() if k not in ("enabled", "zoom")}
    assert "zoom" in dataclasses.asdict(cfg.data.augment)
    vol, _ = random_augment(np.zeros((4, 8, 8), np.float32), np.zeros((0, 3)), np.random.default_rng(0), **kwargs)
    assert vol.shape == (4, 8, 8)
