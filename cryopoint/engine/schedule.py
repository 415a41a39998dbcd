"""Learning-rate schedule: linear warmup then cosine decay, by optimiser step."""

from __future__ import annotations

import math

import torch

__all__ = ["WarmupCosine", "build_scheduler"]


class WarmupCosine:
    """LR multiplier at step ``s``: ``s / warmup`` during warmup, then cosine from 1 down to ``min_ratio``.

    A plain object (not a lambda) so its settings go into the scheduler's state dict and resume exactly.

    Args:
        total_steps: Steps of the whole run (the cosine reaches ``min_ratio`` there).
        warmup_steps: Linear warmup length; 0 starts at the full rate.
        min_ratio: Final LR as a fraction of the base LR.

    >>> f = WarmupCosine(100, 10, 0.0)
    >>> f(0), f(10), round(f(55), 3), f(100)
    (0.1, 1.0, 0.5, 0.0)
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float) -> None:
        if total_steps < 1 or warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
            raise ValueError(
                f"Bad schedule: total_steps={total_steps} (>= 1), warmup_steps={warmup_steps} (>= 0), "
                f"min_ratio={min_ratio} (in [0, 1])."
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        # LambdaLR calls with the number of steps already taken; step 0 trains with the first warmup LR.
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` driven by :class:`WarmupCosine`; call ``.step()`` after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_ratio))
