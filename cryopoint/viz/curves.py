"""Threshold figures: F-beta against threshold per class, and precision-recall curves (PNG, Agg, atomic)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryopoint.io.atomic import atomic_path

__all__ = ["plot_fbeta_curves", "plot_pr_curves"]


def _save(fig: Figure, out: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(out)


def plot_fbeta_curves(
    curves: Mapping[str, pd.DataFrame], thresholds: Mapping[str, float], out: str | os.PathLike
) -> Path:
    """One panel per class: F-beta, precision and recall against the score threshold, tuned threshold marked.

    Args:
        curves: ``{class name: DataFrame(threshold, precision, recall, fbeta, ...)}`` as in
            ``ThresholdResult.curves`` (ascending thresholds; a value holds for thresholds up to and
            including its own, hence the step drawing).
        thresholds: ``{class name: tuned threshold}``.
        out: PNG path, written atomically.

    Returns:
        ``out`` as a Path.
    """
    names = list(curves)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        curve = curves[name]
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("score threshold (keep >=)")
        ax.set_ylim(0, 1.05)
        if curve.empty:
            ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
            continue
        x = curve["threshold"]
        ax.plot(x, curve["fbeta"], drawstyle="steps-pre", color="C0", lw=2, label="F-beta")
        ax.plot(x, curve["recall"], drawstyle="steps-pre", color="C2", lw=1, alpha=0.7, label="recall")
        ax.plot(
            x,
            curve["precision"].clip(upper=1.05),
            drawstyle="steps-pre",
            color="C1",
            lw=1,
            alpha=0.7,
            label="precision",
        )
        if name in thresholds:
            t = thresholds[name]
            best = curve.loc[curve["threshold"] == t, "fbeta"]
            ax.axvline(t, color="k", ls="--", lw=1)
            if len(best):
                ax.plot([t], [best.iloc[0]], "ko")
                ax.annotate(
                    f"t={t:.3g}\nF={best.iloc[0]:.3f}",
                    (t, best.iloc[0]),
                    xytext=(5, -28),
                    textcoords="offset points",
                    fontsize=8,
                )
        if i == 0:
            ax.legend(fontsize=8, loc="lower left")
    return _save(fig, out)


def plot_pr_curves(curves: Mapping[str, pd.DataFrame], out: str | os.PathLike) -> Path:
    """Precision against recall for every class on one axes (one point per distinct threshold).

    Args:
        curves: ``{class name: DataFrame(threshold, precision, recall, ...)}`` as in ``ThresholdResult.curves``.
        out: PNG path, written atomically.

    Returns:
        ``out`` as a Path.
    """
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        if not curve.empty:
            ax.plot(curve["recall"], curve["precision"], marker=".", ms=3, color=f"C{i}", label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (can exceed 1 under the many-to-one rule)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, out)
