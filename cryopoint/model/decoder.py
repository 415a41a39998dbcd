"""A 3D U-Net decoder whose levels and skip widths are read from an encoder's ``feature_info``.

The decoder knows nothing about the encoder except, per level, the xy reduction, the depth reduction and
the channel count of the skip (0 where the encoder has no feature map at that level). Each level upsamples
the coarser map to the skip's size, concatenates the skip and applies two 3x3x3 conv blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NORMS", "DecoderLevel", "ConvBlock3d", "UNetDecoder3d"]

#: Normalisation layers a decoder can use. ``group`` (GroupNorm) is independent of the batch size but computes
#: its statistics over the whole input window, so a voxel's score depends on the window it was predicted in
#: (size, overlap, what else is in it). ``batch`` (BatchNorm) learns running statistics during training and
#: applies them as a fixed affine map at inference: a voxel's score depends only on its receptive field, so
#: any window size gives the same scores (and the map folds into the convolution before it).
NORMS: tuple[str, ...] = ("group", "batch")


@dataclass(frozen=True)
class DecoderLevel:
    """One decoder level, coarsest first.

    Attributes:
        reduction: Input voxels per feature voxel in y and x.
        depth_reduction: Input voxels per feature voxel in z.
        skip_channels: Channels of the encoder feature map joined at this level (0: no skip).
        channels: Output channels of this level's conv blocks.
    """

    reduction: int
    depth_reduction: int
    skip_channels: int
    channels: int


def check_norm(norm: str) -> str:
    """``norm`` if it is one of :data:`NORMS`, else a ValueError that lists them."""
    if norm not in NORMS:
        raise ValueError(f"Unknown decoder norm {norm!r}; choose one of {', '.join(NORMS)}.")
    return norm


def _norm(channels: int, norm: str) -> nn.Module:
    if check_norm(norm) == "batch":
        return nn.BatchNorm3d(channels)
    return nn.GroupNorm(num_groups=math.gcd(8, channels), num_channels=channels)


class ConvBlock3d(nn.Sequential):
    """(3x3x3 conv → norm → ReLU) x 2, ``(B, c_in, D, H, W) → (B, c_out, D, H, W)``; ``norm`` from :data:`NORMS`."""

    def __init__(self, c_in: int, c_out: int, norm: str = "group") -> None:
        super().__init__(
            nn.Conv3d(c_in, c_out, 3, padding=1, bias=False),
            _norm(c_out, norm),
            nn.ReLU(inplace=True),
            nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
            _norm(c_out, norm),
            nn.ReLU(inplace=True),
        )


class UNetDecoder3d(nn.Module):
    """3D U-Net decoder over encoder features of any widths and reductions.

    Args:
        bottom_channels: Channels of the coarsest encoder feature map (the decoder's input).
        levels: The levels to produce, coarsest first; the last one is the output level.
        norm: The normalisation of every conv block, one of :data:`NORMS`.

    ``forward(bottom, skips)`` takes the coarsest map ``(B, bottom_channels, d, h, w)`` and one skip per level
    (``None`` where ``skip_channels == 0``) and returns ``(B, levels[-1].channels, *sizes[-1])`` where
    ``sizes`` gives the target spatial size of each level.
    """

    def __init__(self, bottom_channels: int, levels: Sequence[DecoderLevel], norm: str = "group") -> None:
        super().__init__()
        self.levels = tuple(levels)
        widths = [bottom_channels] + [lv.channels for lv in self.levels[:-1]]
        self.blocks = nn.ModuleList(
            [ConvBlock3d(c_prev + lv.skip_channels, lv.channels, norm) for c_prev, lv in zip(widths, self.levels)]
        )

    def forward(
        self, bottom: torch.Tensor, skips: Sequence[torch.Tensor | None], sizes: Sequence[tuple[int, int, int]]
    ) -> torch.Tensor:
        """Run the decoder; ``skips`` and ``sizes`` have one entry per level, coarsest first."""
        x = bottom
        for block, skip, size in zip(self.blocks, skips, sizes):
            x = F.interpolate(x, size=size, mode="nearest")
            x = block(x if skip is None else torch.cat([x, skip], dim=1))
        return x
