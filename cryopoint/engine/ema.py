"""Exponential moving average (EMA) of model weights, used for validation and saved in checkpoints."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Keeps ``shadow = d * shadow + (1 - d) * weights`` after every optimiser step.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n`` so that the
    average is not dominated by the random initialisation in short runs. Floating-point buffers (e.g.
    batch-norm statistics) are averaged too; integer buffers are copied.

    Args:
        model: The trained model (unwrapped, not the DDP wrapper).
        decay: Asymptotic decay per step, e.g. 0.999; 0 makes the EMA a copy of the weights.

    >>> ema = ModelEMA(model, decay=0.99)  # doctest: +SKIP
    >>> ema.update(model)                   # after each optimizer.step()  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1); got {decay}.")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update will use."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average."""
        d = self.current_decay()
        self.updates += 1
        src = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = src[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(d).add_(value.to(ema_value.dtype), alpha=1.0 - d)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (a plain model state dict)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore averaged weights and the update count (for resuming)."""
        self.module.load_state_dict(state)
        self.updates = int(updates)
