"""The unet3d sphere-segmentation baseline: shapes, probabilities, prior, configuration errors."""

import pytest
import torch
from _model_contract import ModelContract

from cryopoint.engine.seg_losses import dice_ce_loss
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.model.unet3d import UNet3D


class TestUNet3DStride1(ModelContract):
    arch = "unet3d"
    kwargs = {"channels": (4, 8, 8)}
    losses = ("dice_ce",)


class TestUNet3DStride2(ModelContract):
    arch = "unet3d"
    kwargs = {"channels": (4, 8, 8, 8), "output_stride": 2}
    losses = ("dice_ce",)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 16, 16), (5, 13, 18)])
def test_output_shape_any_size(stride, size):
    model = UNet3D(channels=(4, 8, 8), output_stride=stride)
    logits = model(torch.randn(2, 1, *size))
    assert logits.shape == (2, 7, *(-(-n // stride) for n in size))
    assert model.input_multiple == (4, 4, 4) and model.num_classes == 6 and model.target_kind == "segmentation"


def test_heatmaps_are_softmax_without_background_and_start_at_prior():
    model = UNet3D(channels=(4, 8), prior=0.02)
    with torch.no_grad():
        logits = model(torch.randn(1, 1, 8, 8, 8))
    probs = model.heatmaps(logits)
    assert probs.shape == (1, 6, 8, 8, 8)
    assert torch.allclose(probs, logits.softmax(1)[:, 1:])
    assert ((probs >= 0) & (probs <= 1)).all() and (probs.sum(1) < 1).all()
    assert abs(float(probs.mean()) - 0.02) < 0.005


def test_learns_a_ball():
    torch.manual_seed(0)
    model = UNet3D(channels=(8, 16))
    x = torch.zeros(1, 1, 8, 8, 8)
    x[..., 2:6, 2:6, 2:6] = -1.0  # dark particle
    target = (x[:, 0] < 0).long() * 4  # class 3 (ribosome) → label 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = dice_ce_loss(model(x), target)
        loss.backward()
        opt.step()
    probs = model.heatmaps(model(x))
    assert probs[0, 3, 4, 4, 4] > 0.8 and probs[0, 3, 0, 0, 0] < 0.2


def test_bad_configuration_and_input():
    with pytest.raises(ConfigError, match="output_stride"):
        UNet3D(channels=(4, 8), output_stride=2)
    with pytest.raises(ConfigError, match="at least two"):
        UNet3D(channels=(4,))
    with pytest.raises(ConfigError, match="prior"):
        UNet3D(prior=0.5)
    with pytest.raises(InvalidVolumeError, match=r"\(B, C, D, H, W\)"):
        UNet3D(channels=(4, 8))(torch.zeros(1, 8, 8, 8))
