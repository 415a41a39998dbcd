"""Classical LoG blob baseline: planted dark balls of every class size are found, classes by size."""

import numpy as np
import pytest

from cryopoint.baselines.blob import blob_responses, detect_blobs
from cryopoint.coords import voxel_to_angstrom
from cryopoint.errors import InvalidVolumeError
from cryopoint.particles import PARTICLES, get_particle

VS = 10.0
# Size groups the detector can tell apart; inside a group radii differ by at most 15 %.
GROUPS = {"apo-ferritin": 0, "beta-amylase": 0, "beta-galactosidase": 1, "ribosome": 2, "thyroglobulin": 2,
          "virus-like-particle": 2}  # fmt: skip


def _planted(rng, noise=0.3):
    """Six dark balls (one per class, negative contrast) on a 2 x 3 grid, well separated, in noise."""
    shape = (40, 84, 126)
    centres = np.array([[20, 21 + 42 * i, 21 + 42 * j] for i in range(2) for j in range(3)], dtype=float)
    centres += rng.uniform(-1.5, 1.5, size=centres.shape)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    vol = np.zeros(shape, dtype=np.float32)
    for c, p in zip(centres, PARTICLES):
        vol[((grid - c) ** 2).sum(-1) <= (p.radius / VS) ** 2] = -1.0
    vol += rng.normal(0, noise, size=shape).astype(np.float32)
    return 1e-5 * vol + 3e-5, centres  # raw-data-like tiny values: normalisation is exercised


def _best_pick_near(picks, centre_zyx, name):
    xyz = voxel_to_angstrom(centre_zyx[None], VS)[0]
    d = np.linalg.norm(picks[["x", "y", "z"]].to_numpy() - xyz, axis=1)
    near = picks[d <= get_particle(name).match_distance]
    return None if near.empty else near.loc[near["score"].idxmax()]


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_blobs_found_and_sized(seed):
    vol, centres = _planted(np.random.default_rng(seed))
    picks = detect_blobs(vol, VS)
    assert list(picks.columns[:1]) == ["particle_type"]
    assert {"z_vox", "y_vox", "x_vox", "x", "y", "z", "score"} <= set(picks.columns)
    for c, p in zip(centres, PARTICLES):
        best = _best_pick_near(picks, c, p.name)
        assert best is not None, f"{p.name} at {c} not recovered"
        assert GROUPS[best["particle_type"]] == GROUPS[p.name], f"{p.name} labelled {best['particle_type']}"
    # beta-galactosidase (90 Å) is the only size with no neighbour within 30 %: it must be exact.
    assert _best_pick_near(picks, centres[2], "beta-galactosidase")["particle_type"] == "beta-galactosidase"


def test_thresholds_and_scores():
    vol, centres = _planted(np.random.default_rng(2))
    loose = detect_blobs(vol, VS, min_score=0.0)
    assert (loose["score"] >= 0).all() and len(loose) >= 6
    strict = detect_blobs(vol, VS, min_score=0.0, thresholds={name: 1e9 for name in GROUPS})
    assert strict.empty


def test_responses_exclusive_and_nonnegative():
    vol, _ = _planted(np.random.default_rng(3))
    resp, stride = blob_responses(vol, VS, bin_factor=2)
    assert stride == 2 and resp.shape == (6, 20, 42, 63) and resp.dtype == np.float32
    assert (resp >= 0).all() and ((resp > 0).sum(axis=0) <= 1).all()
    full, _ = blob_responses(vol, VS, bin_factor=2, exclusive=False)
    assert ((full > 0).sum(axis=0) > 1).any()


def test_unbinned_is_centred_and_bright_blobs_ignored():
    rng = np.random.default_rng(4)
    vol, centres = _planted(rng, noise=0.1)
    picks = detect_blobs(vol, VS, bin_factor=1)
    best = _best_pick_near(picks, centres[3], "ribosome")
    assert best is not None
    xyz = voxel_to_angstrom(centres[3][None], VS)[0]
    assert np.linalg.norm(best[["x", "y", "z"]].to_numpy(float) - xyz) < 2 * VS
    # Positive contrast (bright balls) is not what protein looks like: no confident picks on them.
    inverted = detect_blobs(6e-5 - vol, VS)
    assert inverted.empty or inverted["score"].max() < 0.5 * picks["score"].max()


def test_bad_volume():
    with pytest.raises(InvalidVolumeError):
        detect_blobs(np.zeros((4, 4)), VS)
    with pytest.raises(ValueError, match="bin_factor"):
        blob_responses(np.zeros((8, 8, 8)), VS, bin_factor=0)


@pytest.mark.parametrize("bin_factor", [2, 4])
def test_binned_detection_keeps_the_full_resolution_frame(bin_factor):
    # A ball centred on a response voxel's centre (full voxel j*b + (b-1)/2) must come back there, not
    # (b-1)/2 voxels further: the peak finder already maps response voxels onto the full-resolution grid.
    from cryopoint.coords import stride_to_full

    c = stride_to_full(24 // bin_factor, bin_factor)
    shape = (48, 48, 48)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    r = get_particle("beta-galactosidase").radius / VS
    vol = np.where(((grid - c) ** 2).sum(-1) <= r**2, -1.0, 0.0).astype(np.float32) * 1e-5 + 3e-5
    vol += np.random.default_rng(5).normal(0, 1e-7, size=shape).astype(np.float32)
    picks = detect_blobs(vol, VS, bin_factor=bin_factor)
    best = picks.loc[picks["score"].idxmax()]
    np.testing.assert_allclose(best[["z_vox", "y_vox", "x_vox"]].to_numpy(float), [c, c, c], atol=0.25)
