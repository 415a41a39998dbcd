"""Sphere-segmentation targets for the ``unet3d`` baseline: each particle a solid ball of labels.

The challenge's segmentation solutions (DeepFindET, 2nd/3rd place) train on label volumes in which every
particle is a ball of a fraction (0.4-0.5) of its radius. Label ``0`` is background and particle class
``i`` (catalogue label) is written as ``i + 1``. Where balls overlap, each voxel goes to the nearest
centre (in Å), so neighbouring particles stay separate components.

Grid convention (shared with :mod:`cryopoint.data.targets` and the peak finder): output voxel ``j`` of a
grid at ``stride`` s is centred on full-resolution voxel ``j * s + (s - 1) / 2``
(:func:`cryopoint.coords.stride_to_full`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryopoint.config import SegmentationTargetOptions
from cryopoint.coords import as_voxel_size, full_to_stride
from cryopoint.errors import UnknownParticleError
from cryopoint.particles import NUM_CLASSES, PARTICLES

__all__ = ["draw_sphere_labels"]


def draw_sphere_labels(
    out_shape: Sequence[int],
    points_zyx: np.ndarray,
    labels: np.ndarray,
    *,
    voxel_size: float | Sequence[float],
    stride: int = 1,
    radius_fraction: float = SegmentationTargetOptions.radius_fraction,
) -> np.ndarray:
    """Draw a label volume with one solid ball per particle.

    Only a small box around each particle is touched, so the cost is proportional to the number of
    particles and their volume, not to the crop size. Points outside the grid still paint the part of
    their ball that falls inside it.

    Args:
        out_shape: ``(Z', Y', X')`` of the label grid (at ``stride``).
        points_zyx: ``(N, 3)`` particle centres in full-resolution voxels, ``(z, y, x)`` order, relative to
            the crop's first full-resolution voxel.
        labels: ``(N,)`` catalogue labels (``0 .. NUM_CLASSES - 1``).
        voxel_size: Å per full-resolution voxel, one value or ``(z, y, x)``.
        stride: Output stride of the grid (full-resolution voxels per output voxel).
        radius_fraction: Ball radius as a fraction of each particle's catalogue radius.

    Returns:
        ``(Z', Y', X')`` int64 labels: ``0`` background, ``label + 1`` inside a particle's ball.

    Raises:
        UnknownParticleError: a label is outside the catalogue.
        ValueError: shapes do not match, ``stride < 1`` or ``radius_fraction <= 0``.

    A ribosome (label 3, radius 150 Å) at 10 Å/voxel gets a ball of 0.5 x 150 Å = 7.5 voxels:

    >>> lab = draw_sphere_labels((21, 21, 21), np.array([[10.0, 10.0, 10.0]]), np.array([3]), voxel_size=10.0)
    >>> int(lab[10, 10, 10]), int(lab[10, 10, 17]), int(lab[10, 10, 18])
    (4, 4, 0)
    """
    out_shape = tuple(int(s) for s in out_shape)
    if len(out_shape) != 3:
        raise ValueError(f"out_shape must be (Z, Y, X); got {out_shape}.")
    if stride < 1:
        raise ValueError(f"stride must be >= 1; got {stride}.")
    if radius_fraction <= 0:
        raise ValueError(f"radius_fraction must be > 0; got {radius_fraction}.")
    points = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(labels).reshape(-1)
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels; pass one label per point.")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UnknownParticleError(
            f"Labels must be in 0..{NUM_CLASSES - 1} (catalogue order); got {sorted(set(labels))}."
        )

    out = np.zeros(out_shape, dtype=np.int64)
    # Squared Å distance of each labelled voxel to the centre that painted it (nearest centre wins).
    best = np.full(out_shape, np.inf, dtype=np.float32)
    step = np.asarray(as_voxel_size(voxel_size)) * stride  # Å per output voxel, (z, y, x)
    centres = full_to_stride(points, stride)  # output-grid coordinates, the peak finder's mapping
    for centre, label in zip(centres, labels):
        radius = radius_fraction * PARTICLES[int(label)].radius  # Å
        half = radius / step  # ball half-extent in output voxels, per axis
        lo = np.maximum(np.ceil(centre - half).astype(int), 0)
        hi = np.minimum(np.floor(centre + half).astype(int) + 1, out_shape)
        if np.any(hi <= lo):
            continue
        axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, centre, step)]
        d2 = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2).astype(
            np.float32
        )
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        take = (d2 <= radius**2) & (d2 < best[box])
        out[box][take] = int(label) + 1
        best[box][take] = d2[take]
    return out
