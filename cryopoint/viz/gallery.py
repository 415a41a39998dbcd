"""Failure gallery: small xy and xz crops centred on the worst misses and the most confident false positives."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from cryopoint.coords import angstrom_to_voxel
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.tomogram import Tomogram
from cryopoint.viz.common import class_color, display_limits, save_png

__all__ = ["select_failures", "plot_failure_gallery", "TEXT_COLOR"]

#: Colour of every title and caption: dark on the white page, whatever the class colour.
TEXT_COLOR = "#1a1a1a"


def select_failures(
    matched_truth: pd.DataFrame, matched_pred: pd.DataFrame, *, per_class: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pick the failures worth looking at, per class.

    Args:
        matched_truth: Truth table with ``found`` and ``nearest_distance`` (Å to the nearest same-class
            prediction), as returned by :func:`cryopoint.metric.match_points`.
        matched_pred: Prediction table with ``hit``, ``nearest_distance`` and ``score``.
        per_class: How many of each kind per class.

    Returns:
        ``(misses, false_positives)``: misses are unfound true particles with the farthest nearest prediction
        first (nothing anywhere near: the clearest misses); false positives are predictions that hit nothing,
        most confident first.
    """
    misses = matched_truth[~matched_truth["found"]]
    misses = (
        misses.sort_values("nearest_distance", ascending=False, kind="stable")
        .groupby("particle_type", sort=False)
        .head(per_class)
    )
    fps = matched_pred[~matched_pred["hit"]]
    if "score" in fps:
        fps = fps.sort_values("score", ascending=False, kind="stable")
    fps = fps.groupby("particle_type", sort=False).head(per_class)
    order = {n: i for i, n in enumerate(PARTICLE_NAMES)}
    key = lambda s: s.map(order) if s.name == "particle_type" else s  # noqa: E731
    return (
        misses.sort_values("particle_type", key=key, kind="stable").reset_index(drop=True),
        fps.sort_values("particle_type", key=key, kind="stable").reset_index(drop=True),
    )


def _crop(img: np.ndarray, cy: int, cx: int, half: int) -> np.ndarray:
    """A (2*half+1)^2 crop centred on (cy, cx), padded with the image median outside."""
    pad = np.pad(img, half, mode="constant", constant_values=float(np.median(img)))
    return pad[cy : cy + 2 * half + 1, cx : cx + 2 * half + 1]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _caption(row: pd.Series, kind: str) -> str:
    dist = row.get("nearest_distance", np.inf)
    dist_txt = "none" if not np.isfinite(dist) else f"{dist:.0f} Å"
    if kind == "miss":
        return f"MISS {row['experiment']}\nnearest pred: {dist_txt}"
    score = row.get("score", np.nan)
    return f"FP score {score:.2f}\nnearest truth: {dist_txt}"


def plot_failure_gallery(
    tomograms: Mapping[str, Tomogram],
    misses: pd.DataFrame,
    false_positives: pd.DataFrame,
    out: str | os.PathLike | None = None,
    *,
    context: float = 2.5,
) -> Figure:
    """Draw each failure as an xy crop (at its z) above an xz crop (at its y), two panels per failure.

    Args:
        tomograms: Experiment name → Tomogram (normalised or raw; contrast is set per crop).
        misses, false_positives: Tables from :func:`select_failures` (Å positions, ``experiment``,
            ``particle_type``).
        out: Optional PNG path (written atomically).
        context: Crop half-width in units of the particle radius.

    Returns:
        The figure. Failures whose tomogram is not in ``tomograms`` are skipped (their count is in the title).
    """
    rows = [(r, "miss") for _, r in misses.iterrows()] + [(r, "fp") for _, r in false_positives.iterrows()]
    shown = [(r, k) for r, k in rows if r["experiment"] in tomograms]
    ncol = max(1, min(6, len(shown)))
    nrow = max(1, -(-len(shown) // ncol))
    # Constrained layout keeps the figure title above the panel titles; text is dark on white, and the
    # class colour goes on the circle and the panel frame, where even yellow reads well.
    fig = Figure(figsize=(2.3 * ncol, 4.8 * nrow + 0.4), layout="constrained")
    axes = fig.subplots(2 * nrow, ncol, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (row, kind) in enumerate(shown):
        tomo = tomograms[row["experiment"]]
        z, y, x = np.rint(angstrom_to_voxel(row[["x", "y", "z"]].to_numpy(float), tomo.voxel_size)[0]).astype(int)
        radius_vox = get_particle(row["particle_type"]).radius / tomo.voxel_size[2]
        half = max(6, int(round(context * radius_vox)))
        zc = int(np.clip(z, 0, tomo.shape[0] - 1))
        yc = int(np.clip(y, 0, tomo.shape[1] - 1))
        xy = _crop(np.asarray(tomo.data[zc], dtype=np.float32), y, x, half)
        xz = _crop(np.asarray(tomo.data[:, yc, :], dtype=np.float32), z, x, half)
        color = class_color(row["particle_type"])
        for j, (img, label) in enumerate(((xy, "xy"), (xz, "xz"))):
            ax = axes[2 * (i // ncol) + j, i % ncol]
            lo, hi = display_limits(img)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
            ax.add_patch(
                Circle((half, half), radius_vox, fill=False, color=color, lw=1.5, ls="-" if kind == "fp" else ":")
            )
            ax.set_title(
                f"{row['particle_type']} ({label})\n{_caption(row, kind)}" if j == 0 else f"({label})",
                fontsize=7,
                color=TEXT_COLOR,
            )
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5)
    skipped = len(rows) - len(shown)
    fig.suptitle(
        f"Failure gallery: {_count(len(misses), 'miss', 'misses')} (dotted), "
        f"{_count(len(false_positives), 'false positive', 'false positives')} (solid)"
        + (f"; {skipped} without a tomogram at hand" if skipped else ""),
        fontsize=10,
        color=TEXT_COLOR,
    )
    if out is not None:
        save_png(fig, out)
    return fig
