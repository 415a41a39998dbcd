"""heatmap25d: the model contract, plus slab folding, encoder probing, depth pooling, prior and weights."""

from dataclasses import asdict

import numpy as np
import pytest
import timm
import torch
from _model_contract import ModelContract
from timm.models import adapt_input_conv

from cryopoint.config import Heatmap25DConfig
from cryopoint.errors import CheckpointError, ConfigError, DataNotFoundError
from cryopoint.model import build_model
from cryopoint.model.decoder import NORMS, ConvBlock3d
from cryopoint.model.heatmap25d import Heatmap25D

TINY = {"encoder": "test_resnet", "slab": 3, "decoder_channels": (16, 8, 8, 8)}


class TestHeatmap25DStride2(ModelContract):
    arch = "heatmap25d"
    kwargs = {**TINY, "output_stride": 2}


class TestHeatmap25DStride1ConvNeXt(ModelContract):
    arch = "heatmap25d"
    kwargs = {"encoder": "test_convnext", "slab": 5, "decoder_channels": (16, 8), "output_stride": 1}
    input_sizes = ((4, 32, 32), (8, 32, 64))
    odd_size = (5, 17, 31)


class TestHeatmap25DSlabStep2(ModelContract):
    arch = "heatmap25d"
    kwargs = {**TINY, "slab": 4, "slab_step": 2, "output_stride": 2}
    odd_size = (9, 20, 45)


@pytest.mark.parametrize("encoder", ["test_resnet", "test_efficientnet"])
def test_decoder_is_sized_from_probed_feature_channels(encoder):
    model = Heatmap25D(encoder=encoder, slab=3, decoder_channels=(16, 8, 8, 8))
    probe = timm.create_model(encoder, features_only=True, in_chans=3, pretrained=False)
    with torch.no_grad():
        feats = probe(torch.zeros(1, 3, 64, 64))
    assert model.feature_channels == tuple(f.shape[1] for f in feats)
    assert model.feature_reductions == tuple(64 // f.shape[-1] for f in feats)
    widths = [model.feature_channels[-1]] + [lv.channels for lv in model.decoder.levels]
    for i, (level, block) in enumerate(zip(model.decoder.levels, model.decoder.blocks)):
        assert block[0].in_channels == widths[i] + level.skip_channels
    skips = [lv.skip_channels for lv in model.decoder.levels if lv.skip_channels]
    assert skips == list(model.feature_channels[:-1][::-1])


def test_each_depth_position_sees_its_slab_with_replicated_edges():
    model = Heatmap25D(encoder="test_resnet", slab=5, decoder_channels=(8,)).eval()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda mod, args: seen.setdefault("images", args[0]))
    depth = 8
    x = torch.arange(depth, dtype=torch.float32).view(1, 1, depth, 1, 1).expand(1, 1, depth, 32, 32)
    with torch.no_grad():
        model(x.contiguous())
    images = seen["images"]  # ((B D), k, H, W)
    assert images.shape == (depth, 5, 32, 32)
    for d in range(depth):
        expected = [min(max(d + j - 2, 0), depth - 1) for j in range(5)]
        assert images[d, :, 0, 0].tolist() == expected


def test_slab_step_two_encodes_every_other_position_centred_on_output_voxels():
    model = Heatmap25D(encoder="test_resnet", slab=4, slab_step=2, decoder_channels=(8,)).eval()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda mod, args: seen.setdefault("images", args[0]))
    depth = 8
    x = torch.arange(depth, dtype=torch.float32).view(1, 1, depth, 1, 1).expand(1, 1, depth, 32, 32)
    with torch.no_grad():
        out = model(x.contiguous())
    images = seen["images"]
    assert images.shape == (depth // 2, 4, 32, 32) and out.shape == (1, 6, 4, 16, 16)
    for j in range(depth // 2):
        # output voxel j covers slices 2j, 2j+1 (centre 2j + 0.5): its slab is 2j-1 .. 2j+2
        expected = [min(max(2 * j - 1 + c, 0), depth - 1) for c in range(4)]
        assert images[j, :, 0, 0].tolist() == expected


def test_depth_pooling_per_stage():
    model = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(8,))
    assert model.feature_reductions == (2, 4, 8, 16, 32)
    assert model.depth_factors == (2, 4, 4, 4, 4)  # default cap 4
    assert model.input_multiple == (4, 32, 32)
    capped = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(8,), depth_pool=8)
    assert capped.depth_factors == (2, 4, 8, 8, 8) and capped.input_multiple == (8, 32, 32)
    explicit = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(8,), depth_pool=[2, 2, 2, 4, 4])
    assert explicit.depth_factors == (2, 2, 2, 4, 4)
    assert explicit(torch.zeros(1, 1, 8, 32, 32)).shape == (1, 6, 4, 16, 16)
    for bad in ([2, 4], [4, 2, 2, 2, 2], [1, 2, 4, 4, 4], 3):
        with pytest.raises(ConfigError, match="depth_pool"):
            Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(8,), depth_pool=bad)


def test_head_starts_at_the_named_prior():
    model = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(8,), prior=0.02).eval()
    assert float(model.head.bias.detach()[0]) == pytest.approx(-np.log(0.98 / 0.02))
    with torch.no_grad():
        probs = model.heatmaps(model(torch.randn(1, 1, 8, 32, 32)))
    assert float(probs.mean()) == pytest.approx(0.02, abs=0.005)


