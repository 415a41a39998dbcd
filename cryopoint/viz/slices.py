"""Orthogonal slices of a tomogram with particles circled by class (matplotlib, Agg, no pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse

from cryopoint.coords import angstrom_to_voxel, as_voxel_size
from cryopoint.errors import PicksFormatError
from cryopoint.io.atomic import atomic_path
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.tomogram import check_volume
from cryopoint.viz.common import class_color, display_limits

__all__ = ["plot_orthoslices", "slice_centre", "class_color", "STATUS_STYLES"]

#: Line style per match status (as produced by the metric's per-pick report): hit, false alarm, miss.
STATUS_STYLES: dict[str, str] = {"tp": "solid", "fp": "dashed", "fn": "dotted"}
# (panel name, array axis held fixed, horizontal axis, vertical axis); axes in array order z=0, y=1, x=2
_PANELS = (("xy", 0, 2, 1), ("xz", 1, 2, 0), ("yz", 2, 1, 0))


def _circles(ax, picks_vox: np.ndarray, picks: pd.DataFrame, panel: tuple, index: int, vs: tuple) -> None:
    """Draw each particle that crosses this slice as an ellipse of its cross-section radius."""
    _, fixed, h_axis, v_axis = panel
    for (name, status), pos in zip(
        zip(picks["particle_type"], picks.get("status", [None] * len(picks)), strict=True), picks_vox, strict=True
    ):
        radius = get_particle(name).radius  # Å
        depth = (pos[fixed] - index) * vs[fixed]  # Å from the slice plane
        if abs(depth) >= radius:
            continue
        cross = np.sqrt(radius**2 - depth**2)  # Å: radius of the particle's section in this plane
        ax.add_patch(
            Ellipse(
                (pos[h_axis], pos[v_axis]),
                width=2 * cross / vs[h_axis],
                height=2 * cross / vs[v_axis],
                fill=False,
                edgecolor=class_color(name),
                linestyle=STATUS_STYLES.get(status, "solid"),
                linewidth=2.2 if status == "fn" else 1.2,  # misses on top and bolder: they matter most
                zorder=3 if status == "fn" else 2,
            )
        )


def slice_centre(
    picks: pd.DataFrame, shape: Sequence[int], voxel_size: float | Sequence[float]
) -> tuple[int, int, int]:
    """Slice indices (z, y, x) whose planes show the most missed particles.

    For each axis, the plane is the index that cuts the most picks with ``status == "fn"`` (a plane cuts a
    particle when it passes within its catalogue radius of the centre), then the one that cuts them widest
    (nearest their centres), then the one that cuts the most picks of any status, then the one nearest the
    volume's centre. Misses are the failures a reader looks for first, and a
    plane through the middle of the volume usually shows none of them.

    Args:
        picks: Picks table with ``particle_type``, ``x, y, z`` (Å) and optional ``status``.
        shape: (Z, Y, X) of the volume.
        voxel_size: Å per voxel, one value or (z, y, x).

    Returns:
        (z, y, x) voxel indices for :func:`plot_orthoslices`'s ``center``.
    """
    vs = as_voxel_size(voxel_size)
    centre = [s // 2 for s in shape]
    if picks is None or picks.empty:
        return tuple(centre)
    pos = angstrom_to_voxel(picks[["x", "y", "z"]].to_numpy(float), vs)  # (N, 3) z, y, x
    radius = np.array([get_particle(n).radius for n in picks["particle_type"]])  # Å
    missed = (picks["status"] == "fn").to_numpy() if "status" in picks else np.zeros(len(picks), bool)
    out = []
    for axis, n in enumerate(shape):
        planes = np.arange(n)[:, None]  # (n, 1) against (1, N) picks
        depth = np.abs(planes - pos[None, :, axis]) * vs[axis]  # (n, N) Å from each plane
        cut = depth < radius[None, :]
        section = np.where(cut, np.sqrt(np.clip(1 - (depth / radius) ** 2, 0, None)), 0.0)  # 1 through a centre
        by_misses = (-cut[:, missed].sum(1), -section[:, missed].sum(1))
        key = np.lexsort((np.abs(np.arange(n) - centre[axis]), -cut.sum(1), by_misses[1], by_misses[0]))
        out.append(int(key[0]))
    return tuple(out)


def plot_orthoslices(
    volume: np.ndarray,
    voxel_size: float | Sequence[float],
    picks: pd.DataFrame | None = None,
    *,
    center: Sequence[int] | None = None,
    title: str | None = None,
    out: str | os.PathLike | None = None,
) -> Figure:
    """Plot xy (at z), xz (at y) and yz (at x) slices through a tomogram, particles circled by class.

    A particle is drawn in a panel when the slice cuts it (``|d| < R`` for depth ``d`` from the slice and
    catalogue radius ``R``), as a circle of the section's radius ``sqrt(R² - d²)``. When ``picks`` has a
    ``status`` column, ``"tp"``/``"fp"``/``"fn"`` picks are solid/dashed/dotted.

    >>> fig = plot_orthoslices(vol, 10.012444, truth, out="tomo.png")  # doctest: +SKIP

    Args:
        volume: (Z, Y, X) array (any real dtype).
        voxel_size: Å per voxel, one value or (z, y, x).
        picks: picks table with ``particle_type`` and ``x, y, z`` in Å; optional ``status``.
        center: (z, y, x) voxel indices of the slices; default: the volume centre.
        title: figure title.
        out: if given, the PNG is written there atomically.

    Returns:
        The matplotlib Figure (Agg; no pyplot window is opened).

    Raises:
        InvalidVolumeError: not a 3-D finite volume.
        PicksFormatError: ``picks`` lacks the needed columns.
        UnknownParticleError: a pick's class is not in the catalogue.
    """
    volume = check_volume(np.asarray(volume))
    vs = as_voxel_size(voxel_size)
    center = [s // 2 for s in volume.shape] if center is None else [int(c) for c in center]
    center = [int(np.clip(c, 0, s - 1)) for c, s in zip(center, volume.shape, strict=True)]
    picks_vox = np.zeros((0, 3))
    if picks is not None:
        missing = {"particle_type", "x", "y", "z"} - set(picks.columns)
        if missing:
            raise PicksFormatError(f"picks lacks columns {sorted(missing)}; expected particle_type, x, y, z (Å).")
        picks_vox = angstrom_to_voxel(picks[["x", "y", "z"]].to_numpy(float), vs)
    nz, ny, nx = volume.shape
    lo, hi = display_limits(volume)
    fig = Figure(figsize=(11, 11 * (ny + nz) / (nx + nz) * 0.92 + 0.6), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[nx * vs[2], nz * vs[0]], height_ratios=[ny * vs[1], nz * vs[0]])
    axes = {"xy": fig.add_subplot(grid[0, 0]), "xz": fig.add_subplot(grid[1, 0]), "yz": fig.add_subplot(grid[0, 1])}
    for panel in _PANELS:
        name, fixed, h_axis, v_axis = panel
        ax = axes[name]
        image = np.take(volume, center[fixed], axis=fixed)  # 2-D, rows = vertical axis, columns = horizontal
        if name == "yz":  # show z horizontally next to the xy panel so that y lines up
            image, h_axis, v_axis = image.T, v_axis, h_axis
            panel = (name, fixed, h_axis, v_axis)
        ax.imshow(
            image,
            cmap="gray",
            vmin=lo,
            vmax=hi,
            origin="lower",
            interpolation="nearest",
            aspect=vs[v_axis] / vs[h_axis],
        )
        axis_names = "zyx"
        ax.set_xlabel(f"{axis_names[h_axis]} (voxels)")
        ax.set_ylabel(f"{axis_names[v_axis]} (voxels)")
        ax.set_title(f"{name} at {axis_names[fixed]} = {center[fixed]}", fontsize=9)
        if picks is not None and len(picks):
            _circles(ax, picks_vox, picks, panel, center[fixed], vs)
    handles = [
        Line2D([], [], color=class_color(n), label=n)
        for n in PARTICLE_NAMES
        if picks is not None and n in set(picks["particle_type"])
    ]
    if picks is not None and "status" in picks.columns:
        handles += [Line2D([], [], color="k", linestyle=s, label=k) for k, s in STATUS_STYLES.items()]
    if handles:
        fig.legend(handles=handles, loc="lower right", bbox_to_anchor=(0.99, 0.02), fontsize=9, frameon=True)
    if title:
        fig.suptitle(title)
    if out is not None:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    return fig
