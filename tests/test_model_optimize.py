"""The CPU inference copy (BatchNorm folded, channels_last), chunked slab encoding and window clipping.

Each rewrite must give the network's own outputs (to float rounding) and must never touch the caller's model.
"""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cryopoint.model.heatmap25d as heatmap25d
from cryopoint.infer import predict_heatmaps
from cryopoint.model.heatmap25d import Heatmap25D
from cryopoint.model.optimize import ChannelsLast, fold_batchnorm, inference_copy
from cryopoint.tomogram import Tomogram


def _trained_like(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine terms (fresh ones are the identity)."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    return model.eval()


def _count(model: nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in model.modules())


@pytest.mark.parametrize("encoder", ["resnet10t", "test_resnet", "resnet18d"])
def test_folding_removes_every_batchnorm_of_a_resnet_and_keeps_its_outputs(encoder):
    model = _trained_like(Heatmap25D(encoder=encoder, slab=3, decoder_channels=(16, 8, 8, 8, 8)))
    x = torch.randn(1, 1, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
    before = _count(model.encoder, nn.BatchNorm2d)
    folded = fold_batchnorm(model.encoder)
    assert before > 0 and folded == before and _count(model.encoder, nn.BatchNorm2d) == 0
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_batchnorm_with_a_fused_activation_is_not_folded():
    model = _trained_like(Heatmap25D(encoder="test_efficientnet", slab=3, decoder_channels=(16, 8, 8, 8)))
    x = torch.randn(1, 1, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
    fold_batchnorm(model.encoder)  # timm's BatchNormAct2d carries an activation: folding it would drop it
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_folding_refuses_training_mode():
    block = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(block)


class _NormBeforeConv(nn.Module):
    """Registers conv then norm but applies the norm first: the registration-order guess is wrong here."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.feature_info = None

    def forward(self, x):
        return [self.conv(self.norm(x))]


def test_a_wrong_fold_is_caught_by_the_probe_and_undone():
    model = nn.Module()
    model.encoder = _trained_like(_NormBeforeConv())
    model.eval()
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="changed its output"):
        fast = inference_copy(model, "cpu")
    with torch.inference_mode():
        torch.testing.assert_close(fast.encoder(x)[0], model.encoder(x)[0])
    assert isinstance(fast.encoder, ChannelsLast)


def test_inference_copy_leaves_the_callers_model_alone_and_skips_cuda():
    model = _trained_like(Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(16, 8, 8, 8)))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a correct fold must not warn
        fast = inference_copy(model, "cpu")
    assert fast is not model and isinstance(fast.encoder, ChannelsLast)
    assert _count(model.encoder, nn.BatchNorm2d) > 0 and _count(fast.encoder, nn.BatchNorm2d) == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert inference_copy(model, "cuda") is model  # cuDNN under bf16 autocast: nothing to rearrange


def _reference_forward(model: Heatmap25D, x: torch.Tensor) -> torch.Tensor:
    """The pre-chunking computation: every slab encoded at once, depth pooled with avg_pool3d."""
    import torch.nn.functional as F
    from einops import rearrange

    b, size = x.shape[0], tuple(x.shape[2:])
    pad = [(-n) % m for n, m in zip(size, model.input_multiple)]
    k, t = model.slab, model.slab_step
    half = (k - t) // 2
    x = F.pad(x, (0, pad[2], 0, pad[1], half, half + pad[0]), mode="replicate")
    depth = size[0] + pad[0]
    images = rearrange(x[:, 0].unfold(1, k, t), "b d h w k -> (b d) k h w")
    feats = []
    for feat, g in zip(model.encoder(images), model.depth_factors):
        feat = rearrange(feat, "(b d) c h w -> b c d h w", b=b)
        feats.append(F.avg_pool3d(feat, kernel_size=(g // t, 1, 1)) if g > t else feat)
    skips = [*feats[:-1][::-1]] + [None] * (len(model.decoder.levels) - len(feats) + 1)
    sizes = [
        (depth // lv.depth_reduction, (size[1] + pad[1]) // lv.reduction, (size[2] + pad[2]) // lv.reduction)
        for lv in model.decoder.levels
    ]
    logits = model.head(model.decoder(feats[-1], skips, sizes))
    s = model.output_stride
    return logits[..., : -(-size[0] // s), : -(-size[1] // s), : -(-size[2] // s)]


@pytest.mark.parametrize("slab, slab_step", [(3, 1), (4, 2)])
def test_chunked_encoding_is_the_one_pass_computation(monkeypatch, slab, slab_step):
    model = _trained_like(
        Heatmap25D(encoder="test_resnet", slab=slab, slab_step=slab_step, decoder_channels=(16, 8, 8, 8))
    )
    x = torch.randn(2, 1, 12, 40, 48, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = _reference_forward(model, x)
        one_pass = model(x)
        monkeypatch.setattr(heatmap25d, "ENCODE_PIXELS", 64 * 64)  # a few slabs per chunk: many chunks
        chunked = model(x)
    torch.testing.assert_close(one_pass, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked, expected, atol=1e-5, rtol=1e-5)


class _RecordingModel(nn.Module):
    output_stride = 2
    num_classes = 1
    input_multiple = (4, 8, 8)

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[2:]))
        return torch.nn.functional.avg_pool3d(x, 2)

    def heatmaps(self, logits):
        return logits


def test_windows_larger_than_the_tomogram_are_clipped_to_it():
    model = _RecordingModel()
    volume = np.random.default_rng(0).standard_normal((18, 30, 41), dtype=np.float32)
    heat, stride = predict_heatmaps(model, Tomogram(volume, 10.0), roi=(4000, 4000, 4000), normalized=True)
    assert model.shapes == [(20, 32, 48)]  # one window: the tomogram rounded up to the model's multiple
    assert heat.shape == (1, 9, 15, 21) and stride == 2


def test_fast_cpu_and_bf16_paths_score_like_the_plain_network():
    model = _trained_like(Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(16, 8, 8, 8)))
    volume = np.random.default_rng(0).standard_normal((16, 64, 64), dtype=np.float32)
    tomo = Tomogram(volume, 10.0)
    kwargs = {"roi": (16, 64, 64), "normalized": True}
    with torch.inference_mode():
        plain, _ = predict_heatmaps(model, tomo, **kwargs)
        fast, _ = predict_heatmaps(inference_copy(model, "cpu"), tomo, **kwargs)
        bf16, _ = predict_heatmaps(model, tomo, cpu_bf16=True, **kwargs)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert 0 < np.abs(bf16 - plain).max() < 0.02  # really computed in bf16, and close


def test_inference_copy_folds_a_batchnorm_decoder_and_keeps_its_outputs():
    model = _trained_like(
        Heatmap25D(encoder="test_resnet", slab=3, decoder_channels=(16, 8, 8, 8), decoder_norm="batch")
    )
    assert _count(model.decoder, nn.BatchNorm3d) > 0
    x = torch.randn(1, 1, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
        fast = inference_copy(model, "cpu")
        got = fast(x)
    assert _count(fast.decoder, nn.BatchNorm3d) == 0
    assert _count(model.decoder, nn.BatchNorm3d) > 0  # the caller's model is untouched
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
