"""``unet3d``: a plain 3D U-Net on sphere-segmentation targets, the challenge's starter approach as a baseline.

This is the DeepFindET / MONAI-UNet style model the field already uses: every particle is a ball of labels
(:func:`cryopoint.data.sphere_targets.draw_sphere_labels`), the network predicts ``C + 1`` channels
(background + one per particle class) trained with particle-weighted CE + Dice/Tversky
(:func:`cryopoint.engine.seg_losses.dice_ce_loss`), and class probabilities (softmax without the
background) feed the same peak finder as the heatmap model. Registered beside ``heatmap25d`` so the
engine, inference and benchmarks treat both alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cryopoint.config import DEFAULT_UNET_CHANNELS, UNet3DConfig
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.model.decoder import ConvBlock3d
from cryopoint.particles import NUM_CLASSES

__all__ = ["UNet3D"]


class UNet3D(nn.Module):
    """Plain 3D U-Net for sphere segmentation.

    Encoder: a double conv per level, 2x max-pool between levels. Decoder: 2x transposed conv, concatenate
    the skip, double conv. A 1x1x1 head gives ``num_classes + 1`` logits (channel 0 = background) at
    ``output_stride`` (1 = full resolution; 2, 4, ... stop the decoder early, which is cheaper).

    Inputs of any size work: the volume is padded (edge-replicated) up to :attr:`input_multiple` inside
    ``forward`` and the logits are cropped back to ``ceil(size / output_stride)``.

    Args:
        channels: Feature channels per level, shallow to deep; ``len(channels)`` levels, so
            ``len(channels) - 1`` poolings.
        output_stride: Input voxels per output voxel; a power of two below ``2 ** (len(channels) - 1)``.
        num_classes: Particle classes ``C`` (the catalogue's six by default).
        in_channels: Input channels (1 for a tomogram).
        prior: Initial probability of each particle class at every voxel (the head bias is set so that
            softmax gives ``prior`` per class and the rest to background): a stable start when
            particles fill under 1 % of the volume.

    >>> model = UNet3D(channels=(4, 8), output_stride=1)
    >>> model(torch.zeros(1, 1, 6, 10, 7)).shape
    torch.Size([1, 7, 6, 10, 7])
    """

    target_kind = UNet3DConfig.target_kind

    def __init__(  # defaults: the config section's (cryopoint.config.UNet3DConfig), their one home
        self,
        channels: Sequence[int] = DEFAULT_UNET_CHANNELS,
        *,
        output_stride: int = UNet3DConfig.output_stride,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        prior: float = UNet3DConfig.prior,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ConfigError(f"channels needs at least two positive levels, e.g. (16, 32, 64); got {channels}.")
        n_pool = len(channels) - 1
        valid_strides = [2**i for i in range(n_pool)]
        if output_stride not in valid_strides:
            raise ConfigError(
                f"output_stride must be one of {valid_strides} for {len(channels)} levels; got {output_stride}."
            )
        if not 0 < prior * num_classes < 1:
            raise ConfigError(f"prior x num_classes must be in (0, 1); got {prior} x {num_classes}.")
        self.num_classes = int(num_classes)
        self.output_stride = int(output_stride)
        self.input_multiple = (2**n_pool,) * 3
        self.channels = tuple(channels)

        self.encoder = nn.ModuleList(
            [ConvBlock3d(c_in, c_out) for c_in, c_out in zip([in_channels, *channels[:-1]], channels)]
        )
        n_up = n_pool - int(math.log2(output_stride))
        deep_to_shallow = channels[::-1]
        self.ups = nn.ModuleList(
            [nn.ConvTranspose3d(deep_to_shallow[i], deep_to_shallow[i + 1], 2, stride=2) for i in range(n_up)]
        )
        self.decoder = nn.ModuleList(
            [ConvBlock3d(2 * deep_to_shallow[i + 1], deep_to_shallow[i + 1]) for i in range(n_up)]
        )
        self.head = nn.Conv3d(deep_to_shallow[n_up], num_classes + 1, 1)
        nn.init.normal_(self.head.weight, std=0.01)  # small, not zero: gradients must reach the body
        with torch.no_grad():
            self.head.bias.fill_(math.log(prior))
            self.head.bias[0] = math.log(1 - prior * num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Volume ``(B, in_channels, D, H, W)`` → logits ``(B, num_classes + 1, ceil(D/s), ceil(H/s), ceil(W/s))``."""
        if x.ndim != 5:
            raise InvalidVolumeError(f"UNet3D expects (B, C, D, H, W); got shape {tuple(x.shape)}.")
        size = x.shape[2:]
        pad = [(-n) % m for n, m in zip(size, self.input_multiple)]
        if any(pad):
            # F.pad takes (W_lo, W_hi, H_lo, H_hi, D_lo, D_hi): pad the far side only so indices stay put.
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.ups, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        logits = self.head(x)  # (B, C + 1, D', H', W')
        s = self.output_stride
        return logits[..., : -(-size[0] // s), : -(-size[1] // s), : -(-size[2] // s)]

    def heatmaps(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities ``(B, num_classes, ...)`` in [0, 1]: softmax, background dropped."""
        return logits.float().softmax(dim=1)[:, 1:]
