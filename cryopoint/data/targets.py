"""Gaussian heatmap targets: one channel per particle class, drawn at the model's output stride.

Each particle becomes a 3D Gaussian centred on its true (sub-voxel) position with per-axis width

    sigma (full-resolution voxels) = sigma_factor x radius (Å) / voxel_size (Å per voxel),

so targets scale with the particle and follow anisotropic voxels. Every Gaussian is normalised by its value
at the output voxel nearest the centre, so that voxel holds exactly 1.0 (the peak the loss and the peak
finder look for) while the shape around it still encodes the sub-voxel position. Overlaps merge with
``max`` (two touching particles keep two peaks) and each Gaussian is drawn only in a box of
``truncate x sigma`` around it, so cost grows with the number of particles, not the crop size; particles
outside the crop but within that reach still leave their tails on its border.

Stride convention (:func:`cryopoint.coords.full_to_stride`, shared with the peak finder): output voxel ``i``
covers full-resolution voxels ``i*s .. i*s + s - 1`` and its centre sits at ``i*s + (s - 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryopoint.config import HeatmapTargetOptions
from cryopoint.coords import as_voxel_size, full_to_stride
from cryopoint.errors import PicksFormatError, UnknownParticleError
from cryopoint.particles import PARTICLES, ParticleType, get_particle

__all__ = ["DEFAULT_SIGMA_FACTOR", "sigma_for", "draw_heatmaps"]

#: sigma as a fraction of the radius, ``data.target_options.sigma_factor``'s default: why 0.5 is said where
#: it is decided, :class:`cryopoint.config.HeatmapTargetOptions`.
DEFAULT_SIGMA_FACTOR = HeatmapTargetOptions.sigma_factor


def sigma_for(
    particle: ParticleType | str | float,
    voxel_size: float | Sequence[float],
    sigma_factor: float = DEFAULT_SIGMA_FACTOR,
) -> np.ndarray:
    """Gaussian width of a particle's target in full-resolution voxels, per axis.

    >>> sigma_for("apo-ferritin", 10.0)
    array([3., 3., 3.])

    Args:
        particle: A catalogue entry, its name, or a radius in Å.
        voxel_size: Å per voxel, one value or ``(z, y, x)``.
        sigma_factor: sigma as a fraction of the radius.

    Returns:
        ``(3,)`` float64 sigma in voxels along (z, y, x).
    """
    if isinstance(particle, ParticleType):
        radius = particle.radius
    elif isinstance(particle, str):
        radius = get_particle(particle).radius
    else:
        radius = float(particle)
    if not sigma_factor > 0 or not radius > 0:
        raise ValueError(f"sigma_factor and radius must be positive; got {sigma_factor} and {radius} Å.")
    return sigma_factor * radius / np.asarray(as_voxel_size(voxel_size))


def draw_heatmaps(
    out_shape: Sequence[int],
    points_zyx: np.ndarray,
    labels: np.ndarray,
    *,
    voxel_size: float | Sequence[float],
    stride: int = 1,
    sigma_factor: float = DEFAULT_SIGMA_FACTOR,
    radii: Sequence[float] | None = None,
    truncate: float = HeatmapTargetOptions.truncate,
) -> np.ndarray:
    """Draw per-class Gaussian heatmaps for points given in full-resolution voxels.

    >>> h = draw_heatmaps((8, 8, 8), np.array([[4.0, 4.0, 4.0]]), np.array([0]), voxel_size=10.0)
    >>> h.shape, float(h[0, 4, 4, 4]), float(h[1].max())
    ((6, 8, 8, 8), 1.0, 0.0)

    Args:
        out_shape: ``(Z', Y', X')`` of the output grid (the crop size divided by ``stride``).
        points_zyx: ``(N, 3)`` particle centres in full-resolution voxels of the crop (z, y, x); points
            outside the crop are allowed and contribute their tails.
        labels: ``(N,)`` integer class of each point (heatmap channel, catalogue label).
        voxel_size: Å per full-resolution voxel, one value or ``(z, y, x)``.
        stride: Full-resolution voxels per output voxel (the model's output stride).
        sigma_factor: sigma = ``sigma_factor x radius / voxel_size`` (see :data:`DEFAULT_SIGMA_FACTOR`).
        radii: Radius in Å of each class; defaults to the catalogue's (and sets the channel count).
        truncate: Half-width of the drawn box in sigmas.

    Returns:
        ``(C, Z', Y', X')`` float32 in [0, 1]; exactly 1.0 at the output voxel nearest each centre inside.

    Raises:
        PicksFormatError: points are not ``(N, 3)`` finite numbers or do not match ``labels``.
        UnknownParticleError: a label is not a channel index.
    """
    radii = np.asarray([p.radius for p in PARTICLES] if radii is None else radii, dtype=np.float64)
    shape = np.asarray(out_shape, dtype=np.int64)
    points = np.asarray(points_zyx, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, 3)
    labels = np.asarray(labels).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) != len(labels) or not np.isfinite(points).all():
        raise PicksFormatError(
            f"points_zyx must be (N, 3) finite voxel positions with one label each; got points of shape "
            f"{points.shape} and {len(labels)} labels."
        )
    if len(labels) and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(radii)):
        raise UnknownParticleError(f"labels must be integers in [0, {len(radii)}); got {np.unique(labels)}.")
    heat = np.zeros((len(radii), *shape), dtype=np.float32)
    sigmas = sigma_factor * radii[:, None] / np.asarray(as_voxel_size(voxel_size))[None, :] / stride  # (C, 3) out vox
    centres = full_to_stride(points, stride)  # (N, 3) in output voxels
    for centre, label in zip(centres, labels):
        sigma = sigmas[label]
        nearest = np.round(centre)
        reach = np.maximum(truncate * sigma, 0.5)  # symmetric about the centre, and always holds the nearest voxel
        lo = np.maximum(np.ceil(centre - reach), 0).astype(np.int64)
        hi = np.minimum(np.floor(centre + reach) + 1, shape).astype(np.int64)
        if np.any(lo >= hi):
            continue
        # Per axis: exp(-(d^2 - d_nearest^2) / (2 sigma^2)) is exactly 1 at the nearest voxel and < 1 elsewhere.
        axes = []
        for a in range(3):
            d = np.arange(lo[a], hi[a]) - centre[a]
            d_near = nearest[a] - centre[a]
            axes.append(np.exp(-(d * d - d_near * d_near) / (2.0 * sigma[a] ** 2)))
        block = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
        view = heat[label, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, block, out=view, casting="unsafe")
    return heat
