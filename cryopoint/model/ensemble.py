"""An ensemble of networks of one architecture (the fold models of a k-fold training) that averages probabilities.

The Kaggle CZII winners averaged their fold models' *probabilities*. :class:`Ensemble` does the same while keeping
the contract every cryopoint model has (``forward`` gives logits, ``heatmaps(logits)`` gives probabilities), so
the inference path (sliding window, TTA, ONNX Runtime, peak finding) runs it unchanged: ``forward`` returns the
logits whose probabilities are the members' mean probability, computed in log space (exact, no clipping):

* sigmoid heatmaps (``target_kind == "heatmap"``): ``logit(mean_i p_i)``
  ``= logsumexp_i log sigmoid(l_i) - logsumexp_i log sigmoid(-l_i)``;
* softmax segmentation (``"segmentation"``, channel 0 = background): ``log(mean_i softmax(l_i))``
  ``= logsumexp_i log_softmax(l_i) - log n``, whose softmax is that mean again.

An ensemble checkpoint (``runs/NAME/ensemble.pt``, :mod:`cryopoint.engine.kfold`) stores the ensemble's state dict
(``members.0.*``, ``members.1.*``, ...) as its ``model_state`` and the member count under ``"ensemble"``;
:func:`cryopoint.load` rebuilds it with :func:`ensemble_size` and :func:`build_ensemble`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cryopoint.errors import CheckpointError, ConfigError

__all__ = ["Ensemble", "build_ensemble", "ensemble_size", "ENSEMBLE_KEY"]

#: Checkpoint key that marks an ensemble: ``{"members": n, ...}`` (folds, source checkpoints, their steps).
ENSEMBLE_KEY = "ensemble"


def _heatmap_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    """Logit of the mean sigmoid probability of several logit tensors."""
    stacked = torch.stack([x.float() for x in logits])
    return torch.logsumexp(F.logsigmoid(stacked), 0) - torch.logsumexp(F.logsigmoid(-stacked), 0)


def _segmentation_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    """Log of the mean softmax probability (over channels) of several logit tensors."""
    stacked = torch.stack([x.float().log_softmax(dim=1) for x in logits])
    return torch.logsumexp(stacked, 0) - math.log(len(logits))


#: How members' logits are combined, per target kind (how the kind's ``heatmaps`` turns logits into probabilities).
COMBINE: dict[str, Callable[[list[torch.Tensor]], torch.Tensor]] = {
    "heatmap": _heatmap_logits,
    "segmentation": _segmentation_logits,
}


class Ensemble(nn.Module):
    """Several networks of one architecture whose probabilities are averaged (see the module docstring).

    Args:
        members: The networks (at least one), all with the same ``target_kind``, ``output_stride`` and
            ``num_classes``.

    Attributes:
        members: ``nn.ModuleList`` of the networks.
        target_kind, output_stride, num_classes: The members' (shared) values.
        input_multiple: Per axis, the least common multiple of the members' input multiples.

    Raises:
        ConfigError: no member, or members that disagree on what they predict.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ConfigError("An ensemble needs at least one member network.")
        first = members[0]
        for name in ("target_kind", "output_stride", "num_classes"):
            values = {getattr(m, name) for m in members}
            if len(values) > 1:
                raise ConfigError(f"Ensemble members disagree on {name}: {sorted(map(str, values))}.")
        if first.target_kind not in COMBINE:
            raise ConfigError(f"No ensemble rule for target kind {first.target_kind!r}; known: {', '.join(COMBINE)}.")
        self.members = nn.ModuleList(members)
        self.target_kind = first.target_kind
        self.output_stride = int(first.output_stride)
        self.num_classes = int(first.num_classes)
        self.input_multiple = tuple(math.lcm(*axis) for axis in zip(*(_multiple(m) for m in members)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Volume ``(B, 1, D, H, W)`` → logits whose probabilities (:meth:`heatmaps`) are the members' mean."""
        return COMBINE[self.target_kind]([member(x) for member in self.members])

    def heatmaps(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities, as the members compute them from their own logits."""
        return self.members[0].heatmaps(logits)

    def map_members(self, fn: Callable[[nn.Module], nn.Module]) -> Ensemble:
        """An ensemble of ``fn(member)`` for every member (``self`` when ``fn`` returns every member unchanged)."""
        mapped = [fn(m) for m in self.members]
        if all(a is b for a, b in zip(mapped, self.members)):
            return self
        out = Ensemble(mapped)
        out.training = self.training  # the flag only: each member keeps its own mode
        return out


def _multiple(model: nn.Module) -> tuple[int, int, int]:
    multiple = getattr(model, "input_multiple", getattr(model, "size_multiple", 1))
    return (int(multiple),) * 3 if isinstance(multiple, int) else tuple(int(m) for m in multiple)


def ensemble_size(payload: dict[str, Any]) -> int:
    """Number of member networks of a checkpoint payload: 0 for a single network.

    Raises:
        CheckpointError: an ``"ensemble"`` entry without a positive member count.
    """
    info = payload.get(ENSEMBLE_KEY)
    if info is None:
        return 0
    n = info.get("members") if isinstance(info, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise CheckpointError(f"The checkpoint's {ENSEMBLE_KEY!r} entry needs a positive 'members' count; got {info}.")
    return n


def build_ensemble(n: int, **model_kwargs: Any) -> Ensemble:
    """An ensemble of ``n`` freshly built networks (:func:`cryopoint.model.build_model` keyword arguments)."""
    from cryopoint.model.registry import build_model

    return Ensemble([build_model(**model_kwargs) for _ in range(n)])
