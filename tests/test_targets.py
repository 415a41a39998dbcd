"""Heatmap targets: exact peaks, sigma from radius and voxel size, max merging, local drawing, symmetry."""

import numpy as np
import pytest
from scipy.ndimage import maximum_filter

from cryopoint.data.targets import DEFAULT_SIGMA_FACTOR, draw_heatmaps, sigma_for
from cryopoint.data.transforms import flip, rot90_xy, transpose_xy
from cryopoint.errors import PicksFormatError, UnknownParticleError
from cryopoint.particles import NUM_CLASSES, PARTICLE_NAMES, PARTICLES
from cryopoint.post.nms import find_peaks

VOXEL = 10.012444


def _local_maxima(heat: np.ndarray, min_value: float = 0.5) -> list[tuple[int, int, int, int]]:
    """(c, z, y, x) of every voxel equal to the max of its 3x3x3 neighbourhood and above ``min_value``."""
    peaks = (heat == maximum_filter(heat, size=(1, 3, 3, 3), mode="constant")) & (heat > min_value)
    return [tuple(int(v) for v in idx) for idx in np.argwhere(peaks)]


def _planted(rng, n, shape, min_dist):
    """Random integer points at least ``min_dist`` voxels apart, with random labels."""
    points = []
    while len(points) < n:
        p = rng.integers(0, shape)
        if all(np.linalg.norm(p - q) >= min_dist for q in points):
            points.append(p)
    return np.array(points, dtype=np.float64), rng.integers(0, NUM_CLASSES, n)


def test_sigma_for_follows_radius_and_voxel_size():
    assert np.allclose(sigma_for("ribosome", 10.0), [7.5, 7.5, 7.5])
    assert np.allclose(sigma_for(PARTICLES[0], (20.0, 10.0, 10.0), 0.25), [0.75, 1.5, 1.5])
    assert np.allclose(sigma_for(90.0, 10.0), 0.5 * 90.0 / 10.0)
    assert DEFAULT_SIGMA_FACTOR == 0.5
    with pytest.raises(ValueError):
        sigma_for("ribosome", 10.0, 0.0)


def test_peak_is_exactly_one_and_shape_is_the_documented_gaussian():
    heat = draw_heatmaps((20, 20, 20), np.array([[10.0, 9.0, 8.0]]), np.array([2]), voxel_size=VOXEL)
    assert heat.shape == (NUM_CLASSES, 20, 20, 20) and heat.dtype == np.float32
    assert heat[2, 10, 9, 8] == 1.0 and heat.max() == 1.0
    assert np.count_nonzero(np.delete(heat, 2, axis=0)) == 0
    sigma = sigma_for("beta-galactosidase", VOXEL)[0]
    assert heat[2, 10, 9, 8 + 3] == pytest.approx(np.exp(-9 / (2 * sigma**2)), rel=1e-6)
    assert heat[2, 12, 9, 8] == pytest.approx(heat[2, 8, 9, 8])  # symmetric around the centre


def test_sub_voxel_centre_keeps_exact_one_at_nearest_voxel_and_leans_towards_the_centre():
    heat = draw_heatmaps((16, 16, 16), np.array([[8.3, 8.0, 8.0]]), np.array([0]), voxel_size=VOXEL)[0]
    assert heat[8, 8, 8] == 1.0 and heat.max() == 1.0
    assert heat[9, 8, 8] > heat[7, 8, 8]  # the sub-voxel offset is encoded in the slope


def test_stride_two_maps_centres_to_output_voxels():
    # Output voxel i covers full-res voxels 2i, 2i+1; its centre is 2i + 0.5.
    heat = draw_heatmaps((8, 8, 8), np.array([[4.5, 6.5, 2.5]]), np.array([3]), voxel_size=VOXEL, stride=2)
    assert heat.shape == (NUM_CLASSES, 8, 8, 8)
    assert heat[3, 2, 3, 1] == 1.0
    full = draw_heatmaps((16, 16, 16), np.array([[4.5, 6.5, 2.5]]), np.array([3]), voxel_size=VOXEL)
    # The stride-2 sigma is half as many output voxels: one output voxel step = two full-res steps.
    assert heat[3, 2, 3, 2] == pytest.approx(np.exp(-(4.0) / (2 * sigma_for("ribosome", VOXEL)[0] ** 2)), rel=1e-5)
    # At full resolution 4.5 lies halfway between voxels 4 and 5: both tie as nearest and both hold exactly 1.
    assert full[3, 4, 6, 2] == 1.0 and full[3, 5, 7, 3] == 1.0 and full[3].max() == 1.0


def test_overlaps_merge_with_max_not_sum():
    points = np.array([[8.0, 8.0, 6.0], [8.0, 8.0, 10.0]])
    both = draw_heatmaps((16, 16, 16), points, np.array([0, 0]), voxel_size=VOXEL)
    one = draw_heatmaps((16, 16, 16), points[:1], np.array([0]), voxel_size=VOXEL)
    two = draw_heatmaps((16, 16, 16), points[1:], np.array([0]), voxel_size=VOXEL)
    assert np.array_equal(both, np.maximum(one, two))
    assert both.max() == 1.0


