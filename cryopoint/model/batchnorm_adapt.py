"""Label-free adaptation of a network's BatchNorm statistics to one tomogram (``infer.adapt_bn``).

A network trained on one simulator normalises its features with statistics of that simulator's data. On a
tomogram from another source (another simulator, another microscope, real data) the features' scale and offset
move, and with them the scores. :func:`adapt_batchnorm` re-estimates every BatchNorm layer's mean and variance on
windows of the tomogram itself (the network run in training mode, no gradients, no labels), and mixes them with
the trained statistics:

    mean = (1 - weight) x trained mean + weight x the tomogram's mean   (the variance likewise)

``weight`` 0 leaves the network as trained, 1 takes the tomogram's statistics alone (AdaBN). The windows are
fixed by the tomogram's shape (:func:`adaptation_windows`), so the same tomogram always gets the same network.
Only the statistics change; no weight is trained. The model given is never modified: a copy is adapted.

Why a mix and not the tomogram's statistics alone: the trained statistics come from crops centred on particles,
a tomogram's windows hold mostly background, so on data like the training data the tomogram's statistics alone
move the scores too. What the mix gains and costs on held-out sources is measured in ``docs/models.md``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cryopoint.errors import ConfigError, InvalidVolumeError

__all__ = ["ADAPT_MAX_WINDOWS", "ADAPT_WINDOW", "adapt_batchnorm", "adaptation_windows", "batchnorm_layers"]

#: Window (z, y, x voxels) the statistics are gathered on: the training crops' depth, twice their width.
ADAPT_WINDOW = (32, 128, 128)
#: At most this many windows per tomogram, spread evenly over its non-overlapping tiling.
ADAPT_MAX_WINDOWS = 24


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` that keeps running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


def _starts(size: int, window: int) -> list[int]:
    """Non-overlapping starts of ``window`` along an axis of ``size``, the last one flush with the end."""
    n = max(1, size // window)
    starts = [i * window for i in range(n)]
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def adaptation_windows(
    shape: Sequence[int],
    multiple: Sequence[int],
    window: Sequence[int] = ADAPT_WINDOW,
    max_windows: int = ADAPT_MAX_WINDOWS,
) -> list[tuple[slice, slice, slice]]:
    """The windows (z, y, x slices) of a volume of ``shape`` that :func:`adapt_batchnorm` runs the network on.

    Each window is ``window`` clipped to the volume and rounded down to the model's input ``multiple`` per axis;
    the volume is tiled without overlap and, where that gives more than ``max_windows`` windows, ``max_windows``
    of them are taken evenly spread over the tiling (in z, y, x order). Deterministic: a pure function of the
    arguments.

    Raises:
        InvalidVolumeError: the volume is smaller than ``multiple`` along an axis.
        ConfigError: ``max_windows`` is below 1.
    """
    if max_windows < 1:
        raise ConfigError(f"max_windows must be at least 1; got {max_windows}.")
    if any(int(s) < int(m) for s, m in zip(shape, multiple)):
        raise InvalidVolumeError(
            f"Tomogram of shape (z, y, x) = {tuple(shape)} is smaller than the model's field of view "
            f"{tuple(multiple)}; use a larger tomogram (or a less binned one)."
        )
    sizes = [max(int(m), min(int(w), int(s)) // int(m) * int(m)) for s, m, w in zip(shape, multiple, window)]
    tiles = list(itertools.product(*(_starts(int(s), w) for s, w in zip(shape, sizes))))
    if len(tiles) > max_windows:
        tiles = [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, max_windows).round()]
    return [tuple(slice(a, a + w) for a, w in zip(t, sizes)) for t in tiles]  # type: ignore[misc]


def adapt_batchnorm(
    model: nn.Module,
    volume: np.ndarray,
    weight: float,
    *,
    device: str | torch.device = "cpu",
    window: Sequence[int] = ADAPT_WINDOW,
    max_windows: int = ADAPT_MAX_WINDOWS,
) -> nn.Module:
    """An eval-mode copy of ``model`` whose BatchNorm statistics are mixed with ``volume``'s own.

    Args:
        model: A cryopoint model on ``device`` (an :class:`~cryopoint.model.ensemble.Ensemble`: each member is
            adapted). It is not modified.
        volume: The tomogram (z, y, x), already normalised as inference normalises it
            (:func:`cryopoint.data.normalize.normalize_volume`).
        weight: Share of the tomogram's statistics, in (0, 1]; 0 returns ``model`` itself.
        device: Where the windows run.
        window, max_windows: As in :func:`adaptation_windows`.

    Raises:
        ConfigError: ``weight`` is outside [0, 1], or the model has no BatchNorm layer to adapt.
        InvalidVolumeError: the volume is smaller than the model's input multiple.
    """
    from cryopoint.model.ensemble import Ensemble

    if not 0.0 <= float(weight) <= 1.0:
        raise ConfigError(f"infer.adapt_bn must be in [0, 1] (0 = off); got {weight}.")
    if float(weight) == 0.0:
        return model
    if isinstance(model, Ensemble):
        return model.map_members(
            lambda m: adapt_batchnorm(m, volume, weight, device=device, window=window, max_windows=max_windows)
        )
    if not batchnorm_layers(model):
        raise ConfigError(
            f"infer.adapt_bn is on but {type(model).__name__} has no BatchNorm layer with running statistics to "
            "adapt; set infer.adapt_bn=0 for this model."
        )
    multiple = getattr(model, "input_multiple", getattr(model, "size_multiple", 1))
    multiple = (multiple,) * 3 if isinstance(multiple, int) else tuple(multiple)
    windows = adaptation_windows(volume.shape, multiple, window, max_windows)

    adapted = copy.deepcopy(model).eval()
    layers = batchnorm_layers(adapted)
    trained = [(b.running_mean.clone(), b.running_var.clone(), b.momentum) for b in layers]
    for b in layers:
        b.reset_running_stats()
        b.momentum = None  # a cumulative average over the windows, each weighing the same
        b.train()
    with torch.no_grad():
        for w in windows:
            x = torch.from_numpy(np.ascontiguousarray(volume[w], dtype=np.float32))[None, None].to(device)
            adapted(x)
    w_new = float(weight)
    for b, (mean, var, momentum) in zip(layers, trained):
        b.running_mean.mul_(w_new).add_(mean, alpha=1.0 - w_new)
        b.running_var.mul_(w_new).add_(var, alpha=1.0 - w_new)
        b.momentum = momentum
    return adapted.eval()
