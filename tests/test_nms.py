"""Peak extraction: identical to the scipy reference on every kind of volume; picks table conventions."""

import numpy as np
import pandas as pd
import pytest
import torch

import cryopoint.post.nms as nms
from cryopoint.coords import full_to_stride, stride_to_full
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.nms import (
    PEAK_COLUMNS,
    find_peaks,
    kernel_size,
    local_maxima,
    local_maxima_torch,
    reference_local_maxima,
)


def blobs(rng, shape=(14, 22, 20), n=6, sigma=1.5, noise=0.02):
    vol = rng.random(shape).astype(np.float32) * noise
    zz, yy, xx = np.indices(shape)
    for c, a in zip(rng.uniform(0, 1, (n, 3)) * shape, rng.uniform(0.2, 1.0, n)):
        g = a * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * sigma**2))
        vol = np.maximum(vol, g.astype(np.float32))
    return vol


def volumes(rng):
    shape = (9, 13, 11)
    return {
        "random": rng.random(shape).astype(np.float32),
        "blobs": blobs(rng),
        "ties": (rng.integers(0, 4, shape) / 4).astype(np.float32),  # plateaus everywhere
        "constant": np.full(shape, 0.5, np.float32),  # every voxel is a tied maximum
        "border": np.pad(np.ones((1, 1, 1), np.float32), ((0, 8), (12, 0), (0, 10))),  # corner peak
        "negative": -rng.random(shape).astype(np.float32),
    }


def as_set(a):
    return set(map(tuple, np.asarray(a).tolist()))


@pytest.mark.parametrize("force_sparse", [False, True])  # True: the sparse cascade even on dense data
@pytest.mark.parametrize("kernel", [(1, 1, 1), (1, 3, 1), (3, 3, 3), (7, 7, 7), (3, 5, 9), (15, 15, 15)])
@pytest.mark.parametrize("min_score", [0.0, 0.3, -1.0])
def test_cpu_and_torch_paths_equal_the_reference(rng, monkeypatch, kernel, min_score, force_sparse):
    if force_sparse:
        monkeypatch.setattr(nms, "DENSE_FRACTION", np.inf)
        monkeypatch.setattr(nms, "DENSE_WORK", np.inf)
    for name, vol in volumes(rng).items():
        ref = reference_local_maxima(vol, kernel, min_score)
        ours = local_maxima(vol, kernel, min_score)
        assert ours.dtype == np.int64 and ours.shape[1:] == (3,)
        np.testing.assert_array_equal(ours, ref, err_msg=name)  # same set, same C order
        np.testing.assert_array_equal(local_maxima_torch(torch.from_numpy(vol), kernel, min_score).numpy(), ref)


def test_reference_definition_by_hand():
    vol = np.zeros((5, 5, 5), np.float32)
    vol[1, 1, 1], vol[3, 3, 3], vol[1, 1, 3] = 0.9, 0.8, 0.9  # two equal maxima 2 voxels apart
    assert as_set(reference_local_maxima(vol, (3, 3, 3), 0.1)) == {(1, 1, 1), (3, 3, 3), (1, 1, 3)}
    assert as_set(reference_local_maxima(vol, (5, 5, 5), 0.1)) == {(1, 1, 1), (1, 1, 3)}  # tie: both kept
    assert as_set(local_maxima(vol, (5, 5, 5), 0.1)) == {(1, 1, 1), (1, 1, 3)}
    assert as_set(local_maxima(vol, (5, 5, 5), 0.85)) == {(1, 1, 1), (1, 1, 3)}
    assert local_maxima(vol, (3, 3, 3), 0.95).shape == (0, 3)


def test_even_or_bad_windows_are_refused():
    vol = np.zeros((4, 4, 4), np.float32)
    for bad in [(4, 3, 3), (3, 3), (0, 3, 3)]:
        with pytest.raises(ConfigError, match="odd"):
            local_maxima(vol, bad, 0.1)
        with pytest.raises(ConfigError, match="odd"):
            local_maxima_torch(torch.from_numpy(vol), bad, 0.1)


