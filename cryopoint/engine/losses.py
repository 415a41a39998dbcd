"""Training losses for heatmap models, and the registry of every training loss (``train.loss``).

Every loss has the signature ``loss(logits, target, class_weights, *, options) -> scalar tensor`` where ``logits`` and
``target`` are ``(B, C, D, H, W)`` (target in [0, 1], peak exactly 1.0 at particle centres) and
``class_weights`` is a ``(C,)`` tensor or ``None`` (all ones). Weights are normalised to mean 1, so changing
their overall scale does not change the learning rate. Losses are computed in float32 whatever the autocast
dtype of the logits. The keyword-only ``options`` (e.g. focal ``alpha``/``beta``, dice_ce ``pos_weight``) are set
from the config's ``train.loss_options`` by :func:`build_loss`.

``"dice_ce"`` (segmentation targets, used by the 3D U-Net baseline) lives in another module. The registry is a
:class:`~cryopoint.lazy.LazyRegistry`, as the model registry is: every entry is imported on first use, so
this module does not depend on the segmentation losses. Which losses fit which targets is
:data:`cryopoint.config.TARGET_KINDS`; the config refuses a loss that does not fit the model.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from cryopoint.errors import ConfigError
from cryopoint.lazy import LazyRegistry

__all__ = ["LOSSES", "get_loss", "build_loss", "loss_options", "weighted_mse_loss", "focal_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _normalised_weights(class_weights: torch.Tensor | None, num_classes: int, device: torch.device) -> torch.Tensor:
    """``(C,)`` float32 weights with mean 1 (all ones when ``None``)."""
    if class_weights is None:
        return torch.ones(num_classes, device=device)
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=device).flatten()
    if w.numel() != num_classes:
        raise ConfigError(f"train.class_weights has {w.numel()} values but the model predicts {num_classes} classes.")
    if (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"train.class_weights must be non-negative with a positive sum; got {w.tolist()}.")
    return w * (num_classes / w.sum())


def weighted_mse_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error between ``sigmoid(logits)`` and the Gaussian heatmap, weighted per class.

    Args:
        logits: ``(B, C, D, H, W)`` raw model outputs.
        target: ``(B, C, D, H, W)`` heatmaps in [0, 1].
        class_weights: ``(C,)`` relative weight of each class (mean-normalised), or ``None``.

    Returns:
        Scalar: ``sum_c w_c * mean((sigmoid(x_c) - t_c)^2) / C``.
    """
    prob = torch.sigmoid(logits.float())
    per_class = (prob - target.float()).pow(2).transpose(0, 1).flatten(1).mean(dim=1)  # (C,)
    w = _normalised_weights(class_weights, logits.shape[1], logits.device)
    return (per_class * w).mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 4.0,
) -> torch.Tensor:
    """Penalty-reduced focal loss on Gaussian heatmaps (the CenterNet / CornerNet variant).

    Centre voxels (target == 1) are positives; every other voxel is a negative whose penalty shrinks by
    ``(1 - target)^beta`` near a centre. The sum is divided by the number of positives in the batch (at
    least 1), so a crop with no particle gives a finite loss made of negatives only.

    Args:
        logits: ``(B, C, D, H, W)`` raw model outputs.
        target: ``(B, C, D, H, W)`` heatmaps in [0, 1], exactly 1.0 at centres.
        class_weights: ``(C,)`` relative weight of each class (mean-normalised), or ``None``.
        alpha: Focusing exponent on the prediction.
        beta: Exponent of the penalty reduction around centres.

    Returns:
        Scalar loss.
    """
    x = logits.float()
    t = target.float()
    pos = t >= 1.0 - 1e-4
    log_p = F.logsigmoid(x)  # log(p), stable for large |x|
    log_1mp = F.logsigmoid(-x)  # log(1 - p)
    p = torch.sigmoid(x)
    pos_term = torch.where(pos, log_p * (1 - p).pow(alpha), torch.zeros_like(x))
    neg_term = torch.where(pos, torch.zeros_like(x), log_1mp * p.pow(alpha) * (1 - t).pow(beta))
    per_class = (pos_term + neg_term).transpose(0, 1).flatten(1).sum(dim=1)  # (C,)
    w = _normalised_weights(class_weights, logits.shape[1], logits.device)
    num_pos = pos.sum().clamp(min=1).float()
    return -(per_class * w).sum() / num_pos


#: Loss registry: ``train.loss`` in the config picks an entry by name.
LOSSES = LazyRegistry(
    "train.loss",
    {
        "mse": "cryopoint.engine.losses:weighted_mse_loss",
        "focal": "cryopoint.engine.losses:focal_loss",
        "dice_ce": "cryopoint.engine.seg_losses:dice_ce_loss",
    },
)


def get_loss(name: str, registry: Mapping[str, LossFn] = LOSSES) -> LossFn:
    """Look a loss up by name.

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    if name not in registry:
        raise ConfigError(f"Unknown loss {name!r} (train.loss). Options: {', '.join(sorted(registry))}.")
    return registry[name]


def loss_options(fn: Callable) -> dict[str, Any]:
    """The tunable keyword-only options of a loss function and their defaults (``train.loss_options`` keys)."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_loss(name: str, options: Mapping[str, Any] | None = None, registry: Mapping[str, LossFn] = LOSSES) -> LossFn:
    """The loss ``name`` with ``options`` (``train.loss_options``) bound, e.g. ``{"pos_weight": 30}`` for dice_ce.

    Raises:
        ConfigError: unknown loss, or an option the loss does not take (the message lists the ones it does,
            with their defaults), or a value that is not a number.
    """
    fn = get_loss(name, registry)
    if not options:
        return fn
    known = loss_options(fn)
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(f"{k}={v}" for k, v in known.items()) or "none"
        raise ConfigError(f"train.loss_options {unknown} are not options of loss {name!r}; its options: {listed}.")
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"train.loss_options.{key} must be a number; got {value!r}.")
    return functools.partial(fn, **{k: float(v) for k, v in options.items()})
