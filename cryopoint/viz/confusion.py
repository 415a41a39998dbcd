"""Class confusion: for predictions near a true particle, which class was predicted for which true class."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.viz.common import plt, save_png

__all__ = ["confusion_matrix", "plot_confusion"]


def confusion_matrix(
    truth: pd.DataFrame, predictions: pd.DataFrame, *, distance_multiplier: float = 0.5
) -> pd.DataFrame:
    """Count predictions that fall on true particles, by (true class, predicted class).

    A prediction counts for a true particle when it lies within that particle's match distance
    (``distance_multiplier x radius`` of the *true* class, the same ball the metric uses), in the same
    experiment. The diagonal holds correct-class hits; off-diagonal cells are class confusions; the extra
    column ``(none)`` counts predictions of each class that lie on no true particle at all (pure false
    positives), per predicted class, in the last row.

    Returns:
        DataFrame indexed by true class (plus a final ``(none)`` row), columns predicted classes.
    """
    names = list(PARTICLE_NAMES)
    mat = pd.DataFrame(0, index=[*names, "(none)"], columns=names, dtype=int)
    if predictions.empty:
        return mat
    on_particle = np.zeros(len(predictions), dtype=bool)
    pred_xyz = predictions[["x", "y", "z"]].to_numpy(float)
    pred_exp = predictions["experiment"].to_numpy()
    pred_cls = predictions["particle_type"].to_numpy()
    for exp, tgroup in truth.groupby("experiment"):
        in_exp = np.flatnonzero(pred_exp == exp)
        if in_exp.size == 0:
            continue
        tree = cKDTree(pred_xyz[in_exp])
        for tcls, tsub in tgroup.groupby("particle_type"):
            radius = distance_multiplier * get_particle(tcls).radius
            for hits in tree.query_ball_point(tsub[["x", "y", "z"]].to_numpy(float), r=radius):
                for j in hits:
                    mat.loc[tcls, pred_cls[in_exp[j]]] += 1
                    on_particle[in_exp[j]] = True
    for pcls, count in pd.Series(pred_cls[~on_particle]).value_counts().items():
        mat.loc["(none)", pcls] += int(count)
    return mat


def plot_confusion(matrix: pd.DataFrame, out: str | os.PathLike | None = None, *, title: str | None = None) -> Figure:
    """Draw :func:`confusion_matrix` as an annotated heat map (rows normalised for colour, raw counts written)."""
    counts = matrix.to_numpy(float)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7.5, 6.2), constrained_layout=True)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=35, ha="right")
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true particle under the prediction")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if frac[i, j] > 0.6 else "black",
                    fontsize=9,
                )
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the row")
    ax.set_title(title or "Which class is predicted on which true particle")
    if out is not None:
        save_png(fig, out)
    return fig