def test_kernel_size_rule():
    assert kernel_size(60.0, 10.012444) == (7, 7, 7)  # half-width round(0.5 * 60 / 10) = 3
    assert kernel_size(150.0, 10.0) == (17, 17, 17)  # round(7.5) = 8 (half up)
    assert kernel_size(60.0, 10.0, stride=2) == (5, 5, 5)  # half-width floor(1.5 + 0.5) = 2
    assert kernel_size(60.0, (20.0, 10.0, 10.0)) == (5, 7, 7)
    assert kernel_size(10.0, 10.0) == (3, 3, 3)  # never below 3
    assert kernel_size(60.0, 10.0, kernel_factor=1.0) == (13, 13, 13)


def test_stride_mapping_round_trip():
    idx = np.array([0.0, 1.0, 7.25])
    assert stride_to_full(0, 1) == 0
    np.testing.assert_allclose(stride_to_full(idx, 4), [1.5, 5.5, 30.5])
    np.testing.assert_allclose(full_to_stride(stride_to_full(idx, 4), 4), idx)


def planted(shape=(6, 20, 24, 24)):
    h = np.zeros(shape, np.float32)
    h[0, 5, 6, 7] = 0.9
    h[0, 15, 18, 3] = 0.4
    h[3, 10, 10, 10] = 0.7
    return h


def test_find_peaks_table_units_and_order():
    df = find_peaks(planted(), voxel_size=(10.0, 10.0, 10.0), min_score=0.1)
    assert tuple(df.columns) == PEAK_COLUMNS
    assert list(df.particle_type) == ["apo-ferritin", "apo-ferritin", "ribosome"]
    np.testing.assert_allclose(df[["z_vox", "y_vox", "x_vox"]].iloc[0], [5, 6, 7])
    np.testing.assert_allclose(df[["x", "y", "z"]].iloc[0], [70.0, 60.0, 50.0])  # Å, x y z order
    np.testing.assert_allclose(df.score, [0.9, 0.4, 0.7], rtol=1e-6)
    assert len(find_peaks(planted(), voxel_size=10.0, min_score=0.5)) == 2
    assert list(find_peaks(planted(), voxel_size=10.0, top_k=1).score.round(3)) == [0.9, 0.7]


def test_find_peaks_stride_maps_to_full_resolution():
    df = find_peaks(planted(), voxel_size=10.0, stride=2, min_score=0.1)
    np.testing.assert_allclose(df[["z_vox", "y_vox", "x_vox"]].iloc[0], [10.5, 12.5, 14.5])
    np.testing.assert_allclose(df[["x", "y", "z"]].iloc[0], [145.0, 125.0, 105.0])


def test_find_peaks_inputs_agree_numpy_torch_and_dtypes():
    h = np.stack([blobs(np.random.default_rng(i)) for i in range(6)])
    a = find_peaks(h, voxel_size=10.0, min_score=0.1)
    b = find_peaks(torch.from_numpy(h), voxel_size=10.0, min_score=0.1)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) > 6
    assert len(find_peaks((h > 0.5).astype(np.uint8), voxel_size=10.0, min_score=1)) > 0  # ints are cast
    half = find_peaks(h.astype(np.float16), voxel_size=10.0, min_score=0.1)
    assert len(half) == len(find_peaks(torch.from_numpy(h).half(), voxel_size=10.0, min_score=0.1)) > 6
    assert len(find_peaks(np.full((6, 5, 5, 5), 0.5, np.float16), voxel_size=10.0)) == 6 * 125  # dense fallback


def test_find_peaks_empty_and_bad_input():
    df = find_peaks(np.zeros((6, 4, 4, 4), np.float32), voxel_size=10.0)
    assert df.empty and tuple(df.columns) == PEAK_COLUMNS
    with pytest.raises(InvalidVolumeError, match="C = 6"):
        find_peaks(np.zeros((5, 4, 4, 4)), voxel_size=10.0)
    with pytest.raises(InvalidVolumeError, match="shape"):
        find_peaks(np.zeros((4, 4, 4)), voxel_size=10.0)
    bad = np.zeros((6, 4, 4, 4), np.float32)
    bad[2, 1, 1, 1] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN"):
        find_peaks(bad, voxel_size=10.0)
    with pytest.raises(InvalidVolumeError, match="NaN"):
        find_peaks(torch.from_numpy(bad), voxel_size=10.0)
    with pytest.raises(InvalidVolumeError, match="NaN"):
        local_maxima_torch(torch.from_numpy(bad[2]), (3, 3, 3), 0.5)


