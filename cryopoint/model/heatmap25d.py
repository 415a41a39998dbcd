"""``heatmap25d``: a 2D timm encoder over thin slabs of slices, a 3D U-Net decoder, Gaussian-heatmap logits.

The idea (4th place of the CZII challenge, written from its description): every depth position ``d`` of
the volume becomes a ``k``-channel 2D image (slices ``d - k//2 .. d + k//2``, edges replicated), a timm
CNN encodes all of them at once, the per-stage feature maps are stacked back into 3D volumes and
average-pooled along depth, and a 3D U-Net decoder turns them into one heatmap per particle class at
output stride 1 or 2. 2D ImageNet-style encoders are cheap, plentiful and fast; the 3D decoder restores
the context across slices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cryopoint.config import DEFAULT_DECODER_CHANNELS, Heatmap25DConfig
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.model.decoder import DecoderLevel, UNetDecoder3d, check_norm
from cryopoint.model.pretrained import load_encoder_weights
from cryopoint.particles import NUM_CLASSES

__all__ = ["Heatmap25D", "DEFAULT_DEPTH_POOL", "DEFAULT_DECODER_CHANNELS"]

#: Largest depth reduction of any encoder stage when ``depth_pool`` is not given: stage features with xy
#: reduction ``r`` are averaged over ``min(r, 4)`` slices, so deep stages are not 32x finer in z than in xy
#: yet a 32-slice crop still keeps 8 depth positions at the coarsest level.
DEFAULT_DEPTH_POOL = 4
#: Most slab-image pixels encoded in one pass (see ``Heatmap25D._encode``): ~0.3 GB of stem activations.
ENCODE_PIXELS = 2**22


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def _create_encoder(name: str, slab: int, out_indices: Sequence[int] | None = None) -> nn.Module:
    kwargs = {"features_only": True, "in_chans": slab, "pretrained": False}
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(
            f"Cannot build timm encoder {name!r} with features_only=True: {exc}. "
            "List the names with `python -c \"import timm; print(timm.list_models('resnet*'))\"`."
        ) from exc


class Heatmap25D(nn.Module):
    """2.5D heatmap network: timm encoder on ``k``-slice slabs, 3D U-Net decoder, sigmoid heatmaps.

    Args:
        encoder: Any timm CNN name that supports ``features_only`` (``resnet18``, ``resnet34``,
            ``resnet50d``, ``convnext_nano``, ``efficientnet_b0``, tiny ``resnet10t``, ...). Built with
            ``pretrained=False``: weights only come from ``pretrained``.
        slab: Slab thickness ``k``: slices per encoded depth position, the encoder's input channels.
        slab_step: Encode every ``t``-th depth position only (1 or 2, at most ``output_stride``). With ``t = 2``
            the encoder, most of the cost, runs on half the positions and slab ``j`` holds slices
            ``2j - (k - 2)/2 .. 2j + k/2``, centred on the stride-2 output voxel ``j`` (``k`` must be even);
            with ``t = 1`` slab ``d`` holds slices ``d - k//2 .. d + k//2`` (``k`` odd).
        num_classes: Heatmap channels ``C`` (the catalogue's six by default, channel ``i`` = label ``i``).
        output_stride: Input voxels per output voxel along every axis, 1 or 2.
        decoder_channels: Width of each decoder level, coarsest first. There is one level per encoder
            stage above the finest, plus one per halving from the finest stage down to ``output_stride``;
            extra entries are ignored and missing finer levels keep halving the last width (at least 8).
        depth_pool: How much each encoder stage's features are averaged along depth. An int ``m`` (or
            empty/None for :data:`DEFAULT_DEPTH_POOL`): a stage with xy reduction ``r`` is pooled by
            ``min(r, m)``. A list: one power-of-two factor per encoder stage, finest first, non-decreasing.
        decoder_norm: The decoder's normalisation (:data:`cryopoint.model.decoder.NORMS`): ``group`` makes a
            voxel's score depend on the window it is predicted in, ``batch`` does not (any inference window
            size and overlap gives the same scores, and it folds into the convolutions at inference).
        prior: Initial probability of a particle at every voxel; the head bias is ``-log((1 - p) / p)``
            (RetinaNet's prior) so early training is not swamped by the background.
        pretrained: Path of a local encoder weights file (a timm/torchvision-style state dict of the same
            encoder, or a cryopoint checkpoint whose encoder is reused); empty or None: random init.
            Loaded with ``torch.load(weights_only=True)``; nothing is ever downloaded.

    ``forward`` accepts any ``(B, 1, D, H, W)`` size: the volume is edge-padded to :attr:`input_multiple`
    inside and the logits are cropped back to ``(B, C, ceil(D/s), ceil(H/s), ceil(W/s))``; output voxel
    ``i`` covers input voxels ``i*s .. i*s + s - 1``.

    >>> model = Heatmap25D(encoder="test_resnet", slab=3, output_stride=2)
    >>> model(torch.zeros(1, 1, 8, 32, 32)).shape
    torch.Size([1, 6, 4, 16, 16])
    """

    target_kind = Heatmap25DConfig.target_kind

    def __init__(  # defaults: the config section's (cryopoint.config.Heatmap25DConfig), their one home
        self,
        encoder: str = Heatmap25DConfig.encoder,
        *,
        slab: int = Heatmap25DConfig.slab,
        slab_step: int = Heatmap25DConfig.slab_step,
        num_classes: int = NUM_CLASSES,
        output_stride: int = Heatmap25DConfig.output_stride,
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
        depth_pool: int | Sequence[int] | None = None,
        decoder_norm: str = Heatmap25DConfig.decoder_norm,
        prior: float = Heatmap25DConfig.prior,
        pretrained: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (1, 2):
            raise ConfigError(f"output_stride must be 1 or 2; got {output_stride}.")
        if slab_step not in (1, 2) or slab_step > output_stride:
            raise ConfigError(f"slab_step must be 1 or 2 and at most output_stride ({output_stride}); got {slab_step}.")
        if slab < slab_step or (slab - slab_step) % 2:
            parity = "odd (e.g. 5)" if slab_step == 1 else "even (e.g. 4 or 6)"
            raise ConfigError(f"slab must be {parity} with slab_step={slab_step}, so slabs are centred; got {slab}.")
        if not 0.0 < prior < 1.0:
            raise ConfigError(f"prior must be a probability in (0, 1), e.g. 0.01; got {prior}.")
        if not decoder_channels or min(decoder_channels) < 1:
            raise ConfigError(f"decoder_channels needs positive widths, coarsest first; got {decoder_channels}.")
        self.encoder_name = encoder
        self.slab = int(slab)
        self.slab_step = int(slab_step)
        self.num_classes = int(num_classes)
        self.output_stride = int(output_stride)

        self.encoder = _create_encoder(encoder, self.slab)
        reductions = self.encoder.feature_info.reduction()
        if min(reductions) < self.output_stride:  # features finer than the output are never used: drop them
            keep = [i for i, r in zip(self.encoder.feature_info.out_indices, reductions) if r >= self.output_stride]
            self.encoder = _create_encoder(encoder, self.slab, keep)
            reductions = self.encoder.feature_info.reduction()
        self.feature_channels = tuple(int(c) for c in self.encoder.feature_info.channels())
        self.feature_reductions = tuple(int(r) for r in reductions)
        if not all(map(_is_power_of_two, self.feature_reductions)):
            raise ConfigError(f"Encoder {encoder!r} has reductions {self.feature_reductions}; powers of two needed.")
        self.depth_factors = self._depth_factors(depth_pool)

        levels = self._plan_levels([int(c) for c in decoder_channels])
        try:
            norm = check_norm(decoder_norm)
        except ValueError as err:
            raise ConfigError(f"model.decoder_norm: {err}") from None
        self.decoder = UNetDecoder3d(self.feature_channels[-1], levels, norm)
        self.head = nn.Conv3d(levels[-1].channels, self.num_classes, kernel_size=1)
        nn.init.normal_(self.head.weight, std=0.01)  # small, not zero: gradients must reach the body
        nn.init.constant_(self.head.bias, -math.log((1.0 - prior) / prior))

        xy = math.lcm(*self.feature_reductions, self.output_stride)
        #: (z, y, x) input sizes that need no internal padding (any size works; these waste no compute).
        self.input_multiple = (math.lcm(*self.depth_factors, self.output_stride), xy, xy)
        if pretrained:
            load_encoder_weights(self.encoder, pretrained)

    def _depth_factors(self, depth_pool: int | Sequence[int] | None) -> tuple[int, ...]:
        """Depth reduction of each encoder stage's features (finest stage first)."""
        if depth_pool is None or (isinstance(depth_pool, Sequence) and len(depth_pool) == 0):
            depth_pool = DEFAULT_DEPTH_POOL
        if isinstance(depth_pool, int):
            if not _is_power_of_two(depth_pool) or depth_pool < self.output_stride:
                raise ConfigError(
                    f"depth_pool={depth_pool} must be a power of two >= output_stride ({self.output_stride})."
                )
            return tuple(min(r, depth_pool) for r in self.feature_reductions)
        factors = tuple(int(f) for f in depth_pool)
        n = len(self.feature_reductions)
        if (
            len(factors) != n
            or not all(map(_is_power_of_two, factors))
            or list(factors) != sorted(factors)
            or factors[0] < self.output_stride
        ):
            raise ConfigError(
                f"depth_pool={list(factors)}: give {n} non-decreasing powers of two >= output_stride "
                f"({self.output_stride}), one per encoder stage (xy reductions {list(self.feature_reductions)}), "
                f"or one int cap such as {DEFAULT_DEPTH_POOL}."
            )
        return factors

    def _plan_levels(self, widths: list[int]) -> list[DecoderLevel]:
        """Decoder levels, coarsest first: every encoder stage above the finest, then halvings to the output."""
        specs = [
            (r, g, c)
            for r, g, c in zip(self.feature_reductions[:-1], self.depth_factors[:-1], self.feature_channels[:-1])
        ][::-1]
        r, g = self.feature_reductions[0], self.depth_factors[0]
        while r > self.output_stride:
            r, g = r // 2, min(r // 2, g)
            specs.append((r, g, 0))
        if not specs:
            raise ConfigError(
                f"Encoder {self.encoder_name!r} gives a single feature level at output stride {self.output_stride}; "
                "choose an encoder with several stages."
            )
        if specs[-1][1] != self.output_stride:
            raise ConfigError(
                f"depth_pool pools the finest level by {specs[-1][1]} in depth but the output stride is "
                f"{self.output_stride}: make the first depth_pool factor {self.output_stride}."
            )
        while len(widths) < len(specs):
            widths.append(max(8, widths[-1] // 2))
        return [DecoderLevel(r, g, c, w) for (r, g, c), w in zip(specs, widths)]

    def _encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encode slab images ``((B D/t), k, H, W)`` into per-stage features pooled along depth, finest first.

        Each stage's features are averaged over groups of ``g/t`` consecutive depth positions (a reshape and a
        mean, which a CPU runs faster than ``avg_pool3d``; inference speed: ``benchmarks/results/inference.md``).
        The images go through the encoder in chunks of whole pooling groups of at most :data:`ENCODE_PIXELS`
        pixels, so a large inference window never holds the full-resolution activations of all its slabs at
        once; a training crop is a single chunk. Every sample's depth is a multiple of every group size, so no
        group straddles two samples or two chunks.
        """
        t = self.slab_step
        groups = [g // t for g in self.depth_factors]
        per_chunk = max(groups)
        per_chunk *= max(1, ENCODE_PIXELS // (images.shape[-2] * images.shape[-1] * per_chunk))
        stages: list[list[torch.Tensor]] = [[] for _ in groups]
        for start in range(0, images.shape[0], per_chunk):
            for pooled, feat, g in zip(stages, self.encoder(images[start : start + per_chunk]), groups):
                pooled.append(rearrange(feat, "(n g) c h w -> n g c h w", g=g).mean(dim=1) if g > 1 else feat)
        return [torch.cat(chunks) if len(chunks) > 1 else chunks[0] for chunks in stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Volume ``(B, 1, D, H, W)`` float → logits ``(B, num_classes, ceil(D/s), ceil(H/s), ceil(W/s))``."""
        if x.ndim != 5 or x.shape[1] != 1:
            raise InvalidVolumeError(f"Heatmap25D expects a (B, 1, D, H, W) batch; got shape {tuple(x.shape)}.")
        b, size = x.shape[0], tuple(x.shape[2:])
        pad = [(-n) % m for n, m in zip(size, self.input_multiple)]
        k, t = self.slab, self.slab_step
        half = (k - t) // 2
        # F.pad order is (W_lo, W_hi, H_lo, H_hi, D_lo, D_hi): pad the far sides up to the multiple (indices stay
        # put) and both depth ends by (k - t)/2 so every encoded position has a full slab; edges are replicated.
        x = F.pad(x, (0, pad[2], 0, pad[1], half, half + pad[0]), mode="replicate")
        depth = size[0] + pad[0]
        n = depth // t  # encoded depth positions; slab j holds padded slices j*t .. j*t + k - 1
        slabs = torch.stack([x[:, 0, i : i + (n - 1) * t + 1 : t] for i in range(k)], dim=2)  # (B, D/t, k, H, W)
        images = rearrange(slabs, "b d k h w -> (b d) k h w")
        feats = [rearrange(f, "(b d) c h w -> b c d h w", b=b) for f in self._encode(images)]  # (B, C_i, D/g_i, ...)
        skips = [*feats[:-1][::-1]] + [None] * (len(self.decoder.levels) - len(feats) + 1)
        sizes = [
            (depth // lv.depth_reduction, (size[1] + pad[1]) // lv.reduction, (size[2] + pad[2]) // lv.reduction)
            for lv in self.decoder.levels
        ]
        logits = self.head(self.decoder(feats[-1], skips, sizes))  # (B, C, D'/s, H'/s, W'/s) of the padded input
        s = self.output_stride
        return logits[..., : -(-size[0] // s), : -(-size[1] // s), : -(-size[2] // s)]

    def heatmaps(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities ``(B, num_classes, ...)`` in [0, 1] (sigmoid of the logits, in float32)."""
        return torch.sigmoid(logits.float())
