"""The evaluation report as Markdown: tables and a paragraph that reads the numbers, around the figures.

``make_report`` is what ``tools/report.py`` calls. It runs three separate steps: :func:`evaluate` (every
number, no drawing), :func:`write_report_figures` (the PNGs) and :func:`render_markdown` (the text). The
result reads like the evaluation section of a paper: overall weighted F-beta, a per-class table, an analysis
paragraph derived from the numbers, threshold curves, matched slices, a failure gallery and a confusion
figure; with several prediction sets it adds side-by-side tables.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from cryopoint.io.atomic import atomic_write_text
from cryopoint.particles import PARTICLES, total_weight
from cryopoint.tomogram import Tomogram
from cryopoint.viz.evaluation import ReportData, class_table, evaluate
from cryopoint.viz.report_figures import ReportFigures, write_report_figures

__all__ = ["class_table", "analysis_paragraph", "render_markdown", "make_report", "MIN_TREND_CLASSES"]

#: A rank correlation of recall with radius or frequency is reported only over at least this many scored
#: classes and :data:`MIN_TREND_PARTICLES` true particles; below that it says nothing a reader can use.
MIN_TREND_CLASSES = 4
MIN_TREND_PARTICLES = 20
#: A trend is named ("rises with") only when a correlation this strong arises by chance at most this often.
TREND_CHANCE = 0.1


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


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman ρ of ``x`` and ``y`` and the exact chance that a random order of ``y`` reaches ``|ρ|`` or more.

    Exact over every ordering (one value per class, so at most 6! = 720 orderings here); with so few points
    the usual t-approximation of the p-value is wrong.
    """
    rx, ry = rankdata(x), rankdata(y)

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        return float((a * b).sum() / norm) if norm > 0 else float("nan")

    r = rho(rx, ry)
    if not np.isfinite(r) or len(rx) > 8:
        return r, float("nan")
    orders = [rho(rx, np.asarray(o)) for o in itertools.permutations(ry)]
    return r, float(np.mean(np.abs(orders) >= abs(r) - 1e-12))


def _trend_sentences(scored: pd.DataFrame, bottom: list[str]) -> list[str]:
    """How recall tracks radius and frequency, claimed only where the counts can show it."""
    n_cls, n_true = len(scored), int(scored["n_true"].sum())
    if n_cls < MIN_TREND_CLASSES or n_true < MIN_TREND_PARTICLES:
        return [
            f"With {n_cls} scored classes and {n_true} true particles, no trend of recall with particle radius or "
            f"frequency can be told from chance (at least {MIN_TREND_CLASSES} classes and {MIN_TREND_PARTICLES} "
            "particles are needed to report one)."
        ]
    out = []
    rho_r, p_r = _rank_correlation(scored["radius"].to_numpy(float), scored["recall"].to_numpy(float))
    rho_n, p_n = _rank_correlation(scored["n_true"].to_numpy(float), scored["recall"].to_numpy(float))
    if np.isfinite(rho_r):
        clear = p_r <= TREND_CHANCE
        trend = ("rises with" if rho_r > 0 else "falls with") if clear else "does not clearly track"
        smallest = scored["radius"].idxmin()
        hard_small = clear and rho_r > 0 and smallest in bottom
        out.append(
            f"Recall {trend} particle radius (Spearman ρ = {rho_r:.2f} over {n_cls} scored classes; random "
            f"orders of {n_cls} classes reach |ρ| ≥ {abs(rho_r):.2f} {p_r:.0%} of the time)"
            + (f"; the smallest particle, {smallest}, is the hardest." if hard_small else ".")
        )
    if np.isfinite(rho_n):
        trend = ("more" if rho_n > 0 else "less") if p_n <= TREND_CHANCE else "neither clearly more nor less"
        out.append(
            f"Frequent classes are recalled {trend} reliably than rare ones (ρ = {rho_n:.2f}; random orders reach "
            f"|ρ| ≥ {abs(rho_n):.2f} {p_n:.0%} of the time)."
        )
    return out


