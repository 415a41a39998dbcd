"""An inference-only copy of a network, rearranged to run faster on a CPU with the same results.

Two rewrites, both exact up to float rounding, applied to a copy (the caller's model, which may be training,
is never touched):

* **BatchNorm folding**: an eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` (or ``BatchNorm3d``
  after ``Conv3d``, in a decoder built with ``decoder_norm: batch``) is an affine map per channel, so it is
  folded into the convolution's weights and bias and replaced by ``Identity``.
* **channels_last**: the 2D encoder's weights and inputs are stored NHWC, the layout oneDNN's CPU kernels
  prefer (no reorders around every convolution).

Which convolution a BatchNorm follows is read from module registration order (the convention of timm's
ResNets and of ``nn.Sequential``), which a network is free to break; so the folded model is checked against
the original on a small probe input, and the original is kept (with a warning) when they disagree.
Measured effect (speed and score against the plain model): ``benchmarks/results/inference.md``.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "inference_copy", "ChannelsLast"]

#: Largest relative difference between the folded and the original encoder on the probe input that is still
#: float rounding (observed: ~1e-6); anything larger means the registration-order guess was wrong.
FOLD_TOLERANCE = 1e-4


#: The convolution type each foldable BatchNorm type must follow.
_CONV_OF = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm3d: nn.Conv3d}


def _last_conv(module: nn.Module | None, conv_type: type = nn.Conv2d) -> tuple[nn.Module, str] | None:
    """``(parent, key)`` of the ``conv_type`` that ends an ``nn.Sequential`` (nested ones included), else None."""
    if not isinstance(module, nn.Sequential) or not len(module):
        return None
    if isinstance(module[-1], conv_type):
        return module, str(len(module) - 1)
    return _last_conv(module[-1], conv_type)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` (``BatchNorm3d``) into the ``Conv2d`` (``Conv3d``) registered just
    before it, in place.

    A sequential stem that ends in a convolution (timm's deep stems, ``conv1 = Sequential(..., Conv2d)``,
    ``bn1 = BatchNorm2d``) counts as that convolution. Only exact ``nn.BatchNorm2d`` instances are folded:
    subclasses such as timm's ``BatchNormAct2d`` carry an activation that folding would drop.

    Returns:
        The number of BatchNorm layers folded.
    """
    folded = 0
    names = list(module._modules)
    for first, second in zip(names, names[1:]):
        conv, norm = module._modules[first], module._modules[second]
        conv_type = _CONV_OF.get(type(norm))
        if conv_type is None or not norm.track_running_stats:
            continue
        if norm.training:
            raise ValueError("fold_batchnorm needs eval mode: the BatchNorm running statistics are what is folded.")
        if isinstance(conv, conv_type):
            parent, key = module, first
        elif (found := _last_conv(conv, conv_type)) is not None:
            parent, key = found
        else:
            continue
        conv = parent._modules[key]
        if conv.out_channels != norm.num_features:
            continue
        parent._modules[key] = fuse_conv_bn_eval(conv, norm)
        module._modules[second] = nn.Identity().eval()
        folded += 1
    for child in module._modules.values():
        if child is not None:
            folded += fold_batchnorm(child)
    return folded


class ChannelsLast(nn.Module):
    """Run a 2D module on NHWC tensors: the input is made channels_last, the weights already are."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):  # noqa: ANN201 - whatever the wrapped module returns
        return self.module(x.contiguous(memory_format=torch.channels_last))


def _probe_outputs(encoder: nn.Module, channels: int) -> list[torch.Tensor]:
    probe = torch.randn(2, channels, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = encoder(probe)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def inference_copy(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """An eval-mode copy of ``model`` rearranged for fast inference on ``device`` (same outputs).

    On a CPU, a model with a 2D ``encoder`` (``heatmap25d``) gets its BatchNorms folded and runs channels_last;
    a decoder built with BatchNorm (``decoder_norm: batch``, cryopoint's own ``ConvBlock3d``, whose order is
    known) is folded too.
    Elsewhere (CUDA runs cuDNN under bf16 autocast already) and for other models, ``model`` itself is returned.
    An :class:`~cryopoint.model.ensemble.Ensemble` gets an inference copy of each member.
    """
    from cryopoint.model.ensemble import Ensemble

    if isinstance(model, Ensemble):
        return model.map_members(lambda member: inference_copy(member, device))
    encoder = getattr(model, "encoder", None)
    first_conv = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d)), None) if encoder else None
    if torch.device(device).type != "cpu" or first_conv is None:
        return model
    fast = copy.deepcopy(model).eval()
    reference = _probe_outputs(fast.encoder, first_conv.in_channels)
    if fold_batchnorm(fast.encoder):
        folded = _probe_outputs(fast.encoder, first_conv.in_channels)
        scale = max(float(r.abs().max()) for r in reference) + 1e-6
        error = max(float((f - r).abs().max()) for f, r in zip(folded, reference)) / scale
        if error > FOLD_TOLERANCE:
            warnings.warn(
                f"Folding BatchNorm into the convolutions of encoder {type(model.encoder).__name__} changed its "
                f"output (relative error {error:.1e}); running it unfolded (slower, same results).",
                stacklevel=2,
            )
            fast.encoder = copy.deepcopy(model.encoder).eval()
    fast.encoder = ChannelsLast(fast.encoder)
    if isinstance(getattr(fast, "decoder", None), nn.Module):
        fold_batchnorm(fast.decoder)
    return fast
