"""Voxel sizes near the model's are used as they are; farther ones (per axis, anisotropic included) resample.

The stand-in detector (``tests/test_api.py::spot_detector``) turns a bright spot into one pick per class, so
what the network saw shows in the picks: their voxel positions and scores.
"""

import numpy as np
import pytest

from cryopoint.api import SAME_VOXEL_RTOL, detect
from tests.test_api import spot_detector

MODEL_VS = 10.0
VOX = ["z_vox", "y_vox", "x_vox"]


def round_spot(shape, centre_zyx, voxel_size_zyx, sigma_a=30.0):
    """A spot that is round in Å (``sigma_a``) on a z ramp, sampled at a (z, y, x) voxel size."""
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * v / sigma_a) ** 2 for g, c, v in zip(grid, centre_zyx, voxel_size_zyx))
    return (1.65 * np.exp(-d2 / 2) + np.linspace(-1, 1, shape[0])[:, None, None]).astype(np.float32)


SHAPE, CENTRE = (24, 40, 40), np.array([9, 20, 27])


@pytest.mark.parametrize(
    "voxel_size",
    [
        (10.012444,) * 3,  # the challenge data's header vs a 10 Å model
        (MODEL_VS * (1 + 0.9 * SAME_VOXEL_RTOL),) * 3,
        (MODEL_VS * (1 - 0.9 * SAME_VOXEL_RTOL), MODEL_VS, MODEL_VS * (1 + 0.9 * SAME_VOXEL_RTOL)),  # anisotropic
    ],
)
def test_voxel_sizes_within_tolerance_are_used_as_they_are(voxel_size):
    vol = round_spot(SHAPE, CENTRE, (MODEL_VS,) * 3)
    same = detect(vol, spot_detector(MODEL_VS), voxel_size=MODEL_VS)
    picks = detect(vol, spot_detector(MODEL_VS), voxel_size=voxel_size)
    # The network saw the input itself: the same peaks, at the same voxels, with the same scores ...
    np.testing.assert_allclose(picks[VOX].to_numpy(), same[VOX].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(picks["score"].to_numpy(), same["score"].to_numpy())
    np.testing.assert_allclose(picks[VOX].to_numpy()[0], CENTRE, rtol=0, atol=1e-9)
    # ... reported in Å of the input's own voxel size, axis by axis.
    np.testing.assert_allclose(picks[["z", "y", "x"]].to_numpy(), picks[VOX].to_numpy() * np.array(voxel_size))


@pytest.mark.parametrize(
    "voxel_size",
    [
        (MODEL_VS * (1 + 2 * SAME_VOXEL_RTOL),) * 3,  # just outside the tolerance
        (MODEL_VS, 10.1, 13.0),  # anisotropic: z exact, y inside the tolerance, x 1.3x coarser
        (14.0, 8.0, 6.0),  # anisotropic: z upsampled, y and x downsampled
    ],
)
def test_other_voxel_sizes_are_resampled_per_axis_and_answered_in_the_inputs_frame(voxel_size):
    vs = np.array(voxel_size)
    shape = (30, 50, 60)
    centre = np.array([12, 24, 33])
    vol = round_spot(shape, centre, vs)
    as_is = detect(vol, spot_detector(MODEL_VS), voxel_size=MODEL_VS)  # what the network makes of it unresampled
    picks = detect(vol, spot_detector(MODEL_VS), voxel_size=tuple(voxel_size))
    assert len(picks) == len(as_is) == 6  # one spot, seen by each class channel
    assert not np.array_equal(picks[[*VOX, "score"]].to_numpy(), as_is[[*VOX, "score"]].to_numpy()), "not resampled"
    # Found where it is, in Å of the input frame (Å = input voxel index x its size), within one model voxel: half
    # a voxel of grid rounding plus the z ramp's pull on the spot's maximum. A frame error is tens of Å here.
    assert np.abs(picks[["z", "y", "x"]].to_numpy() - centre * vs).max() <= MODEL_VS
    np.testing.assert_allclose(picks[["z", "y", "x"]].to_numpy(), picks[VOX].to_numpy() * vs)