def test_decoder_channels_extend_by_halving_for_finer_levels():
    model = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(32,), output_stride=1)
    assert [lv.channels for lv in model.decoder.levels] == [32, 16, 8, 8, 8]
    assert [lv.reduction for lv in model.decoder.levels] == [16, 8, 4, 2, 1]


def test_builds_from_the_engine_config_fields():
    cfg = Heatmap25DConfig(encoder="test_resnet", slab=3)
    model = build_model(**asdict(cfg))
    assert isinstance(model, Heatmap25D) and model.output_stride == cfg.output_stride
    assert [lv.channels for lv in model.decoder.levels] == list(cfg.decoder_channels[: len(model.decoder.levels)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"slab": 4}, "slab"),
        ({"output_stride": 4}, "output_stride"),
        ({"prior": 1.5}, "prior"),
        ({"encoder": "no_such_net"}, "list_models"),
        ({"slab": 3, "slab_step": 2}, "even"),
        ({"slab": 4, "slab_step": 2, "output_stride": 1}, "slab_step"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model("heatmap25d", **{**TINY, **kwargs})


def test_unknown_arch_lists_the_options():
    with pytest.raises(ConfigError, match="heatmap25d.*unet3d"):
        build_model("nope")


def test_pretrained_imagenet_style_weights_load_with_adapted_first_conv(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", in_chans=3, pretrained=False)  # a classifier, 3 channels
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    model = Heatmap25D(encoder="test_resnet", slab=5, decoder_channels=(8,), pretrained=str(path))
    own = model.encoder.state_dict()
    first = source.pretrained_cfg["first_conv"] + ".weight"
    assert torch.equal(own[first], adapt_input_conv(5, source.state_dict()[first]))
    assert torch.equal(own["layer4.0.conv1.weight"], source.state_dict()["layer4.0.conv1.weight"])


def test_pretrained_from_a_cryopoint_checkpoint_reuses_the_encoder(tmp_path):
    donor = Heatmap25D(**TINY)
    path = tmp_path / "best.pt"
    torch.save({"model_state": donor.state_dict(), "config": {}}, path)
    model = Heatmap25D(**TINY, pretrained=path)
    for key, value in donor.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)


def test_pretrained_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="never downloads"):
        Heatmap25D(**TINY, pretrained=tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet", pretrained=False).state_dict(), other)
    with pytest.raises(CheckpointError, match="missing"):
        Heatmap25D(**TINY, pretrained=other)


def test_learns_to_put_a_peak_on_a_planted_particle():
    """A few dozen steps on one crop: the loss falls and the heatmap's maximum lands on the particle."""
    from cryopoint.data.targets import draw_heatmaps
    from cryopoint.engine.losses import get_loss

    torch.manual_seed(0)
    model = Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(16, 16, 16, 16)).train()
    zz, yy, xx = np.meshgrid(np.arange(8), np.arange(32), np.arange(32), indexing="ij")
    centre = np.array([4.0, 12.0, 20.0])
    blob = np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / (2 * 2.0**2))
    x = torch.from_numpy(-blob.astype(np.float32))[None, None]  # dark particle, as in cryo-ET
    target = torch.from_numpy(draw_heatmaps((4, 16, 16), centre[None], np.array([0]), voxel_size=10.0, stride=2))
    loss_fn, opt = get_loss("mse"), torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(model(x), target[None], None)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        heat = model.eval().heatmaps(model(x))[0, 0]
    peak = np.unravel_index(int(heat.argmax()), heat.shape)
    assert np.abs(np.array(peak) - np.array([2, 6, 10])).max() <= 1  # stride-2 voxel holding (4, 12, 20)


def test_encoder_features_finer_than_the_output_are_dropped():
    # vgg11 has a full-resolution feature map (reduction 1); at output stride 2 it would get no gradient.
    model = Heatmap25D(encoder="vgg11", slab=3, decoder_channels=(8,), output_stride=2)
    assert model.feature_reductions == (2, 4, 8, 16, 32)
    model(torch.zeros(1, 1, 4, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("norm", NORMS)
def test_only_a_batchnorm_block_scores_a_voxel_from_its_receptive_field_alone(norm):
    """Two 3x3x3 convs see 5 voxels: changing voxels far away must not move a voxel's output at inference.

    GroupNorm's statistics come from the whole window, so its output there moves; that is what makes a
    GroupNorm decoder's scores depend on the inference window.
    """
    block = ConvBlock3d(2, 8, norm).eval()
    if norm == "batch":  # trained-like running statistics, not the identity of a fresh BatchNorm
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 2, 6, 8, 32, generator=torch.Generator().manual_seed(0))
    far = x.clone()
    far[..., 20:] = 5.0 * torch.randn(1, 2, 6, 8, 12, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        near_a, near_b = block(x)[..., :8], block(far)[..., :8]
    if norm == "batch":
        torch.testing.assert_close(near_a, near_b)
    else:
        assert not torch.allclose(near_a, near_b, atol=1e-3)


def test_an_unknown_decoder_norm_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="decoder_norm.*group, batch"):
        Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(8,), decoder_norm="layer")
