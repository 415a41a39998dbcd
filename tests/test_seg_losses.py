"""CE + soft Dice/Tversky loss for sphere segmentation: finite, weighted, minimised by the right answer."""

import math

import pytest
import torch
import torch.nn.functional as F

from cryopoint.engine.seg_losses import dice_ce_loss


def _target():
    t = torch.zeros(2, 6, 6, 6, dtype=torch.long)
    t[0, 1:3, 1:3, 1:3] = 1
    t[1, 2:5, 2:5, 2:5] = 4
    return t


def test_finite_with_gradient_on_empty_crop():
    logits = torch.randn(2, 7, 5, 5, 5, requires_grad=True)
    loss = dice_ce_loss(logits, torch.zeros(2, 5, 5, 5, dtype=torch.long), torch.ones(6))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_perfect_prediction_beats_wrong_and_reduces_to_ce():
    t = _target()
    perfect = F.one_hot(t, 7).movedim(-1, 1).float() * 20.0
    wrong = torch.roll(perfect, shifts=1, dims=1)
    assert dice_ce_loss(perfect, t) < 0.01 < dice_ce_loss(wrong, t)
    logits = torch.randn(2, 7, 6, 6, 6)
    assert torch.allclose(dice_ce_loss(logits, t, pos_weight=1.0, overlap_weight=0.0), F.cross_entropy(logits, t))


def test_weights_and_target_layouts():
    t = _target()
    logits = torch.randn(2, 7, 6, 6, 6)
    w6 = torch.tensor([1.0, 0.0, 2.0, 1.0, 2.0, 1.0])
    w7 = torch.cat([torch.ones(1), w6])
    assert torch.allclose(dice_ce_loss(logits, t, w6), dice_ce_loss(logits, t, w7))
    assert torch.allclose(dice_ce_loss(logits, t, w6), dice_ce_loss(logits, t[:, None], w6))
    # Up-weighting the class that is present changes the loss.
    assert not torch.allclose(dice_ce_loss(logits, t), dice_ce_loss(logits, t, w6 * torch.arange(1, 7.0)))
    # Background weight 0 on an empty crop: no voxel carries weight, the loss must still be finite.
    zero = dice_ce_loss(logits, torch.zeros_like(t), torch.zeros(7))
    assert torch.isfinite(zero)
    with pytest.raises(ValueError, match="one per particle class"):
        dice_ce_loss(logits, t, torch.ones(3))
    with pytest.raises(ValueError, match="does not match"):
        dice_ce_loss(logits, t[:, :4])


def test_tversky_beta_punishes_misses_more_than_false_alarms():
    t = _target()
    onehot = F.one_hot(t, 7).movedim(-1, 1).float() * 20.0
    misses = onehot.clone()  # half of the class-1 ball predicted as background: 4 false negatives
    misses[0, :, 1, 1:3, 1:3] = 0.0
    misses[0, 0, 1, 1:3, 1:3] = 20.0
    alarms = onehot.clone()  # class 1 painted on 4 extra background voxels: 4 false positives
    alarms[0, :, 3, 1:3, 1:3] = 0.0
    alarms[0, 1, 3, 1:3, 1:3] = 20.0

    def gap(alpha, beta):
        kw = {"alpha": alpha, "beta": beta}
        return dice_ce_loss(misses, t, **kw) - dice_ce_loss(alarms, t, **kw)

    # Shifting weight from false positives to false negatives widens the gap (by ~0.023 here).
    assert gap(0.3, 0.7) > gap(0.5, 0.5) + 0.015
    assert gap(0.7, 0.3) < gap(0.5, 0.5) - 0.015


def test_pos_weight_is_cross_entropy_with_particle_voxels_weighted_up():
    t = _target()
    logits = torch.randn(2, 7, 6, 6, 6)
    w6 = torch.tensor([1.0, 0.5, 2.0, 1.0, 2.0, 1.0])
    expected = F.cross_entropy(logits, t, weight=torch.cat([torch.ones(1), 40.0 * w6]))
    assert torch.allclose(dice_ce_loss(logits, t, w6, pos_weight=40.0, overlap_weight=0.0), expected)
    assert not torch.allclose(dice_ce_loss(logits, t, w6, pos_weight=1.0, overlap_weight=0.0), expected)


