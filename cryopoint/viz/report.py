"""The evaluation report: numbers, figures and a generated analysis, written as Markdown with PNGs.

``make_report`` is what ``tools/report.py`` calls. It reads like the evaluation section of a paper: overall
weighted F-beta, a per-class table, an analysis paragraph derived from the numbers, threshold curves, matched
slices, a failure gallery and a confusion figure; with several prediction sets it adds side-by-side tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy.stats import spearmanr

from cryopoint.io.atomic import atomic_write_text
from cryopoint.metric import match_points, score
from cryopoint.particles import PARTICLES, get_particle, total_weight
from cryopoint.post.thresholds import apply_thresholds, tune_thresholds
from cryopoint.tomogram import Tomogram
from cryopoint.viz.common import class_color, plt, save_png
from cryopoint.viz.confusion import confusion_matrix, plot_confusion
from cryopoint.viz.curves import plot_fbeta_curves, plot_pr_curves
from cryopoint.viz.gallery import plot_failure_gallery, select_failures

__all__ = ["class_table", "analysis_paragraph", "make_report"]


def class_table(truth: pd.DataFrame, predictions: pd.DataFrame, *, beta: float = 4) -> tuple[float, pd.DataFrame]:
    """Weighted F-beta and a per-class table with radius added, in catalogue order."""
    result = score(truth, predictions, beta=beta)
    table = result.table.copy()
    if "particle_type" in table.columns:
        table = table.set_index("particle_type")
    table.insert(0, "radius", [get_particle(n).radius for n in table.index])
    return float(result.score), table


def _fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.3f}"


def _markdown_table(table: pd.DataFrame) -> str:
    cols = ["radius", "weight", "n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "fbeta"]
    head = "| class | radius (Å) | weight | true | predicted | TP | FP | FN | precision | recall | F-beta |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, row in table[cols].iterrows():
        ints = [f"{int(row[c])}" for c in ("n_true", "n_pred", "tp", "fp", "fn")]
        lines.append(
            f"| {name} | {row['radius']:.0f} | {row['weight']:.0f} | "
            + " | ".join(ints)
            + f" | {_fmt(row['precision'])} | {_fmt(row['recall'])} | {_fmt(row['fbeta'])} |"
        )
    return "\n".join(lines)


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def analysis_paragraph(table: pd.DataFrame, overall: float, *, beta: float = 4) -> str:
    """A paragraph that reads the per-class table: who is recalled well, how that tracks size and frequency.

    Every statement is computed from ``table`` (the per-class table of :func:`class_table`), nothing is canned
    beyond the sentence frames.
    """
    scored = table[(table["weight"] > 0) & (table["n_true"] > 0)]
    if scored.empty:
        return "No scored particle type has ground truth in this set, so there is nothing to analyse."
    recall = scored["recall"]
    top = recall.index[recall == recall.max()].tolist()
    bottom = recall.index[recall == recall.min()].tolist()
    parts = [f"The weighted F{beta:g} score is {overall:.3f}."]
    if len(top) == len(scored):
        parts.append(f"Every scored class is recalled equally ({recall.max():.2f}).")
    else:
        parts.append(
            f"Recall is highest for {_names(top)} ({recall.max():.2f}) and lowest for {_names(bottom)} "
            f"({recall.min():.2f})."
        )
    if len(scored) >= 3 and recall.nunique() > 1:
        rho_r = spearmanr(scored["radius"], recall).statistic
        rho_n = spearmanr(scored["n_true"], recall).statistic
        if np.isfinite(rho_r):
            trend = "rises with" if rho_r >= 0.5 else "falls with" if rho_r <= -0.5 else "does not clearly track"
            smallest = scored["radius"].idxmin()
            hard_small = rho_r >= 0.5 and smallest in bottom
            parts.append(
                f"Recall {trend} particle radius (Spearman ρ = {rho_r:.2f} over {len(scored)} scored classes)"
                + (f"; the smallest particle, {smallest}, is the hardest." if hard_small else ".")
            )
        if np.isfinite(rho_n):
            trend = "more" if rho_n >= 0.5 else "less" if rho_n <= -0.5 else "neither more nor less"
            parts.append(f"Frequent classes are recalled {trend} reliably than rare ones (ρ = {rho_n:.2f}).")
    loss = ((1 - scored["fbeta"]) * scored["weight"] / total_weight()).sort_values(ascending=False)
    top = [f"{n} ({v:.3f})" for n, v in loss.items() if v > 0.005][:2]
    if top:
        parts.append(f"Most of the score lost to a perfect 1.0 comes from {' and '.join(top)}, weight included.")
    low_p = scored[(scored["precision"] < 0.5) & (scored["recall"] > 0.8)].index.tolist()
    if low_p:
        parts.append(
            f"With β = {beta:g} recall weighs {beta**2:g}x more than precision, so the many false positives of "
            f"{', '.join(low_p)} cost little; missed particles are what matters."
        )
    unscored = table[(table["weight"] == 0) & (table["n_true"] > 0)].index.tolist()
    if unscored:
        parts.append(f"{', '.join(unscored)} carries weight 0: it is reported but does not change the score.")
    return " ".join(parts)


def _compare_curves(curves: Mapping[str, Mapping[str, pd.DataFrame]], out: Path) -> None:
    """F-beta against threshold, one panel per class, one colour per method in every panel (one legend)."""
    names = [p.name for p in PARTICLES]
    colors = {method: f"C{i % 10}" for i, method in enumerate(curves)}
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
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
        ax.set_title(name, color=class_color(name))
        ax.set_xlabel("score threshold (keep >=)")
        ax.set_ylabel("F-beta")
        ax.set_ylim(0, 1.02)
    handles = [Line2D([], [], color=c, label=m) for m, c in colors.items()]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=9)
    save_png(fig, out)


def make_report(
    predictions: pd.DataFrame | Mapping[str, pd.DataFrame],
    truth: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    tomograms: Mapping[str, Tomogram] | None = None,
    thresholds: Mapping[str, float] | str | None = None,
    beta: float = 4,
    title: str = "cryopoint evaluation",
) -> Path:
    """Write ``out_dir/report.md`` and its figures.

    Args:
        predictions: One picks table, or ``{method name: picks table}`` to compare several. The first is the
            main one (detailed figures); the others get side-by-side tables and curves.
        truth: Ground-truth picks table (``experiment, particle_type, x, y, z`` Å).
        out_dir: Output folder (created).
        tomograms: Experiment → Tomogram, for slices and the failure gallery (omitted when None).
        thresholds: None evaluates the predictions as given; a mapping applies per-class thresholds;
            ``"tune"`` tunes them on these same predictions (optimistic; the report says so).
        beta: F-beta's β.
        title: Report title.

    Returns:
        Path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = dict(predictions) if isinstance(predictions, Mapping) else {"predictions": predictions}
    evaluated, tuned, notes = {}, {}, []
    for method, preds in methods.items():
        if "score" in preds and len(preds):
            tuned[method] = tune_thresholds(truth, preds, beta=beta)
        if thresholds == "tune":
            if method not in tuned:
                raise ValueError(f"{method}: thresholds='tune' needs a 'score' column in the predictions.")
            preds = apply_thresholds(preds, tuned[method].thresholds)
            notes.append(f"{method}: thresholds tuned on this same set (optimistic).")
        elif isinstance(thresholds, Mapping):
            preds = apply_thresholds(preds, thresholds)
        evaluated[method] = preds
    curves = {m: t.curves for m, t in tuned.items()}
    main_name, main = next(iter(evaluated.items()))
    overall, table = class_table(truth, main, beta=beta)
    n_runs = truth["experiment"].nunique()
    md = [f"# {title}", ""]
    md.append(
        f"**Weighted F{beta:g} = {overall:.4f}** on {n_runs} tomogram(s), {len(truth)} true particles, "
        f"{len(main)} predictions ({main_name}). Matches within 0.5 x particle radius, TP/FP/FN summed over "
        f"tomograms, weights sum to {total_weight():g}."
    )
    md += [""] + [f"> {n}" for n in notes] + ([""] if notes else [])
    md += [
        "## Per-class results",
        "",
        _markdown_table(table),
        "",
        "## Analysis",
        "",
        analysis_paragraph(table, overall, beta=beta),
    ]
    if len(evaluated) > 1:
        md += [
            "",
            "## Side by side",
            "",
            "| method | weighted F-beta | " + " | ".join(p.name for p in PARTICLES) + " |",
            "|---|---|" + "---|" * len(PARTICLES),
        ]
        for method, preds in evaluated.items():
            s, t = class_table(truth, preds, beta=beta)
            md.append(f"| {method} | {s:.4f} | " + " | ".join(_fmt(t.loc[p.name, "fbeta"]) for p in PARTICLES) + " |")
        if len(curves) > 1:
            _compare_curves(curves, out / "compare_fbeta.png")
            md += ["", "![F-beta against threshold, all methods](compare_fbeta.png)"]
    if main_name in curves:
        marked = (
            thresholds if isinstance(thresholds, Mapping) else tune_thresholds(truth, methods[main_name]).thresholds
        )
        plot_fbeta_curves(curves[main_name], marked, out / "fbeta_curves.png")
        plot_pr_curves(curves[main_name], out / "pr_curves.png")
        md += [
            "",
            "## Thresholds",
            "",
            "F-beta against the score threshold per class (marker: the threshold used or "
            "the best one), and precision-recall curves:",
            "",
            "![F-beta curves](fbeta_curves.png)",
            "",
            "![Precision-recall curves](pr_curves.png)",
        ]
    matched_pred, matched_truth = match_points(truth, main)
    md += ["", "## Failures"]
    n_miss = int((~matched_truth["found"]).sum())
    n_fp = int((~matched_pred["hit"]).sum())
    md.append(f"\n{n_miss} true particles are missed and {n_fp} predictions hit no particle of their class.")
    if tomograms:
        misses, fps = select_failures(matched_truth, matched_pred)
        plot_failure_gallery(tomograms, misses, fps, out / "failures.png")
        md += [
            "The gallery shows, per class, the clearest misses (no prediction nearby) and the most confident false "
            "positives, each as an xy crop above an xz crop:",
            "",
            "![Failure gallery](failures.png)",
        ]
        from cryopoint.viz.slices import plot_orthoslices

        run = matched_truth["experiment"].value_counts().index[0]
        if run in tomograms:
            status = pd.concat(
                [
                    matched_truth[matched_truth["experiment"] == run].assign(
                        status=lambda d: np.where(d["found"], "tp", "fn")
                    ),
                    matched_pred[(matched_pred["experiment"] == run) & ~matched_pred["hit"]].assign(status="fp"),
                ],
                ignore_index=True,
            )
            plot_orthoslices(tomograms[run].data, tomograms[run].voxel_size, status, title=run, out=out / "slices.png")
            md += [
                "",
                f"Orthogonal slices of {run}: found particles solid, misses dotted, false positives dashed:",
                "",
                "![Matched slices](slices.png)",
            ]
    plot_confusion(confusion_matrix(truth, main), out / "confusion.png")
    md += [
        "",
        "## Class confusion",
        "",
        "Predictions counted on the true particle whose match ball they fall in; the "
        "last row counts predictions on no particle at all:",
        "",
        "![Class confusion](confusion.png)",
        "",
    ]
    return atomic_write_text(out / "report.md", "\n".join(md))
