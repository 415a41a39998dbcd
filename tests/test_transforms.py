"""Augmentations move the volume and its points together, stay in the xy plane, and are seeded."""

import numpy as np
import pytest

from cryopoint.data.transforms import flip, random_augment, rot90_xy, transpose_xy


def _marked(shape, points):
    """A volume that is 0 everywhere except a distinct value at each (integer) point."""
    vol = np.zeros(shape, dtype=np.float32)
    for i, p in enumerate(points.astype(int)):
        vol[tuple(p)] = i + 1
    return vol


@pytest.fixture
def scene(rng):
    shape = (5, 7, 9)  # all sizes different, so a wrong axis shows up
    points = np.stack([rng.integers(0, n, 6) for n in shape], axis=1).astype(float)
    points = np.unique(points, axis=0)
    return _marked(shape, points), points


def _assert_points_follow_voxels(vol, points):
    for i, p in enumerate(points):
        assert vol[tuple(np.round(p).astype(int))] == i + 1


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flip_moves_points_with_voxels(scene, axis):
    vol, points = scene
    out, moved = flip(vol, points, axis)
    _assert_points_follow_voxels(out, moved)
    assert out.shape == vol.shape


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
def test_rot90_moves_points_with_voxels_in_xy_only(scene, k):
    vol, points = scene
    out, moved = rot90_xy(vol, points, k)
    _assert_points_follow_voxels(out, moved)
    assert np.array_equal(moved[:, 0], points[:, 0])  # z untouched: the missing wedge stays along z
    assert out.shape == ((5, 9, 7) if k % 2 else (5, 7, 9))


def test_transpose_moves_points_with_voxels(scene):
    vol, points = scene
    out, moved = transpose_xy(vol, points)
    _assert_points_follow_voxels(out, moved)
    assert out.shape == (5, 9, 7)


def test_inputs_are_not_modified(scene):
    vol, points = scene
    vol0, points0 = vol.copy(), points.copy()
    random_augment(vol, points, np.random.default_rng(1))
    assert np.array_equal(vol, vol0) and np.array_equal(points, points0)


def test_random_augment_is_seeded_and_geometry_consistent(scene):
    vol, points = scene
    outs = set()
    for seed in range(12):
        out1, pts1 = random_augment(vol, points, np.random.default_rng(seed), scale=0, shift=0, noise=0)
        out2, pts2 = random_augment(vol, points, np.random.default_rng(seed), scale=0, shift=0, noise=0)
        assert np.array_equal(out1, out2) and np.array_equal(pts1, pts2)
        assert out1.dtype == np.float32 and out1.flags["C_CONTIGUOUS"]
        _assert_points_follow_voxels(out1, pts1)
        outs.add(out1.tobytes() + bytes(str(out1.shape), "ascii"))
    assert len(outs) > 4  # different seeds give different symmetries


def test_disabled_geometry_is_identity_and_intensity_is_bounded(scene):
    vol, points = scene
    out, moved = random_augment(
        vol, points, np.random.default_rng(3), flip_axes=(), rot90=False, transpose=False, scale=0.2, shift=0.3, noise=0
    )
    assert np.array_equal(moved, points)
    # v * (1 + a) + b with |a| <= 0.2, |b| <= 0.3: zeros become b, the rest is affine in vol
    b = float(out[vol == 0][0])
    assert abs(b) <= 0.3 and np.allclose(out[vol == 0], b)
    a = (out - b)[vol > 0] / vol[vol > 0] - 1
    assert np.all(np.abs(a) <= 0.2 + 1e-6) and np.allclose(a, a[0], atol=1e-5)


def test_noise_is_added_within_bound(scene):
    vol, points = scene
    out, _ = random_augment(
        vol, points, np.random.default_rng(4), flip_axes=(), rot90=False, transpose=False, scale=0, shift=0, noise=0.5
    )
    residual = out - vol
    assert 0 < residual.std() <= 0.5 * 1.5