def test_find_peaks_class_names_subset():
    h = planted()[:2]  # channel 0 has two peaks, channel 1 none
    df = find_peaks(h, voxel_size=10.0, class_names=("ribosome", "thyroglobulin"), min_score=0.1)
    assert list(df.particle_type) == ["ribosome", "ribosome"]
    assert set(find_peaks(planted(), voxel_size=10.0).particle_type) == {PARTICLE_NAMES[0], PARTICLE_NAMES[3]}


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0, 6.0])
def test_refinement_recovers_subvoxel_positions(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    shape = (32, 32, 32)
    zz, yy, xx = np.indices(shape)
    for _ in range(5):
        centre = np.array([15.0, 16.0, 14.0]) + rng.uniform(-0.5, 0.5, 3)
        vol = np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / (2 * sigma**2))
        h = np.zeros((6, *shape), np.float32)
        h[0] = vol
        coarse = find_peaks(h, voxel_size=10.0)
        fine = find_peaks(h, voxel_size=10.0, refine=True)
        assert len(fine) == 1
        err = np.abs(fine[["z_vox", "y_vox", "x_vox"]].to_numpy()[0] - centre)
        assert err.max() <= 0.25, (sigma, centre, err)
        assert err.max() < np.abs(coarse[["z_vox", "y_vox", "x_vox"]].to_numpy()[0] - centre).max() + 1e-9


def test_refinement_stays_put_at_borders_and_on_flat_tops():
    h = np.zeros((6, 5, 5, 5), np.float32)
    h[1, 0, 2, 2] = 1.0  # touches the z border: z offset stays 0
    h[1, 0, 2, 3] = 0.5  # x profile asymmetric: moves towards x=3
    df = find_peaks(h, voxel_size=10.0, refine=True, min_score=0.9)
    assert df.z_vox.iloc[0] == 0.0 and df.y_vox.iloc[0] == 2.0 and 2.0 < df.x_vox.iloc[0] <= 2.5


@pytest.mark.parametrize("refine", [False, True])
def test_device_path_equals_cpu_path(rng, refine):
    """The code CUDA tensors take, run on CPU tensors: same peaks, order, scores and refined positions."""
    vol = blobs(rng, shape=(16, 24, 24), n=8, sigma=2.0)
    for kernel, top_k in [((7, 7, 7), None), ((3, 5, 5), 3)]:
        cpu = nms._class_peaks(vol, kernel, 0.1, top_k, refine)
        dev = nms._class_peaks_torch(torch.from_numpy(vol), kernel, 0.1, top_k, refine)
        assert len(cpu[0]) > 0
        np.testing.assert_allclose(dev[0], cpu[0])
        np.testing.assert_array_equal(dev[1], cpu[1])


def test_candidates_across_chunks_and_nan(rng):
    flat = rng.random(1000).astype(np.float32)
    for chunk in (7, 64, 5000):
        np.testing.assert_array_equal(nms._candidates(flat, 0.7, chunk=chunk), np.flatnonzero(flat >= 0.7))
    flat[993] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN"):
        nms._candidates(flat, 0.7, chunk=64)
    assert nms._candidates(flat[:0], 0.7).size == 0


def test_dense_fallback_is_taken_for_noise_not_for_blobs(rng, monkeypatch):
    calls = []
    real = nms.reference_local_maxima
    monkeypatch.setattr(nms, "reference_local_maxima", lambda *a: calls.append(1) or real(*a))
    noise = rng.random((20, 40, 40)).astype(np.float32)
    np.testing.assert_array_equal(local_maxima(noise, (7, 7, 7), 0.5), real(noise, (7, 7, 7), 0.5))
    assert calls == [1]  # half the voxels are candidates
    sparse_noise = np.where(noise > 0.97, noise, 0).astype(np.float32)  # 3% candidates, isolated
    np.testing.assert_array_equal(local_maxima(sparse_noise, (15, 15, 15), 0.5), real(sparse_noise, (15, 15, 15), 0.5))
    assert calls == [1, 1]  # too many survivors for the window tests
    vol = blobs(rng, shape=(20, 40, 40), sigma=2.0)
    np.testing.assert_array_equal(local_maxima(vol, (7, 7, 7), 0.1), real(vol, (7, 7, 7), 0.1))
    assert calls == [1, 1]  # smooth blobs stay on the sparse path