def analysis_paragraph(table: pd.DataFrame, overall: float, *, beta: float = 4) -> str:
    """A paragraph that reads the per-class table: who is recalled well, how that tracks size and frequency.

    Every statement is computed from ``table`` (the per-class table of :func:`class_table`), nothing is canned
    beyond the sentence frames. A trend with radius or frequency is reported only over at least
    :data:`MIN_TREND_CLASSES` scored classes and :data:`MIN_TREND_PARTICLES` true particles, with the exact
    chance of a correlation that strong, and named only when that chance is at most :data:`TREND_CHANCE`.
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
    if recall.nunique() > 1:
        parts += _trend_sentences(scored, bottom)
    loss = ((1 - scored["fbeta"]) * scored["weight"] / total_weight()).sort_values(ascending=False)
    top = [f"{n} ({v:.3f})" for n, v in loss.items() if v > 0.005][:2]
    if top:
        parts.append(f"Most of the score lost to a perfect 1.0 comes from {' and '.join(top)}, weight included.")
    low_p = scored[(scored["precision"] < 0.5) & (scored["recall"] > 0.8)]
    if len(low_p):
        b2 = beta**2
        clean = (1 + b2) * low_p["recall"] / (b2 + low_p["recall"])  # F-beta at the same recall, no false positive
        costs = [
            f"{name} {cost:.2f} of its F{beta:g} (precision {p:.2f})"
            for name, cost, p in zip(low_p.index, clean - low_p["fbeta"], low_p["precision"])
        ]
        parts.append(
            f"With β = {beta:g} recall weighs {b2:g}x more than precision; false positives cost {'; '.join(costs)}."
        )
    unscored = table[(table["weight"] == 0) & (table["n_true"] > 0)].index.tolist()
    if unscored:
        parts.append(f"{', '.join(unscored)} carries weight 0: it is reported but does not change the score.")
    return " ".join(parts)


def _side_by_side(data: ReportData) -> list[str]:
    md = [
        "| method | weighted F-beta | " + " | ".join(p.name for p in PARTICLES) + " |",
        "|---|---|" + "---|" * len(PARTICLES),
    ]
    for method, res in data.methods.items():
        cells = " | ".join(_fmt(res.table.loc[p.name, "fbeta"]) for p in PARTICLES)
        md.append(f"| {method} | {res.score:.4f} | {cells} |")
    return md


def _miss_cause_lines(data: ReportData) -> list[str]:
    """The table of why the misses were missed (``cryopoint.viz.misses``), with what each cause means."""
    table = data.miss_causes
    cols = list(table.columns)
    lines = [
        "Why they were missed, judged against the picks before thresholds that score at least half their "
        "class's threshold (all the picks when none was applied): *below threshold* (a pick of the class within "
        "the match distance scored under the threshold), *off-centre* (the nearest pick of the class "
        "lies beyond the match distance but within twice it: seen, misplaced), *other class* (only another "
        "class's kept pick on it: confusion), *no peak* (nothing near):",
        "",
        "| class | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    lines += [f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |" for name, row in table.iterrows()]
    return lines


def _slices_caption(figures: ReportFigures) -> str:
    info = figures.slices
    view = info.view
    text = (
        f"Orthogonal slices of {view.run} (planes at z = {info.centre[0]}, y = {info.centre[1]}, "
        f"x = {info.centre[2]}, placed to cut the most misses): found particles solid, misses dotted, false "
        "positives dashed."
    )
    if info.misses == info.misses_cut == 1:
        text += " The planes cut the one missed particle of this run."
    elif info.misses:
        text += f" The planes cut {info.misses_cut} of the {info.misses} missed particles of this run."
    if view.below_threshold:
        text += (
            f" The picks were scored as given; the {view.below_threshold} false positives below their class's "
            "best threshold are not drawn."
        )
    if view.beyond_cap:
        text += f" Only the {view.max_fp} most confident false positives are drawn ({view.beyond_cap} more are not)."
    return text


def render_markdown(data: ReportData, figures: ReportFigures, *, title: str = "cryopoint evaluation") -> str:
    """The report's Markdown, from the evaluation and the figures written beside it (pure: writes nothing)."""
    main, files = data.main, figures.files
    n_runs = data.truth["experiment"].nunique()
    f = f"F{data.beta:g}"
    md = [
        f"# {title}",
        "",
        f"**Weighted {f} = {main.score:.4f}** on {n_runs} tomogram(s), {len(data.truth)} true particles, "
        f"{len(main.predictions)} predictions ({data.main_name}). Matches within 0.5 x particle radius, TP/FP/FN "
        f"summed over tomograms, weights sum to {total_weight():g}.",
    ]
    md += [""] + [f"> {n}" for n in data.notes] + ([""] if data.notes else [])
    md += ["## Per-class results", "", _markdown_table(main.table), "", "## Analysis", ""]
    md.append(analysis_paragraph(main.table, main.score, beta=data.beta))
    if len(data.methods) > 1:
        md += ["", "## Side by side", "", *_side_by_side(data)]
        if "compare" in files:
            md += ["", f"![F-beta against threshold, all methods]({files['compare']})"]
    if "fbeta" in files:
        marker = "the threshold applied" if data.markers_applied else f"the {f}-best threshold"
        md += [
            "",
            "## Thresholds",
            "",
            f"{f} against the score threshold per class (marker and panel title: {marker}), and "
            "precision-recall curves:",
            "",
            f"![F-beta curves]({files['fbeta']})",
            "",
            f"![Precision-recall curves]({files['pr']})",
        ]
    n_miss = int((~data.matched_truth["found"]).sum())
    n_fp = int((~data.matched_pred["hit"]).sum())
    md += ["", "## Failures", ""]
    md.append(f"{n_miss} true particles are missed and {n_fp} predictions hit no particle of their class.")
    if n_miss:
        md += ["", *_miss_cause_lines(data), ""]
    if "failures" in files:
        md += [
            "The gallery shows, per class, the clearest misses (no prediction nearby) and the most confident false "
            "positives, each as an xy crop above an xz crop:",
            "",
            f"![Failure gallery]({files['failures']})",
        ]
    if "slices" in files:
        md += ["", _slices_caption(figures), "", f"![Matched slices]({files['slices']})"]
    md += [
        "",
        "## Class confusion",
        "",
        "Predictions counted on the true particle whose match ball they fall in; the "
        "last row counts predictions on no particle at all:",
        "",
        f"![Class confusion]({files['confusion']})",
        "",
    ]
    return "\n".join(md)


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
    """Write ``out_dir/report.md`` and its figures: :func:`evaluate`, then the figures, then the Markdown.

    Args:
        predictions: One picks table, or ``{method name: picks table}`` to compare several. The first is the
            main one (detailed figures); the others get side-by-side tables and curves.
        truth: Ground-truth picks table (``experiment, particle_type, x, y, z`` Å).
        out_dir: Output folder (created).
        tomograms: Experiment → Tomogram, for slices and the failure gallery (omitted when None).
        thresholds: None evaluates the predictions as given; a mapping applies per-class thresholds;
            ``"tune"`` tunes them on these same predictions (optimistic; the report says so).
        beta: F-beta's β, for the scores, the tuning, the curves and their markers.
        title: Report title.

    Returns:
        Path of ``report.md``.
    """
    data = evaluate(predictions, truth, thresholds=thresholds, beta=beta)
    figures = write_report_figures(data, out_dir, tomograms=tomograms)
    return atomic_write_text(Path(out_dir) / "report.md", render_markdown(data, figures, title=title))
