"""Losses for sphere-segmentation models (``target_kind == "segmentation"``): weighted CE + soft Tversky.

The challenge's segmentation entries (DeepFindET's starter, the 2nd place) trained on ball masks with
CE plus Dice or Tversky; the 1st place weighted the particle voxels of its CE up strongly. Two choices here
come from the collapse of our U-Net (docs/design.md, "Why the U-Net collapsed"):

* **Particle voxels weigh ``pos_weight`` (100) times a background voxel in the CE.** Half-radius balls fill
  0.02-0.2 % of a training crop, so plain CE pulls a particle class up about as hard as a prior at its
  voxel frequency pushes it down: a class starts to rise only once it is already rarer than that.
* **The Tversky term scores only the classes present in the batch.** A class absent from the batch
  used to score ``smooth / (alpha * fp + smooth)``, perfect only when the class is predicted nowhere. With
  two crops per batch and six classes, each class is absent from most batches, so this term pushed every
  class but the largest towards probability 0 everywhere, ~10-50x harder than CE pulled it up.

With ``alpha = beta = 0.5`` Tversky is exactly soft Dice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_ce_loss"]


def _full_weights(class_weights: torch.Tensor | None, n_channels: int, like: torch.Tensor) -> torch.Tensor:
    """Weights for all ``n_channels`` channels: background gets 1 when only the particle weights are given."""
    if class_weights is None:
        return torch.ones(n_channels, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(class_weights, dtype=like.dtype, device=like.device).reshape(-1)
    if w.numel() == n_channels - 1:
        w = torch.cat([w.new_ones(1), w])
    if w.numel() != n_channels:
        raise ValueError(
            f"class_weights has {w.numel()} values; pass one per particle class ({n_channels - 1}) "
            f"or one per output channel including background ({n_channels})."
        )
    return w


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    *,
    pos_weight: float = 100.0,
    overlap_weight: float = 1.0,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Class-weighted CE (particles weighted up) plus soft Tversky on the particle classes present in the batch.

    Args:
        logits: ``(B, C + 1, D, H, W)`` raw scores; channel 0 is background.
        target: ``(B, D, H, W)`` (or ``(B, 1, D, H, W)``) integer labels in ``0 .. C``.
        class_weights: ``(C,)`` per-particle weights (background gets 1) or ``(C + 1,)``; None = all 1.
            They weight both the CE terms and each class's Tversky term.
        pos_weight: Extra CE weight of every particle voxel (background 1); 1 = plain class-weighted CE.
        overlap_weight: Multiplier of the Tversky term (0 = plain weighted CE).
        alpha: Tversky weight of false positives.
        beta: Tversky weight of false negatives (``beta > alpha`` favours recall, as F-beta with β=4 does).
        smooth: Additive smoothing; keeps the loss finite and its gradient bounded on crops with no particle.

    Returns:
        Scalar loss. Classes absent from the batch (and a batch with no particle at all) have no Tversky
        term: CE alone keeps their probabilities down, calibrated, without driving them to zero.

    >>> logits = torch.zeros(1, 7, 4, 4, 4, requires_grad=True)
    >>> loss = dice_ce_loss(logits, torch.zeros(1, 4, 4, 4, dtype=torch.long))
    >>> bool(torch.isfinite(loss))
    True
    """
    if target.ndim == logits.ndim:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}; expected "
            f"(B, D, H, W) labels at the model's output stride."
        )
    target = target.long()
    n_channels = logits.shape[1]
    logits = logits.float()  # bf16 autocast would make the sums below inexact
    weights = _full_weights(class_weights, n_channels, logits)
    # Weighted mean of per-voxel CE, particle voxels x pos_weight; the clamp keeps it finite if all weights are 0.
    voxel_w = weights[target] * torch.where(target > 0, pos_weight, 1.0)
    ce = (F.cross_entropy(logits, target, reduction="none") * voxel_w).sum() / voxel_w.sum().clamp_min(1e-8)
    if overlap_weight == 0:
        return ce
    probs = logits.softmax(dim=1)[:, 1:]  # (B, C, D, H, W) particle channels
    onehot = F.one_hot(target, n_channels).movedim(-1, 1)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3, 4)
    tp = (probs * onehot).sum(dims)
    fp = (probs * (1 - onehot)).sum(dims)
    fn = ((1 - probs) * onehot).sum(dims)
    tversky = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)  # (C,)
    fg_weights = weights[1:] * (onehot.sum(dims) > 0)  # absent classes: no term (see the module docstring)
    overlap = ((1 - tversky) * fg_weights).sum() / fg_weights.sum().clamp_min(1e-8)
    return ce + overlap_weight * overlap
