"""Why per-tomogram thresholds stop short of tuned ones: what the model's high-scoring background peaks are.

The noise-tail rule (:mod:`cryopoint.post.noise_tail`) models a tomogram's background peaks as an exponential
tail of scores and counts what stands above it as particles. This benchmark looks at the peaks themselves, on
data where the answer is known: the ``default_model --test-runs`` sets (fresh runs of sources A, B, C, which
the model never saw). Every peak of the model (thresholds 0) is labelled

* **particle**: within the match distance of a true point of its own class;
* **other class**: not that, but within half the larger radius of a true point of another class (a confusion);
* **unlabelled**: neither (clutter, membranes, gold, vesicles, noise: structure that is not a scored particle).

Per source and class it reports the true count against the particles the rule estimates (per tomogram, summed,
as ``detect`` runs it; and fitted once on the peaks of all runs pooled), the background peaks above the oracle
threshold and their make-up, and the weighted F-beta of four threshold settings: the model's thresholds, the
per-tomogram rule (the shipped behaviour), the rule fitted once per batch on the pooled peaks (one dataset's
tomograms together: more particles of the rare classes per fit), and thresholds tuned on the test runs (oracle).
The figure plots, per class, the density of peaks above each score for particles and for background beside the
exponential tail the rule fits on the pooled peaks.

::

    python -m benchmarks.score_tails                   # the shipped model, ~3 min on 2 cores
    python -m benchmarks.score_tails --model runs/x/best.pt

Writes ``benchmarks/results/score_tails.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from scipy.spatial import cKDTree

from benchmarks.bench_common import machine, score_cells
from benchmarks.generalization import BUDGETS, SOURCES
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
LABELS = ("particle", "other class", "unlabelled")
XYZ = ["x", "y", "z"]
console = Console()


def label_peaks(peaks: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Each peak's label (:data:`LABELS`, module docstring), aligned with ``peaks``' index.

    ``peaks`` and ``truth`` hold ``experiment``, ``particle_type`` and ``x``, ``y``, ``z`` in Å.
    """
    out = pd.Series("unlabelled", index=peaks.index, dtype=object)
    for (run, cls), group in peaks.groupby(["experiment", "particle_type"], sort=False):
        pts = group[XYZ].to_numpy(float)
        in_run = truth[truth.experiment == run]
        own = in_run[in_run.particle_type == cls]
        others = in_run[in_run.particle_type != cls]
        is_own = np.zeros(len(pts), bool)
        if len(own):
            is_own = cKDTree(own[XYZ].to_numpy(float)).query(pts)[0] <= get_particle(cls).match_distance
        is_other = np.zeros(len(pts), bool)
        if len(others):
            dist, idx = cKDTree(others[XYZ].to_numpy(float)).query(pts)
            radius = np.array([get_particle(n).radius for n in others.particle_type.to_numpy()[idx]])
            is_other = dist <= 0.5 * np.maximum(radius, get_particle(cls).radius)
        labels = np.where(is_own, "particle", np.where(is_other, "other class", "unlabelled"))
        out.loc[group.index] = labels
    return out


def batch_tail_thresholds(peaks: pd.DataFrame, floor: dict, volumes: dict[str, float]) -> dict[str, float]:
    """The noise-tail rule fitted once on the peaks of every run of ``peaks`` pooled (their volumes summed)."""
    from cryopoint.post.noise_tail import noise_tail_thresholds

    total = float(sum(volumes[r] for r in peaks.experiment.unique()))
    return noise_tail_thresholds(peaks, floor, total)


def tail_counts(peaks: pd.DataFrame, truth: pd.DataFrame, volumes: dict[str, float]) -> dict:
    """Per class: true count, the rule's estimate per tomogram (summed) and pooled, and its pooled fit."""
    from cryopoint.post.noise_tail import fit_noise_tail

    total = float(sum(volumes.values()))
    out = {}
    for cls in SCORED:
        scores = peaks.loc[peaks.particle_type == cls]
        per_run = [fit_noise_tail(g.score.to_numpy(), volumes[r]) for r, g in scores.groupby("experiment")]
        pooled = fit_noise_tail(scores.score.to_numpy(), total)
        out[cls] = {
            "true": int((truth.particle_type == cls).sum()),
            "per_tomogram": float(sum(f.particles for f in per_run if f is not None)),
            "undecided_runs": int(sum(f is None for f in per_run)),
            "pooled": None if pooled is None else pooled.particles,
            "pooled_fit": None if pooled is None else {"slope": pooled.slope, "intercept": pooled.intercept},
        }
    return out


