"""Zoom augmentation: crops resampled so particles look larger or smaller, points and targets moved with them."""

import numpy as np
import pandas as pd
import pytest

from cryopoint.config import AugmentConfig
from cryopoint.data.dataset import CropDataset, RunData
from cryopoint.data.transforms import random_zoom_factor, resize
from cryopoint.errors import ConfigError

VS = (10.0, 10.0, 10.0)
NO_AUG = {"flip_axes": [], "rot90": False, "transpose": False, "scale": 0.0, "shift": 0.0, "noise": 0.0}


def _gaussian(shape, centre, sigma):
    grid = np.indices(shape, dtype=np.float64)
    r2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
    return np.exp(-r2 / (2 * sigma**2))


def _centroid(vol):
    w = vol / vol.sum()
    return np.array([(np.indices(vol.shape)[a] * w).sum() for a in range(3)])


@pytest.mark.parametrize("size", [(24, 48, 40), (13, 27, 33)])
def test_resize_moves_points_with_the_content(size):
    centre = np.array([7.3, 14.6, 11.2])
    vol = _gaussian((16, 32, 28), centre, 2.5).astype(np.float32)
    out, pts = resize(vol, centre[None], size)
    assert out.shape == size
    # The blob's centroid in the resampled volume is where the point went (well inside: no border effect).
    np.testing.assert_allclose(_centroid(out), pts[0], atol=0.15)


def test_random_zoom_factor_range_and_symmetry():
    rng = np.random.default_rng(0)
    f = np.array([random_zoom_factor(rng, 0.25) for _ in range(4000)])
    assert f.min() >= 1 / 1.25 and f.max() <= 1.25 and f.min() < 0.82 and f.max() > 1.22
    assert abs(np.log(f).mean()) < 0.01  # log-uniform: as often larger as smaller
    assert random_zoom_factor(rng, 0.0) == 1.0
    with pytest.raises(ValueError):
        random_zoom_factor(rng, -0.1)


def _run():
    """One dark Gaussian 'particle' (a ribosome label) in an otherwise empty volume."""
    centre = np.array([24.0, 60.0, 60.0])
    vol = (-_gaussian((48, 120, 120), centre, 4.0)).astype(np.float32)
    picks = pd.DataFrame({"particle_type": ["ribosome"], "x": [600.0], "y": [600.0], "z": [240.0]})
    return RunData("r", vol, VS, picks)


def _dataset(zoom, **kw):
    return CropDataset(
        [_run()], crop_size=(16, 32, 32), output_stride=1, positive_fraction=1.0, samples_per_epoch=40,
        augment_kwargs={**NO_AUG, "zoom": zoom}, **kw,
    )  # fmt: skip


def test_zoomed_crops_show_particles_at_many_sizes_with_targets_on_them():
    ds = _dataset(0.3)
    widths = []
    for i in range(40):
        item = ds[i]
        image, target = -item["image"][0].numpy(), item["target"].numpy()
        # The target's peak (ribosome channel) sits on the particle's centre in the image.
        peak = np.unravel_index(target[3].argmax(), target[3].shape)
        darkest = np.unravel_index(image.argmax(), image.shape)
        assert np.abs(np.subtract(peak, darkest)).max() <= 1, (i, peak, darkest)
        widths.append((image > 0.5).sum() ** (1 / 3))
    assert max(widths) / min(widths) > 1.3  # sizes vary by about (1.3 / (1 / 1.3)) in linear extent


def test_zoom_off_reproduces_the_crops_drawn_before_it_existed():
    plain = CropDataset(
        [_run()], crop_size=(16, 32, 32), output_stride=1, positive_fraction=1.0, samples_per_epoch=5,
        augment_kwargs=NO_AUG,
    )  # fmt: skip
    zero = _dataset(0.0)
    for i in range(5):
        assert np.array_equal(plain[i]["image"].numpy(), zero[i]["image"].numpy())


def test_zoom_is_validated():
    with pytest.raises(ConfigError, match=r"data.augment.zoom must be in \[0, 1\]"):
        AugmentConfig(zoom=1.5)
    with pytest.raises(ConfigError, match="zoom must be in"):
        _dataset(-0.2)
