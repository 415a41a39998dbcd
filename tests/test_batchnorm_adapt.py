"""Per-tomogram BatchNorm adaptation (``infer.adapt_bn``): the windows, the statistics it computes, that it never
touches the given model, and that the one inference path (``detect``, the batch CLI) applies it."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from cryopoint.api import Detector, detect
from cryopoint.batch import BatchOptions, made_with
from cryopoint.config import config_from_dict
from cryopoint.data.normalize import normalize_volume
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.infer import predict_peaks
from cryopoint.model import build_model
from cryopoint.model.batchnorm_adapt import adapt_batchnorm, adaptation_windows, batchnorm_layers
from cryopoint.tomogram import Tomogram

TINY = {
    "model": {"arch": "heatmap25d", "encoder": "test_resnet", "slab": 3, "output_stride": 2},
    "infer": {"roi": [16, 64, 64], "overlap": 0.0, "batch_size": 1},
    "post": {"min_score": 0.0, "top_k": 50, "default_threshold": 0.0},
}


class _Probe(nn.Module):
    """One BatchNorm straight on the input: its statistics are the input's, easy to compute by hand."""

    input_multiple = (4, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(1)
        self.bn.running_mean.fill_(3.0)
        self.bn.running_var.fill_(5.0)

    def forward(self, x):
        return self.bn(x)


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    cfg = config_from_dict(TINY)
    net = build_model(**dataclasses.asdict(cfg.model)).eval()
    for m in batchnorm_layers(net):  # statistics far from a random volume's, as after training on other data
        m.running_mean.uniform_(-1.0, 1.0)
        m.running_var.uniform_(2.0, 4.0)
    return net, cfg


def _volume(shape=(24, 96, 96), seed=1):
    return np.random.default_rng(seed).normal(2.0, 1.5, shape).astype(np.float32)


def test_windows_tile_without_overlap_and_reach_every_edge():
    wins = adaptation_windows((70, 300, 260), (4, 32, 32), window=(32, 128, 128), max_windows=1000)
    sizes = {tuple(s.stop - s.start for s in w) for w in wins}
    assert sizes == {(32, 128, 128)}
    for axis, size in enumerate((70, 300, 260)):
        assert min(w[axis].start for w in wins) == 0
        assert max(w[axis].stop for w in wins) == size  # the last window sits flush with the far edge
    assert len(wins) == 3 * 3 * 3


def test_windows_clip_to_small_volumes_in_multiples_and_cap_the_count():
    wins = adaptation_windows((20, 70, 50), (4, 32, 32), window=(32, 128, 128))
    assert {tuple(s.stop - s.start for s in w) for w in wins} == {(20, 64, 32)}  # rounded down to the multiple
    many = adaptation_windows((184, 630, 630), (4, 32, 32), max_windows=24)
    assert len(many) == 24 and len({tuple((s.start, s.stop) for s in w) for w in many}) == 24
    assert many == adaptation_windows((184, 630, 630), (4, 32, 32), max_windows=24)  # deterministic
    assert many[0][0].start == 0 and many[-1][2].stop == 630  # spread from the first tile to the last


def test_windows_refuse_volumes_below_the_field_of_view_and_bad_counts():
    with pytest.raises(InvalidVolumeError, match="smaller than the model's field of view"):
        adaptation_windows((2, 64, 64), (4, 32, 32))
    with pytest.raises(ConfigError, match="max_windows"):
        adaptation_windows((32, 64, 64), (4, 32, 32), max_windows=0)


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.25])
def test_statistics_are_the_mix_of_trained_and_the_tomograms_own(weight):
    vol = _volume((16, 32, 32))
    probe = _Probe()
    adapted = adapt_batchnorm(probe, vol, weight, window=(8, 16, 16), max_windows=100)
    wins = adaptation_windows(vol.shape, probe.input_multiple, (8, 16, 16), 100)
    assert len(wins) == 8
    means = np.array([vol[w].mean() for w in wins])
    vars_ = np.array([vol[w].var(ddof=1) for w in wins])  # BatchNorm keeps the unbiased batch variance
    assert float(adapted.bn.running_mean) == pytest.approx((1 - weight) * 3.0 + weight * means.mean(), rel=1e-5)
    assert float(adapted.bn.running_var) == pytest.approx((1 - weight) * 5.0 + weight * vars_.mean(), rel=1e-5)
    assert not adapted.training and adapted.bn.momentum == probe.bn.momentum
    # the given model is untouched
    assert float(probe.bn.running_mean) == 3.0 and float(probe.bn.running_var) == 5.0


