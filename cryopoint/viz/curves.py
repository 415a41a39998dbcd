"""Threshold figures: F-beta against threshold per class, and precision-recall curves (PNG, Agg, atomic).

``fbeta_figure`` and ``pr_figure`` build the figures (tests read what they draw); ``plot_fbeta_curves`` and
``plot_pr_curves`` also write them.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cryopoint.io.atomic import atomic_path
from cryopoint.viz.common import class_color

__all__ = ["fbeta_figure", "pr_figure", "plot_fbeta_curves", "plot_pr_curves", "pr_points"]

#: Colour of a panel, its lines and its notes when the class has no true particle to score against.
NO_TRUTH_COLOR = "#8c8c8c"


def _save(fig: Figure, out: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(out)


def _n_true(curve: pd.DataFrame, name: str, n_true: Mapping[str, int] | None) -> int | None:
    """True particles of a class: from the curve (TP + FN is the same on every row), else from ``n_true``."""
    if len(curve) and {"tp", "fn"} <= set(curve.columns):
        return int(curve["tp"].iloc[0] + curve["fn"].iloc[0])
    return None if n_true is None or name not in n_true else int(n_true[name])


def _f_label(beta: float | None) -> str:
    return "F-beta" if beta is None else f"F{beta:g}"


def fbeta_figure(
    curves: Mapping[str, pd.DataFrame],
    thresholds: Mapping[str, float],
    *,
    beta: float | None = None,
    n_true: Mapping[str, int] | None = None,
) -> Figure:
    """One panel per class: F-beta, precision and recall against the score threshold, a threshold marked.

    The marked threshold and its F-beta are written in the panel title (never over the axes' numbers). A
    class without true particles is drawn grey with a note: its F-beta is 0 by convention, which is not
    the same as missing every particle.

    Args:
        curves: ``{class name: DataFrame(threshold, tp, fn, precision, recall, fbeta, ...)}`` as in
            ``ThresholdResult.curves`` (ascending thresholds; a value holds for thresholds up to and
            including its own, hence the step drawing).
        thresholds: ``{class name: threshold}`` to mark (tuned or applied).
        beta: F-beta's β, for the labels (None: "F-beta").
        n_true: True particles per class, used for classes without predictions (empty curves).

    Returns:
        The figure (Agg, no pyplot state).
    """
    names = list(curves)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    f = _f_label(beta)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        curve = curves[name]
        n = _n_true(curve, name, n_true)
        ax.set_xlabel("score threshold (keep >=)")
        if i % cols == 0:
            ax.set_ylabel(f"{f}, precision, recall")
        ax.set_ylim(0, 1.05)
        if n == 0:
            ax.set_facecolor("#f2f2f2")
            ax.set_title(f"{name}\nno true particles", fontsize=10, color=NO_TRUTH_COLOR)
            what = "no predictions either" if curve.empty else f"all {int(curve['fp'].iloc[0])} predictions are false"
            ax.text(
                0.5,
                0.5,
                f"no particles to find:\n{what};\n{f} is 0 by convention",
                ha="center",
                va="center",
                color=NO_TRUTH_COLOR,
                fontsize=9,
                transform=ax.transAxes,
            )
            if len(curve):
                ax.plot(curve["threshold"], curve["fbeta"], drawstyle="steps-pre", color=NO_TRUTH_COLOR, lw=1)
            continue
        if curve.empty:
            ax.set_title(f"{name}\nno predictions" + (f" ({n} true particles missed)" if n else ""), fontsize=10)
            continue
        x = curve["threshold"]
        ax.plot(x, curve["fbeta"], drawstyle="steps-pre", color="C0", lw=2, label=f)
        ax.plot(x, curve["recall"], drawstyle="steps-pre", color="C2", lw=1, alpha=0.7, label="recall")
        precision = curve["precision"].clip(upper=1.05)  # above 1 only when one pick covers two particles
        ax.plot(x, precision, drawstyle="steps-pre", color="C1", lw=1, alpha=0.7, label="precision")
        title = name
        if name in thresholds:
            t = thresholds[name]
            at = curve.loc[curve["threshold"] == t, "fbeta"]
            ax.axvline(t, color="k", ls="--", lw=1)
            if len(at):
                ax.plot([t], [at.iloc[0]], "ko", ms=5)
                title += f"\nthreshold {t:.4g}: {f} = {at.iloc[0]:.3f}"
            else:
                title += f"\nthreshold {t:.4g} (no prediction scores exactly that)"
        ax.set_title(title, fontsize=10)
    handles = [
        Line2D([], [], color="C0", lw=2, label=f),
        Line2D([], [], color="C2", lw=1, label="recall"),
        Line2D([], [], color="C1", lw=1, label="precision"),
        Line2D([], [], color="k", ls="--", marker="o", ms=5, lw=1, label="marked threshold"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=9)
    return fig


def plot_fbeta_curves(
    curves: Mapping[str, pd.DataFrame],
    thresholds: Mapping[str, float],
    out: str | os.PathLike,
    *,
    beta: float | None = None,
    n_true: Mapping[str, int] | None = None,
) -> Path:
    """Write :func:`fbeta_figure` to ``out`` (PNG, atomically) and return ``out`` as a Path."""
    return _save(fbeta_figure(curves, thresholds, beta=beta, n_true=n_true), out)


def pr_points(curve: pd.DataFrame) -> pd.DataFrame:
    """The rows of one class's curve that are points of its precision-recall curve.

    Thresholds at which no true particle is found (TP = 0, so recall 0 and precision 0) are left out:
    they are not a point of the trade-off, and drawing them adds a false segment down to (0, 0). A class
    without true particles has no precision-recall curve at all (empty result).
    """
    if curve.empty:
        return curve
    return curve[curve["tp"] > 0] if "tp" in curve else curve[curve["recall"] > 0]


def pr_figure(curves: Mapping[str, pd.DataFrame]) -> Figure:
    """Precision against recall for every class on one axes (one point per distinct threshold with TP > 0).

    Classes with nothing to draw (no predictions, no true particles, or no prediction ever on a particle)
    are named in a note instead. Precision above 1 (one prediction covering two particles, which the
    challenge's many-to-one rule counts twice) is drawn as it is and explained in a note.
    """
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    left_out, top = [], 1.0
    for name, curve in curves.items():
        points = pr_points(curve)
        if points.empty:
            if curve.empty:
                why = "no predictions"
            elif "tp" in curve and int(curve["tp"].iloc[0] + curve["fn"].iloc[0]) == 0:
                why = "no true particles"
            else:
                why = "no particle found"
            left_out.append(f"{name} ({why})")
            continue
        ax.plot(points["recall"], points["precision"], marker=".", ms=3, lw=1.5, color=class_color(name), label=name)
        top = max(top, float(points["precision"].max()))
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, top * 1.02 + 0.01)
    notes = []
    if top > 1:
        notes.append("precision > 1: one prediction covers two particles (the metric's many-to-one rule)")
    if left_out:
        notes.append("not drawn: " + ", ".join(left_out))
    if notes:  # wrapped by hand to the axes' width: matplotlib's own wrapping ignores the legend beside it
        ax.set_title("\n".join(textwrap.fill(n, 64) for n in notes), fontsize=8, loc="left")
    if ax.lines:
        fig.legend(fontsize=8, loc="outside right upper")  # beside the axes: never over a curve
    return fig


def plot_pr_curves(curves: Mapping[str, pd.DataFrame], out: str | os.PathLike) -> Path:
    """Write :func:`pr_figure` to ``out`` (PNG, atomically) and return ``out`` as a Path."""
    return _save(pr_figure(curves), out)
