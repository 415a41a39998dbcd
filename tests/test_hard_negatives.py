"""Hard negatives: decoys mined from the tomogram (LoG blobs away from labels) and crops centred on them."""

from pathlib import Path

import numpy as np
import pytest

from cryopoint.config import load_config
from cryopoint.data.sampling import CropSampler
from cryopoint.engine.hard_negatives import mine_decoys
from cryopoint.errors import ConfigError
from cryopoint.particles import get_particle

VS = (10.0, 10.0, 10.0)
SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def _ball(vol, centre, radius_vox, value):
    z, y, x = np.ogrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    r2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    vol[r2 <= radius_vox**2] += value


def _scene():
    """A noisy volume with two labelled ribosome-sized balls and three unlabelled dense beads of decreasing
    darkness (protein is dark: negative values)."""
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 0.05, size=(48, 96, 160)).astype(np.float32)
    labelled = np.array([[24.0, 30.0, 30.0], [24.0, 70.0, 40.0]])
    for c in labelled:
        _ball(vol, c, 8, -1.0)
    beads = np.array([[24.0, 30.0, 100.0], [24.0, 70.0, 130.0], [24.0, 30.0, 140.0]])
    for c, dark in zip(beads, (-3.0, -2.0, -1.5)):
        _ball(vol, c, 6, dark)
    labels = np.full(2, get_particle("ribosome").label)
    return vol, labelled, labels, beads


def test_decoys_are_the_unlabelled_blobs_strongest_first():
    vol, labelled, labels, beads = _scene()
    decoys = mine_decoys(vol, VS, labelled, labels, count=3)
    assert decoys.shape == (3, 3)
    # Each decoy sits on a bead (within the LoG's 2x binning), in order of darkness; none on a labelled ball.
    for decoy, bead in zip(decoys, beads):
        assert np.linalg.norm(decoy - bead) <= 2.5, (decoy, bead)
    dist_to_labels = np.linalg.norm(decoys[:, None] - labelled[None], axis=-1) * 10.0
    assert dist_to_labels.min() > get_particle("ribosome").radius
    # Without labels the labelled balls are blobs like any other: the miner finds them too.
    unlabelled = mine_decoys(vol, VS, np.zeros((0, 3)), np.zeros(0, dtype=int), count=10)
    assert all(np.linalg.norm(unlabelled - c, axis=1).min() <= 2.5 for c in labelled)


def test_decoy_count_separation_and_bad_arguments():
    vol, labelled, labels, _ = _scene()
    assert mine_decoys(vol, VS, labelled, labels, count=1).shape == (1, 3)
    assert mine_decoys(vol, VS, labelled, labels, count=0).shape == (0, 3)
    many = mine_decoys(vol, VS, labelled, labels, count=50)
    gaps = np.linalg.norm(many[:, None] - many[None], axis=-1) * 10.0 + np.eye(len(many)) * 1e9
    assert gaps.min() >= min(p.radius for p in [get_particle("apo-ferritin"), get_particle("beta-amylase")])
    with pytest.raises(ValueError, match="count and exclusion"):
        mine_decoys(vol, VS, labelled, labels, count=-1)


def _sampler(decoys=None, hard=0.0, positive=0.5):
    shapes = [(40, 100, 100), (40, 120, 100)]
    points = [np.array([[20.0, 50.0, 50.0]]), np.array([[20.0, 60.0, 30.0], [10.0, 10.0, 10.0]])]
    labels = [np.array([0]), np.array([3, 3])]
    return CropSampler(
        shapes, points, labels, (16, 32, 32), positive_fraction=positive, decoys=decoys, hard_negative_fraction=hard
    )


def test_sampler_centres_a_share_of_crops_on_decoys():
    decoys = [np.zeros((0, 3)), np.array([[20.0, 90.0, 70.0]])]
    sampler = _sampler(decoys, hard=0.3)
    specs = [sampler.sample(np.random.default_rng(i)) for i in range(3000)]
    hard = [s for s in specs if s.hard_negative]
    assert np.mean([s.positive for s in specs]) == pytest.approx(0.5, abs=0.03)
    assert len(hard) / len(specs) == pytest.approx(0.3, abs=0.03)
    assert not any(s.positive for s in hard) and all(s.label == -1 for s in hard)
    for s in hard:  # the decoy lies inside the crop, off its faces by the edge margin (4 voxels in z, 4 in y/x)
        assert s.run == 1
        rel = np.array([20.0, 90.0, 70.0]) - np.array(s.start)
        assert np.all(rel >= np.array([2, 4, 4])) and np.all(rel < np.array([16, 32, 32]) - 2), s


