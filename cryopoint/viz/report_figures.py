"""The report's figures, drawn from :class:`cryopoint.viz.evaluation.ReportData` (PNG files, atomic)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cryopoint.coords import angstrom_to_voxel
from cryopoint.particles import PARTICLES, get_particle
from cryopoint.tomogram import Tomogram
from cryopoint.viz.common import save_png
from cryopoint.viz.confusion import plot_confusion
from cryopoint.viz.curves import plot_fbeta_curves, plot_pr_curves
from cryopoint.viz.evaluation import ReportData, SlicePicks, slice_picks
from cryopoint.viz.gallery import plot_failure_gallery
from cryopoint.viz.slices import plot_orthoslices, slice_centre

__all__ = ["ReportFigures", "SliceInfo", "write_report_figures"]


@dataclass(frozen=True)
class SliceInfo:
    """What the orthoslice figure shows, for its caption.

    Attributes:
        view: The run and the picks drawn (:func:`cryopoint.viz.evaluation.slice_picks`).
        centre: (z, y, x) slice indices.
        misses: Missed particles in that run.
        misses_cut: How many of them the three planes cut (and so draw).
    """

    view: SlicePicks
    centre: tuple[int, int, int]
    misses: int
    misses_cut: int


@dataclass(frozen=True)
class ReportFigures:
    """The figure files written (``{key: file name}``, keys as in :func:`write_report_figures`) and the slice facts."""

    files: dict[str, str] = field(default_factory=dict)
    slices: SliceInfo | None = None


def compare_curves(curves: Mapping[str, Mapping[str, pd.DataFrame]], *, beta: float | None = None) -> Figure:
    """F-beta against threshold, one panel per class, one colour per method in every panel (one legend)."""
    names = [p.name for p in PARTICLES]
    colors = {method: f"C{i % 10}" for i, method in enumerate(curves)}
    f = "F-beta" if beta is None else f"F{beta:g}"
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 3)
    for ax, name in zip(axes.ravel(), names):
        missing = []
        for method, per_class in curves.items():
            c = per_class.get(name)
            if c is not None and len(c):
                ax.plot(c["threshold"], c["fbeta"], drawstyle="steps-pre", color=colors[method])
            else:
                missing.append(method)
        if missing:
            ax.text(
                0.98,
                0.95,
                "no predictions: " + ", ".join(missing),
                ha="right",
                va="top",
                fontsize=7,
                transform=ax.transAxes,
            )
        ax.set_title(name)
        ax.set_xlabel("score threshold (keep >=)")
        ax.set_ylabel(f)
        ax.set_ylim(0, 1.02)
    handles = [Line2D([], [], color=c, label=m) for m, c in colors.items()]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=9)
    return fig


def _cuts(picks: pd.DataFrame, centre: tuple[int, int, int], voxel_size: tuple[float, float, float]) -> pd.Series:
    """Whether any of the three planes through ``centre`` cuts each pick (within its catalogue radius)."""
    pos = angstrom_to_voxel(picks[["x", "y", "z"]].to_numpy(float), voxel_size)
    radius = picks["particle_type"].map(lambda n: get_particle(n).radius).to_numpy(float)
    depth = np.abs(pos - np.asarray(centre)) * np.asarray(voxel_size)  # (N, 3) Å from each plane
    return pd.Series((depth < radius[:, None]).any(axis=1), index=picks.index)


def write_report_figures(
    data: ReportData, out_dir: str | os.PathLike, *, tomograms: Mapping[str, Tomogram] | None = None
) -> ReportFigures:
    """Draw every figure the report has data for into ``out_dir``.

    Keys and files: ``compare`` (``compare_fbeta.png``, several scored prediction sets), ``fbeta`` and ``pr``
    (``fbeta_curves.png``, ``pr_curves.png``, main set with scores), ``failures`` (``failures.png``) and
    ``slices`` (``slices.png``) when tomograms are given, ``confusion`` (``confusion.png``) always.

    Returns:
        :class:`ReportFigures`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    scored = {m: r.tuning.curves for m, r in data.methods.items() if r.tuning is not None}
    if len(data.methods) > 1 and len(scored) > 1:
        save_png(compare_curves(scored, beta=data.beta), out / "compare_fbeta.png")
        files["compare"] = "compare_fbeta.png"
    if data.curves is not None:
        n_true = data.main.table["n_true"].to_dict()
        plot_fbeta_curves(data.curves, data.markers or {}, out / "fbeta_curves.png", beta=data.beta, n_true=n_true)
        plot_pr_curves(data.curves, out / "pr_curves.png")
        files["fbeta"], files["pr"] = "fbeta_curves.png", "pr_curves.png"
    info = None
    if tomograms:
        plot_failure_gallery(tomograms, data.misses, data.false_positives, out / "failures.png")
        files["failures"] = "failures.png"
        view = slice_picks(data, runs=list(tomograms))
        if view is not None:
            tomo = tomograms[view.run]
            centre = slice_centre(view.picks, tomo.shape, tomo.voxel_size)
            out_png = out / "slices.png"
            plot_orthoslices(tomo.data, tomo.voxel_size, view.picks, center=centre, title=view.run, out=out_png)
            missed = view.picks[view.picks["status"] == "fn"]
            cut = _cuts(missed, centre, tomo.voxel_size) if len(missed) else pd.Series(dtype=bool)
            info = SliceInfo(view, centre, len(missed), int(cut.sum()))
            files["slices"] = "slices.png"
    plot_confusion(data.confusion, out / "confusion.png")
    files["confusion"] = "confusion.png"
    return ReportFigures(files, info)