def background_above(labels: pd.Series, peaks: pd.DataFrame, thresholds: dict[str, float]) -> dict:
    """Per class: background peaks (not ``particle``) at or above ``thresholds`` and the share of each label."""
    out = {}
    for cls in SCORED:
        sel = (peaks.particle_type == cls) & (peaks.score >= thresholds[cls]) & (labels != "particle")
        n = int(sel.sum())
        out[cls] = {"n": n, **{lab: int((labels[sel] == lab).sum()) for lab in LABELS[1:]}}
    return out


#: Points per curve of :func:`tail_curves` (log-spaced in rank; the curves are plotted on a log axis).
CURVE_POINTS = 300


def tail_curves(peaks: pd.DataFrame, labels: pd.Series, total_um3: float) -> dict:
    """Per class and label group: scores (falling) and the density of peaks at or above each (per µm³), at up to
    :data:`CURVE_POINTS` ranks spaced evenly in log rank (the first and last rank always among them)."""
    out = {}
    for cls in SCORED:
        in_cls = peaks.particle_type == cls
        out[cls] = {}
        for group, sel in (("particle", labels == "particle"), ("background", labels != "particle")):
            s = np.sort(peaks.loc[in_cls & sel, "score"].to_numpy())[::-1]
            ranks = np.unique(np.rint(np.geomspace(1, max(len(s), 1), CURVE_POINTS)).astype(int))[: len(s)]
            out[cls][group] = {"score": s[ranks - 1].tolist(), "density": (ranks / total_um3).tolist()}
    return out


def measure_source(det, names, peaks, truth, volumes) -> dict:
    from benchmarks.noise_tail import tail_picks
    from cryopoint.post.noise_tail import FIT_DENSITY
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    truth = truth[truth.experiment.isin(names)]
    floor = dict(det.thresholds)
    per_tomo = tail_picks(peaks, floor, volumes, FIT_DENSITY)  # as detect keeps them with the rule on
    batch = batch_tail_thresholds(peaks, floor, volumes)
    oracle = tune_thresholds(truth, peaks).thresholds
    labels = label_peaks(peaks, truth)
    total = float(sum(volumes.values()))
    return {
        "runs": len(names),
        "particles": int(truth.particle_type.isin(SCORED).sum()),
        "um3": total,
        "scores": {
            "own": score_cells(apply_thresholds(peaks, floor), truth),
            "tail": score_cells(per_tomo, truth),
            "batch": score_cells(apply_thresholds(peaks, batch), truth),
            "oracle": score_cells(apply_thresholds(peaks, oracle), truth),
        },
        "thresholds": {"floor": floor, "batch": batch, "oracle": oracle},
        "counts": tail_counts(peaks, truth, volumes),
        "background_above_oracle": background_above(labels, peaks, oracle),
        "curves": tail_curves(peaks, labels, total),
    }