def test_points_outside_the_crop_leave_their_tails_and_far_ones_nothing():
    near = draw_heatmaps((10, 10, 10), np.array([[5.0, 5.0, -2.0]]), np.array([3]), voxel_size=VOXEL)
    assert 0.0 < near[3, 5, 5, 0] < 1.0
    far = draw_heatmaps((10, 10, 10), np.array([[5.0, 5.0, -200.0]]), np.array([3]), voxel_size=VOXEL)
    assert not far.any()


def test_radii_override_sets_channels_and_width():
    heat = draw_heatmaps((9, 9, 9), np.array([[4.0, 4.0, 4.0]]), np.array([1]), voxel_size=10.0, radii=[20.0, 40.0])
    assert heat.shape == (2, 9, 9, 9)
    assert heat[1, 4, 4, 5] == pytest.approx(np.exp(-1 / (2 * 2.0**2)), rel=1e-6)


def test_empty_points_and_bad_inputs():
    assert not draw_heatmaps((4, 4, 4), np.zeros((0, 3)), np.zeros(0, int), voxel_size=VOXEL).any()
    with pytest.raises(PicksFormatError):
        draw_heatmaps((4, 4, 4), np.zeros((2, 2)), np.zeros(2, int), voxel_size=VOXEL)
    with pytest.raises(PicksFormatError):
        draw_heatmaps((4, 4, 4), np.array([[np.nan, 1, 1]]), np.zeros(1, int), voxel_size=VOXEL)
    with pytest.raises(UnknownParticleError):
        draw_heatmaps((4, 4, 4), np.ones((1, 3)), np.array([NUM_CLASSES]), voxel_size=VOXEL)


@pytest.mark.parametrize("stride", [1, 2])
def test_planted_points_are_recovered_exactly_by_local_maxima(rng, stride):
    shape = (32, 48, 48)
    points, labels = _planted(rng, 25, shape, min_dist=12)
    if stride == 2:
        points = points - points % 2 + 0.5  # centres of stride-2 output voxels
    out_shape = tuple(s // stride for s in shape)
    heat = draw_heatmaps(out_shape, points, labels, voxel_size=VOXEL, stride=stride, sigma_factor=0.25)
    found = sorted(_local_maxima(heat))
    expected = sorted((int(c), *(int(v) for v in (p - (stride - 1) / 2) / stride)) for p, c in zip(points, labels))
    assert found == expected
    assert all(heat[f] == 1.0 for f in found)


@pytest.mark.parametrize("stride", [1, 2])
def test_flipping_volume_and_points_commutes_with_drawing(rng, stride):
    shape = (16, 24, 24)
    points = rng.uniform(-3, np.array(shape) + 3, size=(12, 3))
    labels = rng.integers(0, NUM_CLASSES, 12)
    out_shape = tuple(s // stride for s in shape)
    drawn = draw_heatmaps(out_shape, points, labels, voxel_size=VOXEL, stride=stride)
    for axis in range(3):
        _, moved = flip(np.zeros(shape), points, axis)
        then_drawn = draw_heatmaps(out_shape, moved, labels, voxel_size=VOXEL, stride=stride)
        np.testing.assert_allclose(then_drawn, np.flip(drawn, axis=axis + 1), atol=1e-6)
    for k in range(1, 4):
        _, moved = rot90_xy(np.zeros(shape), points, k)
        then_drawn = draw_heatmaps(out_shape, moved, labels, voxel_size=VOXEL, stride=stride)
        np.testing.assert_allclose(then_drawn, np.rot90(drawn, k=k, axes=(2, 3)), atol=1e-6)
    _, moved = transpose_xy(np.zeros(shape), points)
    then_drawn = draw_heatmaps(out_shape, moved, labels, voxel_size=VOXEL, stride=stride)
    np.testing.assert_allclose(then_drawn, np.swapaxes(drawn, 2, 3), atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_planted_points_are_recovered_by_find_peaks(rng, stride):
    shape = (32, 48, 48)
    points, labels = _planted(rng, 25, np.array(shape) - 8, min_dist=12)
    points = points + 4 + rng.uniform(-0.3, 0.3, points.shape)  # sub-voxel truth, off the border
    out_shape = tuple(s // stride for s in shape)
    heat = draw_heatmaps(out_shape, points, labels, voxel_size=VOXEL, stride=stride, sigma_factor=0.25)
    for refine, tolerance in ((False, 0.5 * stride * np.sqrt(3)), (True, 0.01)):
        picks = find_peaks(heat, voxel_size=VOXEL, stride=stride, min_score=0.5, refine=refine)
        assert len(picks) == len(points)
        for p, c in zip(points, labels):
            rows = picks[picks.particle_type == PARTICLE_NAMES[c]]
            dist = np.linalg.norm(rows[["z_vox", "y_vox", "x_vox"]].to_numpy() - p, axis=1)
            # Without refinement: the centre of the output voxel holding the point. With it: the sub-voxel truth,
            # because each target is an exact (rescaled) Gaussian around the true position.
            assert dist.min() <= tolerance + 1e-9
    assert picks.score.min() == 1.0
