"""Heatmap overlays: one class's predicted heatmap over a tomogram slice."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from cryopoint.particles import get_particle
from cryopoint.viz.common import display_limits, plt, save_png

__all__ = ["plot_heatmap_overlay"]


def plot_heatmap_overlay(
    volume: np.ndarray,
    heatmaps: np.ndarray,
    particle_type: str,
    *,
    stride: int = 1,
    z: int | None = None,
    out: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """Overlay one class's heatmap on an xy slice of the tomogram.

    Args:
        volume: Tomogram (Z, Y, X).
        heatmaps: Per-class heatmaps (C, Z', Y', X') at output stride ``stride`` (channel = catalogue label).
        particle_type: Which class to show.
        stride: Output stride of the heatmaps (full-res voxels per heatmap voxel).
        z: Slice index in full-resolution voxels; default: the slice through the heatmap's maximum.
        out: Optional PNG path (written atomically).
        title: Figure title.

    Returns:
        The figure (closed if ``out`` was given).
    """
    if volume.ndim != 3 or heatmaps.ndim != 4:
        raise ValueError(f"expected volume (Z,Y,X) and heatmaps (C,Z',Y',X'); got {volume.shape} and {heatmaps.shape}")
    label = get_particle(particle_type).label
    heat = np.asarray(heatmaps[label], dtype=np.float32)
    if z is None:
        z = int(np.unravel_index(int(np.argmax(heat)), heat.shape)[0]) * stride + (stride - 1) // 2
    z = int(np.clip(z, 0, volume.shape[0] - 1))
    zh = min(z // stride, heat.shape[0] - 1)
    # Upsample the heatmap slice to the tomogram grid by repetition (nearest), cropped to the volume's size.
    hslice = np.repeat(np.repeat(heat[zh], stride, axis=0), stride, axis=1)[: volume.shape[1], : volume.shape[2]]
    img = np.asarray(volume[z], dtype=np.float32)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), constrained_layout=True)
    lo, hi = display_limits(img)
    for ax in axes:
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        ax.set_xlabel("x (voxels)")
        ax.set_ylabel("y (voxels)")
    axes[0].set_title(f"tomogram, z = {z}")
    im = axes[1].imshow(
        np.ma.masked_less(hslice, 0.02),
        cmap="magma",
        vmin=0,
        vmax=1,
        alpha=0.7,
        origin="lower",
        extent=(-0.5, hslice.shape[1] - 0.5, -0.5, hslice.shape[0] - 0.5),
    )
    axes[1].set_title(f"{particle_type} heatmap (max {heat.max():.2f})")
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="predicted probability")
    if title:
        fig.suptitle(title)
    if out is not None:
        save_png(fig, out)
    return fig
