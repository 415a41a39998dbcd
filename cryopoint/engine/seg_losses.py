"""Losses for sphere-segmentation models (``target_kind == "segmentation"``): cross-entropy + soft Tversky.

The challenge's segmentation entries (DeepFindET's starter, the 2nd place) trained on ball masks with
CE plus Dice or Tversky. CE alone drowns the tiny foreground in background voxels; the overlap term is
computed per class over the whole batch, so it rewards recall of small classes. With ``alpha = beta =
0.5`` Tversky is exactly soft Dice.
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
    """Class-weighted cross-entropy plus soft Tversky (Dice at ``alpha = beta = 0.5``) on the particle channels.

    Args:
        logits: ``(B, C + 1, D, H, W)`` raw scores; channel 0 is background.
        target: ``(B, D, H, W)`` (or ``(B, 1, D, H, W)``) integer labels in ``0 .. C``.
        class_weights: ``(C,)`` per-particle weights (background gets 1) or ``(C + 1,)``; None = all 1.
            They weight both the CE terms and each class's Tversky term.
        overlap_weight: Multiplier of the Tversky term (0 = plain weighted CE).
        alpha: Tversky weight of false positives.
        beta: Tversky weight of false negatives (``beta > alpha`` favours recall, as F-beta with β=4 does).
        smooth: Additive smoothing; keeps the loss finite and its gradient bounded on crops with no particle.

    Returns:
        Scalar loss. On a crop with no particle the Tversky term only pushes foreground probabilities down.

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
    # Weighted mean of per-voxel CE; the clamp keeps it finite if every voxel's class has weight 0.
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
    fg_weights = weights[1:] * (onehot.sum(dims) > 0)
    overlap = ((1 - tversky) * fg_weights).sum() / fg_weights.sum().clamp_min(1e-8)
    return ce + overlap_weight * overlap