SETTINGS = {
    "own": "model's thresholds",
    "tail": "noise tail per tomogram (shipped)",
    "batch": "noise tail per batch (pooled runs)",
    "oracle": "oracle (tuned on the test runs)",
}


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryopoint.post.noise_tail import FIT_DENSITY

    sources = list(result["sources"])
    fig, axes = plt.subplots(len(sources), len(SCORED), figsize=(3.4 * len(SCORED), 2.9 * len(sources)), squeeze=False)
    for i, src in enumerate(sources):
        res = result["sources"][src]
        for j, cls in enumerate(SCORED):
            ax = axes[i, j]
            curves = res["curves"][cls]
            for group, color in (("background", "tab:blue"), ("particle", "tab:red")):
                ax.semilogy(curves[group]["score"], curves[group]["density"], color=color, label=group)
            fit = res["counts"][cls]["pooled_fit"]
            if fit is not None:
                s = np.linspace(0, 1, 101)
                ax.semilogy(s, np.exp(fit["intercept"] + fit["slope"] * s) / res["um3"], "k--", lw=0.8,
                            label="rule's tail, fitted on the pooled peaks")  # fmt: skip
            ax.axhspan(*FIT_DENSITY, color="0.9", zorder=0)
            ax.axvline(res["thresholds"]["oracle"][cls], color="tab:red", lw=0.6, ls=":")
            ax.set(xlim=(0, 1), ylim=(5, 1e6), title=f"{src}: {cls} ({res['counts'][cls]['true']})")
            ax.title.set_fontsize(9)
            if j == 0:
                ax.set_ylabel("peaks per µm³ at or above")
            if i == len(sources) - 1:
                ax.set_xlabel("score")
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper right")
    title = "Peak density above each score: true particles, background, and the exponential tail the noise-tail rule"
    fig.suptitle(f"{title} extrapolates from its fit region (grey band); dotted: the oracle threshold", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _class_section(title: str, text: str, rows: dict[str, list[str]]) -> list[str]:
    """A report section: heading, text and a table with one row per source and one column per scored class."""
    lines = ["", f"## {title}", "", text, "", "| source | " + " | ".join(SCORED) + " |", "|---|" + "---|" * len(SCORED)]
    return lines + [f"| {src} | " + " | ".join(cells) + " |" for src, cells in rows.items()]


def write_report(result: dict, out: Path) -> Path:
    from cryopoint.io.atomic import atomic_write_text

    meta = result["meta"]
    lines = [
        "# Why per-tomogram thresholds stop short of tuned ones: the model's high-scoring background",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}` "
        f"(sha256 `{meta['sha256'][:12]}…`). Data: {meta['test_runs']} fresh runs of {tuple(meta['shape'])} voxels "
        "per source (the `default_model --test-runs` sets; the model saw none of these sources).",
        "",
        "## Scores",
        "",
        "Weighted F-beta; per class F-beta with recall in brackets. *Per batch*: the noise-tail rule fitted once on "
        "the peaks of all the source's test runs pooled (volumes summed), one threshold per class for the batch.",
        "",
        "| source | particles | setting | weighted | " + " | ".join(SCORED) + " |",
        "|---|---|---|---|" + "---|" * len(SCORED),
    ]
    for src, res in result["sources"].items():
        for key, label in SETTINGS.items():
            c = res["scores"][key]
            cells = " | ".join(f"{c[n]:.2f} ({c[n + ' recall']:.2f})" for n in SCORED)
            lines.append(f"| {src} | {res['particles']} | {label} | **{c['score']:.3f}** | {cells} |")
    means = {k: np.mean([r["scores"][k]["score"] for r in result["sources"].values()]) for k in SETTINGS}
    lines += ["", "Mean over sources: " + ", ".join(f"{SETTINGS[k]} **{v:.3f}**" for k, v in means.items()) + "."]
    counts = {}
    for src, res in result["sources"].items():
        counts[src] = []
        for n in SCORED:
            c = res["counts"][n]
            pooled = "-" if c["pooled"] is None else f"{c['pooled']:.0f}"
            counts[src].append(f"{c['true']} true: {c['per_tomogram']:.0f} / {pooled}")
    lines += _class_section(
        "The rule's particle counts",
        "True particles of each class against the rule's estimate (peaks standing above the extrapolated "
        "exponential tail): summed over the per-tomogram fits, and from one fit on the pooled peaks.",
        counts,
    )
    lines += _class_section(
        "What the background above the oracle threshold is",
        "Background peaks (not within the match distance of a particle of their class) at or above the oracle "
        "threshold, pooled over the runs: how many, and how many of them are another class's particle (a "
        "confusion) rather than unlabelled structure.",
        {
            src: [f"{b['n']} ({b['other class']} other class)" for b in res["background_above_oracle"].values()]
            for src, res in result["sources"].items()
        },
    )
    lines += ["", f"![tails]({meta['figure']})", ""]
    path = out.with_suffix(".md")
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which source datasets")
    parser.add_argument("--test-runs", type=int, default=16, help="fresh test runs per source")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "score_tails")
    args = parser.parse_args(argv)

    import cryopoint
    from benchmarks.adaptive_thresholds import fresh_test_set
    from cryopoint.checkpoint import sha256
    from cryopoint.io.atomic import atomic_write_text
    from cryopoint.weights import resolve_checkpoint

    begin = time.perf_counter()
    b = BUDGETS[args.budget]
    ckpt = resolve_checkpoint(args.model)
    det = cryopoint.load(ckpt)
    sources = {}
    for src in args.sources:
        console.rule(f"source {src}")
        names, peaks, truth, volumes = fresh_test_set(ckpt, b, src, args.test_runs, args.cache_dir)
        sources[src] = measure_source(det, names, peaks.reset_index(drop=True), truth, volumes)
        s = sources[src]["scores"]
        console.print(f"{src}: " + ", ".join(f"{k} {v['score']:.3f}" for k, v in s.items()))
    figure = args.out.with_suffix(".png")
    result = {
        "meta": {
            "command": "python -m benchmarks.score_tails " + " ".join(sys.argv[1:] if argv is None else argv),
            "model": str(args.model),
            "sha256": sha256(ckpt),
            "shape": list(b.shape),
            "test_runs": args.test_runs,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine("cpu"),
            "minutes": (time.perf_counter() - begin) / 60,
            "figure": figure.name,
        },
        "sources": sources,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result))
    write_figure(result, figure)
    path = write_report(result, args.out)
    console.print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
