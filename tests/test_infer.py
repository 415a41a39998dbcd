"""Sliding-window inference: identity invariants (MONAI's), padding, strides, batching and TTA."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cryopoint.errors import InvalidVolumeError
from cryopoint.infer import importance_map, predict_heatmaps, sliding_window, window_starts
from cryopoint.tomogram import Tomogram


def _identity(x):
    return x


def _pool2(x):
    return F.avg_pool3d(x, 2)


@pytest.mark.parametrize("shape", [(13, 17, 11), (16, 16, 16), (5, 6, 7), (3, 40, 9)])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_identity_predictor_returns_the_input(rng, shape, blend):
    vol = rng.normal(size=shape).astype(np.float32)
    out = sliding_window(_identity, vol, roi=(8, 8, 8), overlap=0.5, out_channels=1, batch_size=3, blend=blend)
    assert out.shape == (1, *shape)
    np.testing.assert_allclose(out[0], vol, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(12, 20, 16), (13, 17, 11), (5, 3, 7)])
def test_stride_two_identity_is_average_pooling(rng, shape):
    vol = rng.normal(size=shape).astype(np.float32)
    out = sliding_window(_pool2, vol, roi=(8, 8, 8), overlap=0.25, output_stride=2, out_channels=1, batch_size=2)
    out_shape = tuple(-(-n // 2) for n in shape)
    assert out.shape == (1, *out_shape)
    # The far end is zero-padded up to a multiple of the stride, then pooled.
    padded = np.pad(vol, [(0, 2 * o - n) for o, n in zip(out_shape, shape)])
    expected = F.avg_pool3d(torch.from_numpy(padded)[None, None], 2)[0, 0].numpy()
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-5)


def test_multichannel_and_4d_input(rng):
    vol = rng.normal(size=(1, 10, 12, 9)).astype(np.float32)
    out = sliding_window(lambda x: torch.cat([x, -2 * x], 1), vol, roi=(4, 8, 8), out_channels=2, overlap=0.5)
    np.testing.assert_allclose(out[0], vol[0], atol=1e-5)
    np.testing.assert_allclose(out[1], -2 * vol[0], atol=1e-5)


def test_windows_are_batched_and_bounded(rng):
    vol = rng.normal(size=(10, 30, 30)).astype(np.float32)
    seen, calls = [], []

    def predict(x):
        seen.append(tuple(x.shape))
        return x

    sliding_window(
        predict,
        vol,
        roi=(8, 16, 16),
        overlap=0.5,
        out_channels=1,
        batch_size=4,
        progress=lambda done, total: calls.append((done, total)),
    )
    n_windows = 2 * 3 * 3  # z: 0, 2; y, x: 0, 8, 14
    assert all(s[0] <= 4 and s[1:] == (1, 8, 16, 16) for s in seen)
    assert sum(s[0] for s in seen) == n_windows
    assert calls[-1] == (n_windows, n_windows) and len(calls) == len(seen)


def test_window_starts_cover_and_end_flush():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(8, 8, 4) == [0]
    starts = window_starts(630, 128, 96)
    assert starts[0] == 0 and starts[-1] == 630 - 128 and all(b - a <= 96 for a, b in zip(starts, starts[1:]))


def test_gaussian_importance_map_is_centred_and_positive():
    w = importance_map((4, 8, 6))
    assert w.shape == (4, 8, 6) and w.max() == pytest.approx(1.0) and w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1])  # symmetric about the window centre
    assert w[2, 4, 3] > w[0, 0, 0]
    assert np.all(importance_map((2, 2, 2), blend="constant") == 1)
    with pytest.raises(ValueError, match="blend"):
        importance_map((2, 2, 2), blend="median")


def test_bad_arguments_are_refused(rng):
    vol = rng.normal(size=(8, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="divisible"):
        sliding_window(_pool2, vol, roi=(7, 8, 8), output_stride=2, out_channels=1)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(_identity, vol, roi=(4, 4, 4), overlap=1.0, out_channels=1)
    with pytest.raises(ValueError, match="expected"):
        sliding_window(_identity, vol, roi=(4, 4, 4), out_channels=3)
    vol[0, 0, 0] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN"):
        sliding_window(_identity, vol, roi=(4, 4, 4), out_channels=1)


class _PoolModel(nn.Module):
    """A stand-in model: stride-2 average pooling, two 'classes', sigmoid heatmaps, and an x-asymmetry."""

    output_stride = 2
    num_classes = 2
    input_multiple = (2, 4, 4)

    def __init__(self):
        super().__init__()
        self.ramp = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        pooled = F.avg_pool3d(x, 2)
        return torch.cat([pooled, -pooled], 1)

    def heatmaps(self, logits):
        return torch.sigmoid(logits)


def test_predict_heatmaps_normalises_and_reports_the_stride(rng):
    from cryopoint.data.normalize import normalize_volume

    data = (rng.normal(size=(9, 21, 18)) * 1e-5).astype(np.float32)  # raw tomogram scale
    tomo = Tomogram(data, voxel_size=10.0)
    model = _PoolModel().eval()
    heat, stride = predict_heatmaps(model, tomo, roi=(6, 12, 12), overlap=0.5)
    assert stride == 2 and heat.shape == (2, 5, 11, 9)
    norm = normalize_volume(data)
    padded = np.pad(norm, [(0, 1), (0, 1), (0, 0)])
    expected = torch.sigmoid(F.avg_pool3d(torch.from_numpy(padded)[None, None], 2))[0, 0].numpy()
    np.testing.assert_allclose(heat[0], expected, atol=1e-5)
    np.testing.assert_allclose(heat[0] + heat[1], 1.0, atol=1e-5)


def test_flip_tta_of_an_equivariant_model_changes_nothing(rng):
    tomo = Tomogram(rng.normal(size=(8, 16, 16)).astype(np.float32), voxel_size=10.0)
    model = _PoolModel().eval()
    plain, _ = predict_heatmaps(model, tomo, roi=(8, 16, 16))
    tta, _ = predict_heatmaps(model, tomo, roi=(8, 16, 16), tta=True)
    np.testing.assert_allclose(tta, plain, atol=1e-5)


def test_flip_tta_averages_flipped_probabilities(rng):
    class Ramp(_PoolModel):
        def forward(self, x):  # not flip-equivariant: adds a ramp along x
            pooled = F.avg_pool3d(x, 2)
            ramp = torch.arange(pooled.shape[-1], dtype=pooled.dtype)
            return torch.cat([0 * pooled + ramp, 0 * pooled - ramp], 1)

    tomo = Tomogram(rng.normal(size=(4, 8, 8)).astype(np.float32), voxel_size=10.0)
    heat, _ = predict_heatmaps(Ramp().eval(), tomo, roi=(4, 8, 8), tta=True)
    ramp = np.arange(4.0)
    sig = 1 / (1 + np.exp(-ramp))
    # Three passes see the ramp, the x-flip pass sees it reversed: mean of probabilities.
    np.testing.assert_allclose(heat[0, 0, 0], (3 * sig + sig[::-1]) / 4, atol=1e-5)


def test_tomogram_smaller_than_the_field_of_view_is_refused(rng):
    tomo = Tomogram(rng.normal(size=(8, 3, 16)).astype(np.float32), voxel_size=10.0)
    with pytest.raises(InvalidVolumeError, match="field of view"):
        predict_heatmaps(_PoolModel().eval(), tomo, roi=(8, 16, 16))
