"""Sphere label targets for the unet3d baseline: ball sizes, classes, overlaps, stride, edges."""

import numpy as np
import pytest

from cryopoint.data.sphere_targets import draw_sphere_labels
from cryopoint.errors import UnknownParticleError
from cryopoint.particles import PARTICLES


def _brute_force(shape, points, labels, voxel_size, stride, fraction):
    grid = np.stack(
        np.meshgrid(*[np.arange(s) * stride + (stride - 1) / 2 for s in shape], indexing="ij"), axis=-1
    ).astype(float)
    out = np.zeros(shape, dtype=np.int64)
    best = np.full(shape, np.inf)
    for p, lab in zip(points, labels):
        d2 = (((grid - p) * voxel_size) ** 2).sum(-1)
        r2 = (fraction * PARTICLES[lab].radius) ** 2
        take = (d2 <= r2 + 1e-3) & (d2 < best)
        out[take] = lab + 1
        best[take] = d2[take]
    return out


def test_ball_volume_and_label_per_class():
    vs = 10.0
    for p in PARTICLES:
        lab = draw_sphere_labels((40, 40, 40), np.array([[20.0, 20.0, 20.0]]), np.array([p.label]), voxel_size=vs)
        r_vox = 0.5 * p.radius / vs
        assert set(np.unique(lab)) == {0, p.label + 1}
        expected = 4 / 3 * np.pi * r_vox**3
        assert abs(int((lab > 0).sum()) - expected) / expected < 0.15
        assert lab[20, 20, 20] == p.label + 1


def test_matches_brute_force_with_overlap_stride_and_anisotropy(rng):
    vs = np.array([12.0, 10.0, 9.0])
    points = rng.uniform(-3, 30, size=(12, 3))
    labels = rng.integers(0, len(PARTICLES), size=12)
    for stride in (1, 2):
        shape = tuple(32 // stride for _ in range(3))
        got = draw_sphere_labels(shape, points, labels, voxel_size=vs, stride=stride, radius_fraction=0.6)
        want = _brute_force(shape, points, labels, vs, stride, 0.6)
        # Ties on a shared boundary can legitimately go either way; allow a handful of voxels.
        assert (got != want).sum() <= 3


def test_overlap_goes_to_nearest_centre():
    # Two ribosomes whose balls overlap: the voxel nearer to the first centre must carry its label.
    pts = np.array([[10.0, 10.0, 8.0], [10.0, 10.0, 14.0]])
    lab = draw_sphere_labels((20, 20, 24), pts, np.array([0, 3]), voxel_size=10.0, radius_fraction=1.0)
    assert lab[10, 10, 10] == 1  # nearer to the apo-ferritin centre (distance 2 vs 4)
    assert lab[10, 10, 12] == 4


def test_empty_and_outside_points():
    lab = draw_sphere_labels((8, 8, 8), np.zeros((0, 3)), np.zeros(0, int), voxel_size=10.0)
    assert lab.dtype == np.int64 and lab.shape == (8, 8, 8) and lab.max() == 0
    # A ribosome just outside the crop still paints the cap that falls inside it.
    lab = draw_sphere_labels((8, 8, 8), np.array([[-3.0, 4.0, 4.0]]), np.array([3]), voxel_size=10.0)
    assert lab[0, 4, 4] == 4 and lab[7, 4, 4] == 0


def test_bad_inputs():
    with pytest.raises(UnknownParticleError):
        draw_sphere_labels((4, 4, 4), np.zeros((1, 3)), np.array([6]), voxel_size=10.0)
    with pytest.raises(ValueError, match="one label per point"):
        draw_sphere_labels((4, 4, 4), np.zeros((2, 3)), np.array([1]), voxel_size=10.0)
    with pytest.raises(ValueError, match="stride"):
        draw_sphere_labels((4, 4, 4), np.zeros((1, 3)), np.array([1]), voxel_size=10.0, stride=0)


def test_sphere_labels_to_components_recovers_points(rng):
    from cryopoint.coords import voxel_to_angstrom
    from cryopoint.post.components import component_centroids

    vs = 10.0
    points = np.array([[10.0, 12.0, 12.0], [10.0, 12.0, 40.0], [20.0, 40.0, 20.0], [12.0, 44.0, 46.0]])
    labels = np.array([0, 2, 3, 5])
    for stride in (1, 2):
        lab = draw_sphere_labels(
            (32 // stride, 56 // stride, 56 // stride), points, labels, voxel_size=vs, stride=stride
        )
        probs = np.stack([(lab == c + 1).astype(np.float32) for c in range(len(PARTICLES))])
        picks = component_centroids(probs, voxel_size=vs, stride=stride)
        assert len(picks) == 4
        assert list(picks["particle_type"]) == [PARTICLES[i].name for i in labels]
        assert np.allclose(picks[["z_vox", "y_vox", "x_vox"]].to_numpy(float), points, atol=0.35)
        assert np.allclose(
            picks[["x", "y", "z"]].to_numpy(float),
            voxel_to_angstrom(picks[["z_vox", "y_vox", "x_vox"]].to_numpy(float), vs),
        )
        assert np.allclose(picks["score"], 1.0, atol=0.25)


def test_components_merge_touching_particles_and_filter_specks():
    from cryopoint.post.components import component_centroids

    # Two touching beta-galactosidase balls form one component: the known weakness versus NMS.
    lab = draw_sphere_labels(
        (24, 24, 40), np.array([[12.0, 12.0, 12.0], [12.0, 12.0, 20.0]]), np.array([2, 2]), voxel_size=10.0
    )
    probs = np.stack([(lab == c + 1).astype(np.float32) for c in range(len(PARTICLES))])
    assert len(component_centroids(probs, voxel_size=10.0)) == 1
    speck = np.zeros((6, 16, 16, 16), np.float32)
    speck[3, 8, 8, 8] = 0.9  # one confident ribosome voxel: a tiny fraction of a ribosome ball
    picks = component_centroids(speck, voxel_size=10.0)
    assert len(picks) == 1 and picks["score"].iloc[0] < 0.01
    assert component_centroids(speck, voxel_size=10.0, min_score=0.01).empty
    with pytest.raises(ValueError, match="probs must be"):
        component_centroids(speck[:3], voxel_size=10.0)


def test_stride_grid_matches_the_peak_finder():
    # At stride 2, output voxel j is centred on full voxel 2j + 0.5 (cryopoint.coords.stride_to_full): a ball
    # centred there is symmetric about output voxel j along every axis. The old j * s mapping shifted it by half
    # an output voxel, which makes the profiles lopsided.
    from cryopoint.coords import stride_to_full

    centre = np.array([[stride_to_full(8, 2)] * 3])
    ball = draw_sphere_labels((17, 17, 17), centre, np.array([3]), voxel_size=10.0, stride=2, radius_fraction=0.5) > 0
    for axis in range(3):
        profile = ball.sum(axis=tuple(a for a in range(3) if a != axis))
        assert profile[8] == profile.max() > 0
        np.testing.assert_array_equal(profile[:8], profile[9:][::-1])