def test_sampler_without_hard_negatives_draws_exactly_as_before():
    """decoys with a zero fraction (or no decoys) change no draw: runs trained before reproduce."""
    plain = _sampler()
    zero = _sampler([np.array([[20.0, 90.0, 70.0]])] * 2, hard=0.0)
    for i in range(200):
        a, b = plain.sample(np.random.default_rng(i)), zero.sample(np.random.default_rng(i))
        assert a == b and not a.hard_negative


def test_sampler_refuses_fractions_over_one_and_mismatched_decoys():
    with pytest.raises(ConfigError, match=r"hard_negative_fraction must be in \[0, 1 - positive_fraction\]"):
        _sampler([np.zeros((0, 3))] * 2, hard=0.6, positive=0.5)
    with pytest.raises(ConfigError, match="one array per run"):
        _sampler([np.zeros((0, 3))], hard=0.1)


def test_config_validates_the_hard_negative_fraction():
    cfg = load_config(SMOKE, ["data.positive_fraction=0.7", "data.hard_negative_fraction=0.2"])
    assert cfg.data.hard_negative_fraction == 0.2 and cfg.data.hard_negatives_per_run == 32
    with pytest.raises(ConfigError, match="data.hard_negative_fraction must be in"):
        load_config(SMOKE, ["data.positive_fraction=0.9", "data.hard_negative_fraction=0.2"])


def test_dataset_mines_decoys_and_serves_dark_crops_on_them():
    from cryopoint.data.dataset import CropDataset, RunData

    vol, labelled, labels, beads = _scene()
    import pandas as pd

    xyz = {"x": labelled[:, 2] * 10, "y": labelled[:, 1] * 10, "z": labelled[:, 0] * 10}
    picks = pd.DataFrame({"particle_type": ["ribosome"] * 2, **xyz})
    run = RunData("r", vol, VS, picks)
    decoys = [mine_decoys(vol, VS, run.points_zyx, run.labels, count=3)]
    ds = CropDataset(
        [run], crop_size=(16, 32, 32), output_stride=2, positive_fraction=0.3, hard_negative_fraction=0.5,
        decoys=decoys, samples_per_epoch=64, augment=False,
    )  # fmt: skip
    assert len(ds.decoys) == 1 and ds.decoys[0].shape == (3, 3)
    hard = [ds[i] for i in range(64) if ds[i]["hard_negative"]]
    assert len(hard) > 15
    # Each hard crop shows a bead: its darkest voxel is a bead's (-1.5 or darker), darker than any labelled ball.
    assert all(float(item["image"].min()) < -1.3 for item in hard)
    off = CropDataset([run], crop_size=(16, 32, 32), output_stride=2, samples_per_epoch=8)
    assert off.decoys is None and not any(off[i]["hard_negative"] for i in range(8))
    with pytest.raises(ConfigError, match="needs decoys"):
        CropDataset([run], crop_size=(16, 32, 32), hard_negative_fraction=0.2)


def test_engine_wires_the_config_into_the_crop_dataset(tmp_path):
    """data.hard_negative_fraction / hard_negatives_per_run reach the training crops through load_data."""
    from cryopoint.engine.data import load_data
    from cryopoint.engine.distributed import DistInfo

    over = [f"data.cache_dir={tmp_path}", "data.hard_negative_fraction=0.4", "data.hard_negatives_per_run=5"]
    data = load_data(load_config(SMOKE, over), DistInfo(), output_stride=2)
    ds = data.dataset
    assert ds.decoys is not None and len(ds.decoys) == len(data.train_runs)
    assert all(0 < len(d) <= 5 for d in ds.decoys)
    assert ds.sampler.hard_negative_fraction == pytest.approx(0.4)
    plain = load_data(load_config(SMOKE, [f"data.cache_dir={tmp_path}"]), DistInfo(), output_stride=2)
    assert plain.dataset.decoys is None and plain.dataset.sampler.hard_negative_fraction == 0.0