def test_weight_zero_is_the_model_itself_and_bad_weights_or_models_are_refused():
    probe = _Probe()
    assert adapt_batchnorm(probe, _volume((16, 32, 32)), 0.0) is probe
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        adapt_batchnorm(probe, _volume((16, 32, 32)), 1.5)
    plain = nn.Conv3d(1, 1, 1)
    with pytest.raises(ConfigError, match="no BatchNorm"):
        adapt_batchnorm(plain, _volume((16, 32, 32)), 0.5)


def test_adapted_network_gives_other_scores_and_leaves_the_network_as_trained():
    net, cfg = _tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    vol = _volume()
    adapted = adapt_batchnorm(net, normalize_volume(vol), 1.0)
    x = torch.from_numpy(normalize_volume(vol)[None, None, :16, :64, :64].copy())
    with torch.no_grad():
        assert not torch.allclose(net(x), adapted(x))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_predict_peaks_adapts_each_tomogram_before_it_runs():
    """``infer.adapt_bn`` in the one inference path equals adapting by hand and running without it."""
    net, cfg = _tiny_net()
    tomo = Tomogram(_volume(), voxel_size=10.0)
    on = dataclasses.replace(cfg.infer, adapt_bn=0.5)
    off = dataclasses.replace(cfg.infer, adapt_bn=0.0)
    got, _ = predict_peaks(net, tomo, infer=on, post=cfg.post)
    by_hand, _ = predict_peaks(adapt_batchnorm(net, normalize_volume(tomo.data), 0.5), tomo, infer=off, post=cfg.post)
    plain, _ = predict_peaks(net, tomo, infer=off, post=cfg.post)
    np.testing.assert_allclose(got["score"].to_numpy(), by_hand["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    top = lambda p: np.sort(p["score"].to_numpy())[-10:]  # noqa: E731
    assert not np.allclose(top(got), top(plain), atol=1e-4)  # the setting is not a no-op


def _detector(net, cfg):
    return Detector(model=net, config=cfg, particles=[], voxel_size=(10.0, 10.0, 10.0))


def test_detect_and_the_detector_setting():
    net, cfg = _tiny_net()
    det = _detector(net, cfg)
    tomo = Tomogram(_volume(), voxel_size=10.0)
    adapted = det.with_adapt_bn(0.5)
    assert adapted.config.infer.adapt_bn == 0.5 and det.config.infer.adapt_bn == 0.0 and adapted.model is net
    on = detect(tomo, adapted, thresholds=0.0)
    off = detect(tomo, det, thresholds=0.0)
    by_hand = detect(tomo, dataclasses.replace(det, model=adapt_batchnorm(net, normalize_volume(tomo.data), 0.5)),
                     thresholds=0.0)  # fmt: skip
    np.testing.assert_allclose(on["score"].to_numpy(), by_hand["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.sort(on["score"].to_numpy())[-10:], np.sort(off["score"].to_numpy())[-10:], atol=1e-4)
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ConfigError, match="adapt_bn"):
            det.with_adapt_bn(bad)
    onnx = _detector(net, dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, runtime="onnxruntime")))
    assert onnx.with_adapt_bn(0.5).config.infer.runtime == "torch"


def test_config_checks_the_setting():
    with pytest.raises(ConfigError, match="adapt_bn must be in"):
        config_from_dict({**TINY, "infer": {**TINY["infer"], "adapt_bn": 2.0}})
    with pytest.raises(ConfigError, match="runtime=torch"):
        config_from_dict({**TINY, "infer": {**TINY["infer"], "adapt_bn": 0.5, "runtime": "onnxruntime"}})
    assert config_from_dict({**TINY, "infer": {**TINY["infer"], "adapt_bn": 0.5}}).infer.adapt_bn == 0.5


def test_batch_results_record_the_setting_so_others_are_not_resumed(tmp_path):
    net, cfg = _tiny_net()
    path = tmp_path / "m.pt"
    path.write_bytes(b"not read: made_with only hashes the file")
    det = dataclasses.replace(_detector(net, cfg), path=path)
    opts = BatchOptions(model=str(path), out_dir=tmp_path / "out")
    off, on = made_with(opts, det), made_with(opts, det.with_adapt_bn(0.5))
    assert "adapt_bn" not in off  # results made before the setting existed still resume
    assert on["adapt_bn"] == 0.5 and json.dumps(on) != json.dumps(off)
