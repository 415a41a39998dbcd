import sys

import pytest
import torch

from cryopoint.engine.losses import LOSSES, build_loss, focal_loss, get_loss, weighted_mse_loss
from cryopoint.errors import ConfigError


def _target(c=3, shape=(4, 8, 8), centre=(2, 4, 4), channel=1):
    t = torch.zeros(1, c, *shape)
    z, y, x = centre
    t[0, channel, z, y, x] = 1.0
    t[0, channel, z, y, x - 1] = 0.6  # a shoulder of the Gaussian
    return t


@pytest.mark.parametrize("name", ["mse", "focal"])
def test_finite_on_empty_crop_and_gradients(name):
    logits = torch.randn(2, 3, 4, 8, 8, requires_grad=True)
    loss = LOSSES[name](logits, torch.zeros_like(logits), None)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["mse", "focal"])
def test_extreme_logits_stay_finite(name):
    t = _target()
    logits = torch.full_like(t, -60.0)
    logits[t == 1] = 60.0
    assert torch.isfinite(LOSSES[name](logits, t, None))
    assert torch.isfinite(LOSSES[name](-logits, t, None))


@pytest.mark.parametrize("name", ["mse", "focal"])
def test_perfect_prediction_beats_wrong_one(name):
    t = _target()
    good = torch.logit(t.clamp(1e-4, 1 - 1e-4))
    assert LOSSES[name](good, t, None) < LOSSES[name](-good, t, None)
    assert LOSSES[name](good, t, None) < LOSSES[name](torch.zeros_like(t), t, None)


def test_class_weights_select_and_are_scale_free():
    t = _target(channel=1)
    logits = torch.full_like(t, -3.0)  # predicts background everywhere
    for fn in (weighted_mse_loss, focal_loss):
        only_other = fn(logits, t, torch.tensor([1.0, 0.0, 1.0]))
        only_pos = fn(logits, t, torch.tensor([0.0, 1.0, 0.0]))
        assert only_pos > only_other  # the class holding the particle is the costly one
        torch.testing.assert_close(
            fn(logits, t, torch.tensor([1.0, 2.0, 3.0])), fn(logits, t, torch.tensor([2.0, 4.0, 6.0]))
        )
        torch.testing.assert_close(fn(logits, t, None), fn(logits, t, torch.ones(3)))


def test_mse_matches_hand_computation():
    t = _target()
    logits = torch.zeros_like(t)
    expected_per_class = ((0.5 - t) ** 2).transpose(0, 1).flatten(1).mean(1)
    w = torch.tensor([1.0, 2.0, 3.0])
    expected = (expected_per_class * w * 3 / w.sum()).mean()
    torch.testing.assert_close(weighted_mse_loss(logits, t, w), expected)


def test_focal_vs_mse_on_sparse_targets():
    # Predicting background everywhere is cheap under MSE (few foreground voxels) but the focal loss,
    # normalised by the number of centres, still charges the missed centre in full.
    t = _target(shape=(8, 16, 16))
    background = torch.full_like(t, -6.0)
    good = torch.logit(t.clamp(1e-3, 1 - 1e-3))
    mse_ratio = weighted_mse_loss(background, t) / weighted_mse_loss(good, t).clamp(min=1e-12)
    focal_ratio = focal_loss(background, t) / focal_loss(good, t).clamp(min=1e-12)
    assert focal_loss(background, t) > 1.0  # ~ -log(sigmoid(-6)) at the centre
    assert weighted_mse_loss(background, t) < 0.01
    assert focal_ratio > 1 and mse_ratio > 1


def test_bad_weights_and_names():
    t = _target()
    with pytest.raises(ConfigError, match="3 classes"):
        weighted_mse_loss(torch.zeros_like(t), t, torch.ones(2))
    with pytest.raises(ConfigError, match="non-negative"):
        focal_loss(torch.zeros_like(t), t, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ConfigError, match="Options: dice_ce, focal, mse"):
        get_loss("l1")
    assert get_loss("mse") is weighted_mse_loss


def test_dice_ce_is_resolved_lazily(monkeypatch):
    """The segmentation loss module is imported on first use, not with the registry, and the registry entry
    (called directly, as the trainer may) computes exactly that loss. A fresh copy of the registry module runs
    with the loss module unloaded; monkeypatch puts the loaded one back afterwards."""
    import importlib.util

    import cryopoint.engine

    monkeypatch.delitem(sys.modules, "cryopoint.engine.seg_losses", raising=False)
    monkeypatch.delattr(cryopoint.engine, "seg_losses", raising=False)
    spec = importlib.util.find_spec("cryopoint.engine.losses")
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert "cryopoint.engine.seg_losses" not in sys.modules, "imported with the registry"
    fn = fresh.get_loss("dice_ce")
    seg_losses = sys.modules["cryopoint.engine.seg_losses"]
    assert fn is seg_losses.dice_ce_loss
    torch.manual_seed(0)
    logits, target = torch.randn(2, 7, 4, 8, 8), torch.randint(0, 7, (2, 4, 8, 8))
    torch.testing.assert_close(fresh.LOSSES["dice_ce"](logits, target, None), fn(logits, target, None))


def test_loss_options_reach_the_loss():
    """``train.loss_options`` binds the loss's keyword options: a changed focal ``beta`` changes the value."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 2, 4, 8, 8, generator=gen)
    target = torch.rand(1, 2, 4, 8, 8, generator=gen) * 0.9
    target[0, 0, 2, 4, 4] = 1.0
    default = build_loss("focal")(logits, target, None)
    assert build_loss("focal", {})(logits, target, None) == default
    torch.testing.assert_close(
        build_loss("focal", {"beta": 1.0})(logits, target, None), focal_loss(logits, target, beta=1.0)
    )
    assert not torch.isclose(build_loss("focal", {"beta": 1.0})(logits, target, None), default)


def test_dice_ce_pos_weight_is_configurable():
    labels = torch.zeros(1, 4, 8, 8, dtype=torch.long)
    labels[0, 1:3, 3:5, 3:5] = 2
    logits = torch.randn(1, 7, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = build_loss("dice_ce", {"pos_weight": 1.0, "overlap_weight": 0.0})(logits, labels, None)
    assert torch.isclose(plain, torch.nn.functional.cross_entropy(logits, labels))
    assert not torch.isclose(build_loss("dice_ce", {"overlap_weight": 0.0})(logits, labels, None), plain)


def test_an_unknown_loss_option_is_refused_with_the_options_listed():
    with pytest.raises(ConfigError, match=r"\['gamma'\] are not options of loss 'focal'.*alpha=2.0, beta=4.0"):
        build_loss("focal", {"gamma": 2.0})
    with pytest.raises(ConfigError, match="must be a number"):
        build_loss("focal", {"alpha": True})