def test_torch_cascade_falls_back_to_the_dense_pool_for_noise_only(rng, monkeypatch):
    """The device path: sparse cascade on smooth heatmaps, separable max-pool when sparse tests cost more."""
    calls = []
    dense = nms._dense_local_maxima_torch
    monkeypatch.setattr(nms, "_dense_local_maxima_torch", lambda *a: calls.append(1) or dense(*a))

    def check(vol, kernel, min_score):
        ours = local_maxima_torch(torch.from_numpy(vol), kernel, min_score).numpy()
        np.testing.assert_array_equal(ours, reference_local_maxima(vol, kernel, min_score))

    noise = rng.random((20, 40, 40)).astype(np.float32)
    check(noise, (7, 7, 7), 0.5)
    assert calls == [1]  # half the voxels are candidates
    check(np.where(noise > 0.97, noise, 0).astype(np.float32), (15, 15, 15), 0.5)
    assert calls == [1, 1]  # isolated candidates, but too many window tests left
    vol = blobs(rng, shape=(20, 40, 40), sigma=2.0)
    check(vol, (7, 7, 7), 0.1)
    check(vol, (3, 1, 5), 0.1)  # a window one voxel wide along y skips that axis's face tests
    assert calls == [1, 1]  # smooth blobs stay on the sparse path
    assert len(local_maxima_torch(torch.zeros(4, 5, 6), (3, 3, 3), 0.5)) == 0  # no candidates at all
    for kernel in ((3, 3, 3), (9, 5, 7)):  # the dense fallback alone equals the reference too
        np.testing.assert_array_equal(
            dense(torch.from_numpy(vol), kernel, 0.1).numpy(), reference_local_maxima(vol, kernel, 0.1)
        )


def test_torch_cascade_gathers_in_chunks(rng, monkeypatch):
    """Window tests split into blocks (bounded memory) give the same peaks as one block."""
    vol = blobs(rng, shape=(16, 30, 30), n=10, sigma=1.5)
    whole = local_maxima_torch(torch.from_numpy(vol), (7, 7, 7), 0.05).numpy()
    monkeypatch.setattr(nms, "_GATHER_CHUNK", 50)  # a few survivors per block
    np.testing.assert_array_equal(local_maxima_torch(torch.from_numpy(vol), (7, 7, 7), 0.05).numpy(), whole)
    np.testing.assert_array_equal(whole, reference_local_maxima(vol, (7, 7, 7), 0.05))


def test_one_dispatch_routes_by_input_type_and_device(monkeypatch):
    """find_peaks reaches a backend only through _class_peaks: numpy for arrays and CPU tensors, torch elsewhere."""
    calls = []
    real_numpy = nms._class_peaks_numpy
    monkeypatch.setattr(nms, "_class_peaks_numpy", lambda v, *a: calls.append(("numpy", type(v))) or real_numpy(v, *a))
    empty = (np.zeros((0, 3)), np.zeros(0))
    monkeypatch.setattr(nms, "_class_peaks_torch", lambda v, *a: calls.append(("torch", v.device.type)) or empty)
    h = planted()
    a, b = find_peaks(h, voxel_size=10.0), find_peaks(torch.from_numpy(h), voxel_size=10.0)
    assert calls == [("numpy", np.ndarray)] * 12  # CPU tensors take the numpy code too
    pd.testing.assert_frame_equal(a, b)
    calls.clear()
    # A meta tensor stands in for an accelerator (no data, so it could never pass through the numpy code).
    assert find_peaks(torch.empty(h.shape, device="meta"), voxel_size=10.0).empty
    assert calls == [("torch", "meta")] * 6