def _tversky(probs, onehot, alpha=0.5, beta=0.5, smooth=1.0):
    tp, fp, fn = (probs * onehot).sum(), (probs * (1 - onehot)).sum(), ((1 - probs) * onehot).sum()
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def test_overlap_term_scores_only_the_classes_present_in_the_batch():
    # The cause of the U-Net collapse: a class absent from the batch used to be scored smooth / (alpha * fp +
    # smooth), which is perfect only when the class is predicted nowhere, so every batch without apo-ferritin
    # pushed apo-ferritin down everywhere, far harder than CE pulls it up on its few ball voxels.
    t = _target()  # labels 1 and 4 present; 2, 3, 5, 6 absent
    logits = torch.randn(2, 7, 6, 6, 6)
    logits[:, 2] += 2.0  # an absent class with plenty of false positives
    overlap = dice_ce_loss(logits, t) - dice_ce_loss(logits, t, overlap_weight=0.0)
    probs = logits.softmax(1)
    onehot = F.one_hot(t, 7).movedim(-1, 1).float()
    present = [_tversky(probs[:, c], onehot[:, c]) for c in (1, 4)]
    assert torch.allclose(overlap, 1 - (present[0] + present[1]) / 2, atol=1e-6)
    # The absent classes' predictions do not enter it (only through the softmax that they share).
    no_fp = logits.clone()
    no_fp[:, 2] -= 2.0
    overlap_no_fp = dice_ce_loss(no_fp, t) - dice_ce_loss(no_fp, t, overlap_weight=0.0)
    probs = no_fp.softmax(1)
    present = [_tversky(probs[:, c], onehot[:, c]) for c in (1, 4)]
    assert torch.allclose(overlap_no_fp, 1 - (present[0] + present[1]) / 2, atol=1e-6)
    # A batch with no particle at all has no overlap term.
    empty = torch.zeros_like(t)
    assert torch.allclose(dice_ce_loss(logits, empty), dice_ce_loss(logits, empty, overlap_weight=0.0))


def _bias_gradient(q: float) -> torch.Tensor:
    """Summed gradient on each channel's bias of an uninformed model (every voxel predicts ``q`` per class).

    Six batches as a class-balanced crop sampler gives them: one holds a small ball of label 1 (33 voxels, an
    apo-ferritin at half radius) beside a large label-4 ball; five hold only the large ball. Positive =
    gradient descent pushes that class down everywhere.
    """
    shape = (2, 16, 32, 32)
    rare = torch.zeros(shape, dtype=torch.long)
    rare[0, 6:10, 14:18, 14:18] = 1
    rare[1, 4:12, 10:20, 10:20] = 4
    common = torch.zeros(shape, dtype=torch.long)
    common[0, 4:12, 10:20, 10:20] = 4
    total = torch.zeros(7)
    for target in [rare] + [common] * 5:
        bias = torch.tensor([math.log(1 - 6 * q)] + [math.log(q)] * 6, requires_grad=True)
        logits = bias[None, :, None, None, None].expand(2, 7, *shape[1:])
        total += torch.autograd.grad(dice_ce_loss(logits, target), bias)[0]
    return total


@pytest.mark.parametrize("q", [1e-3, 1e-4, 1e-5])
def test_a_rare_class_is_pulled_up_instead_of_pushed_to_zero(q):
    # The collapse in miniature. The old loss pushed label 1 down at every q (+0.05 .. +0.2 here, and so
    # on towards 0), since the five batches without it scored it by its false positives alone; it pushed the
    # never-seen labels 2, 3, 5, 6 down by ~0.06-0.24 however small q already was.
    grad = _bias_gradient(q)
    assert grad[1] < -0.02  # the rare class rises from any small q
    assert torch.all(grad[[2, 3, 5, 6]].abs() < 10 * q)  # absent classes: only CE's calibration pull, ~q
    assert grad[4] < 0  # the common class rises too
