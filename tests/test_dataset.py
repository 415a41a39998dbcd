"""Crop sampling and the training Dataset: shapes, targets on planted particles, balance, determinism, loading."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryopoint.config import DataConfig, HeatmapTargetOptions, SegmentationTargetOptions
from cryopoint.coords import voxel_to_angstrom
from cryopoint.data.dataset import CropDataset, RunData, load_runs
from cryopoint.data.sampling import CropSampler, extract_crop, points_near_crop
from cryopoint.errors import ConfigError, DataNotFoundError
from cryopoint.particles import PARTICLE_NAMES
from tests._layout_helpers import CHALLENGE_VOXEL_SIZE, write_challenge_store

VS = 10.0


def make_run(name, shape, points_zyx, labels, seed=0):
    """A RunData with noise and a dark (negative-contrast) cube at every particle."""
    rng = np.random.default_rng(seed)
    volume = rng.normal(0, 0.1, shape).astype(np.float32)
    for (z, y, x), _ in zip(np.asarray(points_zyx, dtype=int), labels):
        volume[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] -= 3.0
    xyz = voxel_to_angstrom(np.asarray(points_zyx, dtype=float).reshape(-1, 3), VS)
    picks = pd.DataFrame(
        {"particle_type": [PARTICLE_NAMES[k] for k in labels], "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    )
    return RunData(name, volume, VS, picks)


@pytest.fixture
def runs():
    rng = np.random.default_rng(0)
    common = rng.integers(2, [22, 46, 46], size=(40, 3))  # 40 ribosomes (label 3)
    rare = np.array([[12, 24, 24]])  # one apo-ferritin (label 0)
    a = make_run("A", (24, 48, 48), np.vstack([common[:20], rare]), [3] * 20 + [0], seed=1)
    b = make_run("B", (24, 48, 48), common[20:], [3] * 20, seed=2)
    return [a, b]


def test_rundata_converts_picks_to_voxels_and_labels(runs):
    run = runs[0]
    assert run.points_zyx.shape == (21, 3) and run.labels.dtype == np.int64
    np.testing.assert_allclose(run.points_zyx[-1], [12, 24, 24])
    assert run.labels[-1] == 0 and set(run.labels[:-1]) == {3}
    assert run.shape == (24, 48, 48)


# ---- sampler ---------------------------------------------------------------------------------------------------


def sampler_for(runs, **kwargs):
    return CropSampler(
        [r.shape for r in runs], [r.points_zyx for r in runs], [r.labels for r in runs], (8, 16, 16), **kwargs
    )


def test_positive_fraction_is_respected(runs):
    sampler = sampler_for(runs, positive_fraction=0.3)
    rng = np.random.default_rng(0)
    specs = [sampler.sample(rng) for _ in range(3000)]
    frac = np.mean([s.positive for s in specs])
    assert abs(frac - 0.3) < 0.04  # binomial sd is 0.008
    assert all(s.label == -1 for s in specs if not s.positive)


def test_rare_classes_get_their_share_and_positives_contain_their_particle(runs):
    sampler = sampler_for(runs, positive_fraction=1.0)
    rng = np.random.default_rng(1)
    specs = [sampler.sample(rng) for _ in range(1000)]
    share_rare = np.mean([s.label == 0 for s in specs])
    assert 0.44 < share_rare < 0.56, "1 apo-ferritin vs 40 ribosomes must still get half the positive crops"
    for s in specs[:200]:
        run = runs[s.run]
        pts, labs = points_near_crop(run.points_zyx, run.labels, s.start, (8, 16, 16), halo=0)
        assert s.label in labs, "a positive crop contains a particle of its class"
        assert all(0 <= a and a + n <= dim for a, n, dim in zip(s.start, (8, 16, 16), run.shape))


def test_class_weights_steer_positive_crops(runs):
    weights = [0, 1, 1, 1, 1, 1]  # never choose apo-ferritin
    sampler = sampler_for(runs, positive_fraction=1.0, class_weights=weights)
    rng = np.random.default_rng(2)
    assert {sampler.sample(rng).label for _ in range(100)} == {3}
    with pytest.raises(ConfigError, match="catalogue order"):
        sampler_for(runs, class_weights=[1, 2])


def test_uniform_crops_cover_the_volume_and_stay_inside(runs):
    sampler = sampler_for(runs, positive_fraction=0.0)
    rng = np.random.default_rng(3)
    starts = np.array([sampler.sample(rng).start for _ in range(500)])
    assert starts.min(axis=0).tolist() == [0, 0, 0]
    assert starts.max(axis=0).tolist() == [24 - 8, 48 - 16, 48 - 16]


def test_runs_without_particles_give_uniform_crops():
    empty = make_run("E", (8, 16, 16), np.zeros((0, 3)), [])
    sampler = sampler_for([empty], positive_fraction=1.0)
    assert not sampler.sample(np.random.default_rng(0)).positive


def test_volume_smaller_than_crop_is_centred_and_padded():
    small = make_run("S", (4, 16, 10), [[2, 8, 5]], [3])
    sampler = sampler_for([small], positive_fraction=1.0)
    spec = sampler.sample(np.random.default_rng(0))
    assert spec.start[0] == -2 and spec.start[2] == -3  # centred where the volume is too small
    crop = extract_crop(small.volume, spec.start, (8, 16, 16), pad_value=0.0)
    assert crop.shape == (8, 16, 16) and crop.dtype == np.float32
    assert np.all(crop[:2] == 0) and np.all(crop[6:] == 0)
    np.testing.assert_array_equal(crop[2:6, :, 3:13], small.volume[:, spec.start[1] : spec.start[1] + 16])


def test_extract_crop_matches_slicing_inside():
    vol = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    np.testing.assert_array_equal(extract_crop(vol, (1, 2, 3), (4, 4, 4)), vol[1:5, 2:6, 3:7])
    outside = extract_crop(vol, (10, 0, 0), (2, 2, 2), pad_value=-1.0)
    assert np.all(outside == -1.0)


def test_points_near_crop_keeps_halo_and_shifts_to_crop_coordinates():
    pts = np.array([[5.0, 5, 5], [5, 5, 12.5], [5, 5, 20]])
    kept, labels = points_near_crop(pts, np.array([0, 1, 2]), (0, 0, 0), (10, 10, 10), halo=4)
    assert labels.tolist() == [0, 1]
    kept, _ = points_near_crop(pts, np.array([0, 1, 2]), (2, 3, 4), (10, 10, 10), halo=0)
    np.testing.assert_allclose(kept, [[3, 2, 1], [3, 2, 8.5]])


# ---- dataset ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
def test_heatmap_items_have_requested_shapes_and_dtypes(runs, stride):
    ds = CropDataset(runs, crop_size=(8, 16, 16), output_stride=stride, samples_per_epoch=4, augment=True, seed=0)
    assert len(ds) == 4
    item = ds[0]
    assert item["image"].shape == (1, 8, 16, 16) and item["image"].dtype == torch.float32
    assert item["target"].shape == (6, 8 // stride, 16 // stride, 16 // stride)
    assert item["target"].dtype == torch.float32
    assert item["run"] in {"A", "B"} and item["center"].shape == (3,)
    with pytest.raises(IndexError):
        ds[4]


def test_segmentation_items_are_int64_labels(runs):
    ds = CropDataset(
        runs,
        crop_size=(8, 16, 16),
        output_stride=2,
        target_kind="segmentation",
        samples_per_epoch=8,
        positive_fraction=1.0,
        augment=False,
        target_options=SegmentationTargetOptions(radius_fraction=0.5),
    )
    targets = [ds[i]["target"] for i in range(8)]
    assert all(t.shape == (4, 8, 8) and t.dtype == torch.int64 for t in targets)
    assert any((t > 0).any() for t in targets), "positive crops paint particle labels"


def test_heatmap_targets_peak_at_planted_particles(runs):
    ds = CropDataset(runs, crop_size=(8, 16, 16), positive_fraction=1.0, samples_per_epoch=30, augment=False)
    crop = np.array([8, 16, 16])
    for i in range(30):
        item = ds[i]
        run = {r.name: r for r in runs}[item["run"]]
        start = item["center"].numpy() - crop // 2
        target = item["target"].numpy()
        inside = np.all((run.points_zyx >= start) & (run.points_zyx < start + crop), axis=1)
        assert inside.any()
        for p, label in zip(run.points_zyx[inside].astype(int) - start, run.labels[inside]):
            assert target[label][tuple(p)] == pytest.approx(1.0), "peak exactly 1 at a particle centre"
        # The image is the volume at the same place: the dark cubes are where the peaks are.
        np.testing.assert_array_equal(
            item["image"][0].numpy(), run.volume[tuple(slice(a, a + n) for a, n in zip(start, crop))]
        )
        assert target.max() <= 1.0 and target[[c for c in range(6) if c not in run.labels]].max() < 1e-6


def test_augmented_volume_and_targets_move_together(runs):
    ds = CropDataset(runs, crop_size=(8, 16, 16), positive_fraction=1.0, samples_per_epoch=20, augment=True, seed=5)
    for i in range(20):
        item = ds[i]
        image, target = item["image"][0].numpy(), item["target"].numpy().max(axis=0)
        peaks = np.argwhere(target == 1.0)
        assert len(peaks), "a positive crop has a peak"
        # Every peak sits in a dark planted cube (contrast -3 against noise of sd 0.1, before intensity aug).
        for p in peaks:
            assert image[tuple(p)] < np.median(image) - 1.0 * image.std()


def test_same_seed_epoch_index_gives_identical_samples_and_epochs_differ(runs):
    def make():
        return CropDataset(runs, crop_size=(8, 16, 16), output_stride=2, samples_per_epoch=6, augment=True, seed=7)

    a, b = make(), make()
    b[3], b[1]  # order and history of calls must not matter
    for i in range(6):
        torch.testing.assert_close(a[i]["image"], b[i]["image"], rtol=0, atol=0)
        torch.testing.assert_close(a[i]["target"], b[i]["target"], rtol=0, atol=0)
    a.set_epoch(1)
    assert not all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(6))
    b.set_epoch(1)
    assert torch.equal(a[2]["image"], b[2]["image"])
    other_seed = CropDataset(runs, crop_size=(8, 16, 16), output_stride=2, samples_per_epoch=6, seed=8)
    assert not all(torch.equal(other_seed[i]["image"], b[i]["image"]) for i in range(6))


def test_dataloader_workers_do_not_change_samples(runs):
    ds = CropDataset(runs, crop_size=(8, 16, 16), output_stride=2, samples_per_epoch=6, augment=True, seed=3)
    ds.set_epoch(2)
    serial = next(iter(torch.utils.data.DataLoader(ds, batch_size=6, num_workers=0)))
    parallel = next(iter(torch.utils.data.DataLoader(ds, batch_size=6, num_workers=2)))
    torch.testing.assert_close(serial["image"], parallel["image"], rtol=0, atol=0)
    torch.testing.assert_close(serial["target"], parallel["target"], rtol=0, atol=0)


def test_particles_just_outside_the_crop_contribute_their_tails():
    outside = make_run("O", (8, 16, 16), [[4, 8, 20]], [3])  # a ribosome 5 voxels past the x face
    ds = CropDataset([outside], crop_size=(8, 16, 16), positive_fraction=0.0, samples_per_epoch=1, augment=False)
    target = ds[0]["target"].numpy()
    sigma = 0.5 * 150.0 / VS  # the targets' default sigma_factor x ribosome radius, in voxels
    assert target[3, 4, 8, 15] == pytest.approx(np.exp(-0.5 * (5 / sigma) ** 2), rel=1e-4)
    far = CropDataset(
        [outside],
        crop_size=(8, 16, 16),
        positive_fraction=0.0,
        samples_per_epoch=1,
        augment=False,
        target_options=HeatmapTargetOptions(sigma_factor=0.1),
    )
    assert far[0]["target"].max() == 0.0, "a narrow Gaussian 5 voxels away does not reach the crop"


def test_non_square_crops_augment_without_xy_rotations(runs):
    ds = CropDataset(runs, crop_size=(8, 16, 32), samples_per_epoch=8, augment=True, seed=1)
    assert all(ds[i]["image"].shape == (1, 8, 16, 32) and ds[i]["target"].shape == (6, 8, 16, 32) for i in range(8))
    with pytest.raises(ConfigError, match="square"):
        CropDataset(runs, crop_size=(8, 16, 32), augment_kwargs={"rot90": True})
    aniso = [make_run("Z", (8, 16, 16), [[4, 8, 8]], [3])]
    aniso[0].voxel_size = (10.0, 10.0, 12.0)
    with pytest.raises(ConfigError, match="anisotropic runs Z"):
        CropDataset(aniso, crop_size=(8, 16, 16))
    assert len(CropDataset(aniso, crop_size=(8, 16, 16), augment=False)) == DataConfig.samples_per_epoch  # one home


def test_dataset_config_errors(runs):
    with pytest.raises(ConfigError, match="divisible"):
        CropDataset(runs, crop_size=(8, 15, 16), output_stride=2)
    with pytest.raises(ConfigError, match="target_kind"):
        CropDataset(runs, crop_size=(8, 16, 16), target_kind="boxes")
    with pytest.raises(ConfigError, match="positive_fraction"):
        CropDataset(runs, crop_size=(8, 16, 16), positive_fraction=1.5)


# ---- loading from the challenge layout ---------------------------------------------------------------------------


def test_load_runs_reads_normalises_and_converts(tmp_path):
    from cryopoint.data.normalize import normalize_volume

    picks, volumes = write_challenge_store(tmp_path / "data", runs=("TS_5_4", "TS_69_2"), shape=(8, 16, 16))
    runs = load_runs(tmp_path / "data")
    assert [r.name for r in runs] == ["TS_5_4", "TS_69_2"]
    run = runs[0]
    assert run.voxel_size == pytest.approx((CHALLENGE_VOXEL_SIZE,) * 3)
    assert run.volume.dtype == np.float32 and run.volume.shape == (8, 16, 16)
    np.testing.assert_allclose(run.volume, normalize_volume(volumes["TS_5_4"]), rtol=1e-6)
    truth = picks[picks["experiment"] == "TS_5_4"]
    assert len(run.points_zyx) == len(truth) == 12
    expected = np.sort(truth["x"].to_numpy() / CHALLENGE_VOXEL_SIZE)
    np.testing.assert_allclose(np.sort(run.points_zyx[:, 2]), expected, rtol=1e-6)
    with pytest.raises(DataNotFoundError, match="TS_69_2"):
        load_runs(tmp_path / "data", ["TS_1_1"])


def test_load_runs_memory_maps_a_cache_and_invalidates_it(tmp_path, monkeypatch):
    import cryopoint.io

    write_challenge_store(tmp_path / "data", runs=("TS_5_4",), shape=(8, 16, 16))
    cache = tmp_path / "cache"
    first = load_runs(tmp_path / "data", cache_dir=cache)[0]
    assert isinstance(first.volume, np.memmap) and len(list(cache.glob("*.npy"))) == 1

    reads = []
    real_read = cryopoint.io.read_tomogram
    monkeypatch.setattr(cryopoint.io, "read_tomogram", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    second = load_runs(tmp_path / "data", cache_dir=cache)[0]
    assert reads == [], "a cached volume is not read again"
    np.testing.assert_array_equal(np.asarray(second.volume), np.asarray(first.volume))
    assert second.voxel_size == first.voxel_size

    # Rewriting the source (new content, new mtime) gives a new cache entry with the new data.
    write_challenge_store(tmp_path / "data", runs=("TS_5_4",), shape=(8, 16, 16), seed=9)
    third = load_runs(tmp_path / "data", cache_dir=cache)[0]
    assert len(reads) == 1 and len(list(cache.glob("*.npy"))) == 2
    assert not np.array_equal(np.asarray(third.volume), np.asarray(first.volume))


def test_stride2_targets_decode_through_the_peak_finder_at_the_true_positions():
    """Dataset targets and cryopoint.post.nms share one stride mapping: a half-voxel slip (5 Å) would show here."""
    from cryopoint.post.nms import find_peaks

    points = np.array([[8.3, 14.6, 17.2], [15.7, 31.4, 30.9], [9.5, 33.2, 12.8]])
    run = make_run("P", (24, 48, 48), points, [0, 3, 0])
    ds = CropDataset([run], crop_size=(16, 32, 32), output_stride=2, positive_fraction=1.0, augment=False)
    checked = 0
    for i in range(12):
        item = ds[i]
        start = item["center"].numpy() - np.array([8, 16, 16])
        peaks = find_peaks(item["target"].numpy(), voxel_size=VS, stride=2, refine=True, min_score=0.5)
        found = peaks[["z_vox", "y_vox", "x_vox"]].to_numpy()
        for p, label in zip(points - start, run.labels, strict=True):
            if np.all((p >= 3) & (p <= np.array([16, 32, 32]) - 4)):  # well inside: the refinement sees both sides
                mine = found[(peaks["particle_type"] == PARTICLE_NAMES[label]).to_numpy()]
                assert len(mine), f"no peak for particle at {p}"
                assert np.linalg.norm(mine - p, axis=1).min() < 0.25, (p, mine)
                checked += 1
    assert checked >= 6


def test_load_runs_drops_picks_outside_the_volume_and_refuses_runs_with_none_inside(tmp_path):
    from cryopoint.errors import PointsOutsideVolumeError, PointsOutsideVolumeWarning

    shape = (8, 16, 16)
    picks, _ = write_challenge_store(tmp_path / "a", runs=("TS_5_4",), shape=shape)
    picks.loc[0, "x"] = 40 * CHALLENGE_VOXEL_SIZE  # past the last x voxel (15)
    write_challenge_store(tmp_path / "b", runs=("TS_5_4",), shape=shape, picks=picks)
    with pytest.warns(PointsOutsideVolumeWarning, match="1 of 12"):
        (run,) = load_runs(tmp_path / "b")
    assert len(run.picks) == len(run.points_zyx) == 11 and run.points_zyx[:, 2].max() < shape[2]

    in_voxels = picks.assign(x=picks.x * 100, y=picks.y * 100, z=picks.z * 100)  # a units slip
    write_challenge_store(tmp_path / "c", runs=("TS_5_4",), shape=shape, picks=in_voxels)
    with pytest.raises(PointsOutsideVolumeError, match="in Å"), pytest.warns(PointsOutsideVolumeWarning):
        load_runs(tmp_path / "c")


def test_rundata_pickles_a_memory_mapped_volume_by_path(tmp_path):
    """DataLoader workers under spawn/forkserver get the dataset by pickle: memmaps must stay lazy, not be copied."""
    import pickle

    write_challenge_store(tmp_path / "data", runs=("TS_5_4",), shape=(16, 64, 64))
    (run,) = load_runs(tmp_path / "data", cache_dir=tmp_path / "cache")
    blob = pickle.dumps(run)
    assert len(blob) < run.volume.nbytes / 4, "the volume's data must not travel in the pickle"
    back = pickle.loads(blob)
    assert isinstance(back.volume, np.memmap) and back.name == run.name and back.voxel_size == run.voxel_size
    np.testing.assert_array_equal(np.asarray(back.volume), np.asarray(run.volume))
    np.testing.assert_array_equal(back.points_zyx, run.points_zyx)
    in_memory = RunData("m", np.asarray(run.volume).copy(), VS, run.picks)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(in_memory)).volume, in_memory.volume)
