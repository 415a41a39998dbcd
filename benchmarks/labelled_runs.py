"""A few labelled tomograms of new data: do thresholds tuned on them beat the model's own?

A user with k labelled tomograms of their own data can recalibrate the shipped model's thresholds
(``tools/tune_thresholds.py --checkpoint default --save-as mine.pt``). Tuned on few tomograms, a class's
best threshold follows their noise; the model's own thresholds were tuned on many runs of other data. This
benchmark measures both, and the shrinkage between them, on the generalisation benchmark's held-out sources
(none seen in training): per source, ``--draws`` random draws of k labelled runs out of ``--test-runs`` fresh
runs, thresholds chosen on the k runs, every pick of the other runs scored pooled; the mean over draws.

Rules, each as a recalibrated copy applies them (the model's per-tomogram rule, e.g. the noise tail, on top):

* ``shipped``: the model's own thresholds (no labels used);
* ``argmax``: the best pooled F-beta on the k runs;
* ``lean``: the lowest threshold within ``LEAN_TOLERANCE`` of it (the previously documented recipe);
* ``prior``: argmax shrunk toward the model's thresholds by the labelled particles behind it
  (:func:`cryopoint.post.thresholds.shrink_to_prior`, ``--prior-strength``), what ``tune_thresholds.py`` does
  with ``--checkpoint``.

Beside them, per source: leave-one-tomogram-out with all other runs labelled (each run picked at thresholds
tuned on the rest, all runs scored pooled) and the oracle (argmax on all runs, scored on the same runs). The
distance between the two is what tuning on the answers adds even with every other run labelled. With two or
more seed offsets, also across offsets: each rule's thresholds tuned on all runs of a source at one offset, scored
on that source's runs at another (the oracle beside them, tuned on those runs): a user with as many labelled
tomograms of the same kind as the test set holds::

    python -m benchmarks.labelled_runs --seed-offsets 5000 13000
    python -m benchmarks.labelled_runs --predictions 5000=DIR ...   # peaks from default_model --save-predictions

Writes ``benchmarks/results/labelled_runs.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from benchmarks.bench_common import machine, own_picks
from cryopoint.post.thresholds import DEFAULT_PRIOR_STRENGTH

REPO = Path(__file__).resolve().parents[1]
console = Console()

#: The documented recipe before the prior: ``--tolerance 0.05``.
LEAN_TOLERANCE = 0.05
RULES = ("shipped", "argmax", "lean", "prior")
#: Labelled runs per draw by default.
KS = (1, 2, 4, 8, 12)


def draw_splits(runs: list[str], k: int, draws: int, rng: np.random.Generator) -> list[tuple[list[str], list[str]]]:
    """``draws`` random ``(labelled, held_out)`` splits of ``runs`` with ``k`` labelled runs each."""
    if not 0 < k < len(runs):
        raise ValueError(f"k must leave at least one run out of {len(runs)}; got {k}.")
    out = []
    for _ in range(draws):
        chosen = set(rng.choice(len(runs), k, replace=False).tolist())
        out.append(([r for i, r in enumerate(runs) if i in chosen], [r for i, r in enumerate(runs) if i not in chosen]))
    return out


def rule_thresholds(truth, preds, prior: dict, strength: float) -> dict[str, dict[str, float]]:
    """``{rule: thresholds}`` of the labelled rules, chosen on ``truth`` / ``preds`` (the labelled runs)."""
    from cryopoint.post.thresholds import shrink_to_prior, tune_thresholds

    argmax = tune_thresholds(truth, preds)
    lean = tune_thresholds(truth, preds, tolerance=LEAN_TOLERANCE)
    counts = truth["particle_type"].value_counts().to_dict()
    shrunk = shrink_to_prior(argmax.thresholds, prior, counts, strength)
    return {"argmax": argmax.thresholds, "lean": lean.thresholds, "prior": shrunk}


def picks_at(detector, thresholds: dict | None, peaks, geometry: dict):
    """What a copy of ``detector`` with ``thresholds`` (``None``: its own) keeps of ``peaks``, per tomogram."""
    det = detector if thresholds is None else dataclasses.replace(detector, thresholds=dict(thresholds))
    return own_picks(det, peaks, geometry)


def source_curve(detector, truth, peaks, runs: list[str], geometry: dict, ks, draws: int, seed: int, strength: float):
    """Mean held-out score per rule and k (``{rule: {k: mean}}``) and the per-draw scores (rows)."""
    from cryopoint.metric import score

    prior = detector.default_thresholds
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        for draw, (labelled, held) in enumerate(draw_splits(runs, k, draws, rng)):
            t_l, p_l = truth[truth.experiment.isin(labelled)], peaks[peaks.experiment.isin(labelled)]
            t_h, p_h = truth[truth.experiment.isin(held)], peaks[peaks.experiment.isin(held)]
            chosen = {"shipped": None, **rule_thresholds(t_l, p_l, prior, strength)}
            for rule, thr in chosen.items():
                rows.append(
                    {
                        "k": k,
                        "draw": draw,
                        "rule": rule,
                        "score": score(t_h, picks_at(detector, thr, p_h, geometry)).score,
                    }
                )
    frame = pd.DataFrame(rows)
    means = frame.groupby(["rule", "k"])["score"].mean()
    return {r: {int(k): float(means[(r, k)]) for k in ks} for r in RULES}, rows


def leave_one_out(detector, truth, peaks, runs: list[str], geometry: dict, strength: float) -> dict[str, float]:
    """Every run picked at thresholds tuned on all the others (per rule), all runs scored pooled; the shipped
    picks and the oracle (argmax on all runs, no per-tomogram rule) on the same runs."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import tune_thresholds

    prior = detector.default_thresholds
    kept = {r: [] for r in RULES}
    for run in runs:
        others = [r for r in runs if r != run]
        chosen = {
            "shipped": None,
            **rule_thresholds(
                truth[truth.experiment.isin(others)], peaks[peaks.experiment.isin(others)], prior, strength
            ),
        }
        held = peaks[peaks.experiment == run]
        for rule, thr in chosen.items():
            kept[rule].append(picks_at(detector, thr, held, geometry))
    truth = truth[truth.experiment.isin(runs)]
    out = {rule: float(score(truth, pd.concat(frames, ignore_index=True)).score) for rule, frames in kept.items()}
    out["oracle"] = float(tune_thresholds(truth, peaks[peaks.experiment.isin(runs)]).score_after)
    return out


def cross_offset(detector, labelled: tuple, test: tuple, strength: float) -> dict[str, float]:
    """Each rule's thresholds tuned on every run of ``labelled``, ``test``'s runs picked at them and scored
    pooled, beside the shipped picks and ``test``'s oracle (argmax on its own runs, no per-tomogram rule).
    ``labelled`` and ``test``: ``(truth, peaks, geometry)`` of two disjoint sets of runs of one source."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import tune_thresholds

    t_l, p_l, _ = labelled
    t_t, p_t, g_t = test
    if set(t_l.experiment) & set(t_t.experiment):
        raise ValueError("cross_offset needs disjoint runs: the labelled and test sets share a run.")
    chosen = {"shipped": None, **rule_thresholds(t_l, p_l, detector.default_thresholds, strength)}
    out = {rule: float(score(t_t, picks_at(detector, thr, p_t, g_t)).score) for rule, thr in chosen.items()}
    out["oracle"] = float(tune_thresholds(t_t, p_t).score_after)
    return out


def plot(results: dict, ks, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted({s for per_off in results.values() for s in per_off})
    fig, axes = plt.subplots(1, len(sources), figsize=(4.2 * len(sources), 3.6), sharey=True, squeeze=False)
    styles = {
        "shipped": ("k", "--"),
        "argmax": ("tab:red", "-"),
        "lean": ("tab:orange", "-"),
        "prior": ("tab:blue", "-"),
    }
    for ax, source in zip(axes[0], sources):
        for offset, per_source in results.items():
            if source not in per_source:
                continue
            row = per_source[source]
            for rule in RULES:
                colour, line = styles[rule]
                ys = [row["curve"][rule][k] for k in ks]
                label = rule if offset == next(iter(results)) else None
                ax.plot(ks, ys, color=colour, ls=line, marker="o", ms=3, alpha=0.9, label=label)
            ax.axhline(row["loo"]["oracle"], color="grey", lw=0.8, ls=":")
        ax.set_title(f"source {source}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ks), [str(k) for k in ks])
        ax.set_xlabel("labelled runs (k)")
    axes[0][0].set_ylabel("weighted F-beta on the other runs")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(RULES), fontsize=9, frameon=False)
    fig.suptitle(
        "Thresholds from k labelled runs of a held-out source (one line per seed offset; dotted: oracle on all runs)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> Path:
    from benchmarks.generalization import BUDGETS, FRESH_SEED_OFFSET, SOURCES, predict, run_geometry, source_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which cached source datasets")
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir")
    parser.add_argument("--test-runs", type=int, default=16, metavar="N", help="fresh runs per source")
    parser.add_argument("--seed-offsets", type=int, nargs="+", default=[FRESH_SEED_OFFSET], metavar="OFFSET")
    parser.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        metavar="OFFSET=DIR",
        help="peaks already computed for an offset (DIR/source_A.csv ..., as default_model --save-predictions)",
    )
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS), help="labelled runs per draw")
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prior-strength", type=float, default=DEFAULT_PRIOR_STRENGTH)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "labelled_runs")
    args = parser.parse_args(argv)
    given = {}
    for item in args.predictions:
        offset, sep, folder = item.partition("=")
        if not sep or not offset.strip().lstrip("-").isdigit():
            parser.error(f"--predictions takes OFFSET=DIR; got {item!r}")
        given[int(offset)] = Path(folder)
    if any(k >= args.test_runs or k < 1 for k in args.ks):
        parser.error(f"every --ks value must be 1 .. {args.test_runs - 1} (one run at least is held out)")

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.io import list_runs, read_submission_csv, read_truth
    from cryopoint.weights import resolve_checkpoint

    b = BUDGETS[args.budget]
    ckpt = resolve_checkpoint(args.model)
    det = cryopoint.load(ckpt)
    results: dict[int, dict[str, dict]] = {}
    kept: dict[tuple[int, str], tuple] = {}  # (offset, source) -> (truth, peaks, geometry): the cross-offset table
    start = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task("sources", total=len(args.seed_offsets) * len(SOURCES))
        for offset in args.seed_offsets:
            results[offset] = {}
            for source in SOURCES:
                root = source_root(source, b, args.cache_dir, fresh_runs=args.test_runs, fresh_offset=offset)
                runs = sorted(list_runs(root), key=lambda n: int(n.rsplit("_", 1)[1]))
                truth = read_truth(root)
                if offset in given:
                    peaks = read_submission_csv(given[offset] / f"source_{source}.csv")
                    if set(peaks.experiment) - set(runs):
                        raise SystemExit(f"{given[offset]} holds runs that are not offset {offset}'s source {source}.")
                else:
                    peaks = predict(ckpt, root, runs)
                geometry = run_geometry(root, runs)
                curve, _ = source_curve(
                    det, truth, peaks, runs, geometry, args.ks, args.draws, args.seed, args.prior_strength
                )
                loo = leave_one_out(det, truth, peaks, runs, geometry, args.prior_strength)
                counts = truth[truth.experiment.isin(runs)].particle_type.value_counts().to_dict()
                results[offset][source] = {"curve": curve, "loo": loo, "particles": counts}
                kept[(offset, source)] = (truth[truth.experiment.isin(runs)], peaks, geometry)
                progress.advance(task)
    cross = [
        {
            "source": source,
            "labelled": a,
            "test": b,
            **cross_offset(det, kept[(a, source)], kept[(b, source)], args.prior_strength),
        }
        for source in SOURCES
        for a in args.seed_offsets
        for b in args.seed_offsets
        if a != b
    ]
    meta = {
        "command": "python -m benchmarks.labelled_runs " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": str(ckpt),
        "sha256": sha256(ckpt),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
        "seconds": time.perf_counter() - start,
        "prior_strength": args.prior_strength,
        "lean_tolerance": LEAN_TOLERANCE,
        "thresholds": det.default_thresholds,
        "per_tomogram_rule": {
            "noise_tail": bool(det.config.post.noise_tail),
            "adaptive_alpha": float(det.config.post.adaptive_alpha),
        },
    }
    from cryopoint.io.atomic import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        args.out.with_suffix(".json"), json.dumps({"meta": meta, "results": results, "cross": cross}, indent=2)
    )
    png = plot(results, args.ks, args.out.with_suffix(".png"))
    lines = report_lines(results, args.ks, meta, ckpt.name, png.name, args.test_runs, args.draws, cross)
    md = args.out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines) + "\n")
    console.print(f"Wrote {md}")
    return md


def report_lines(
    results: dict, ks, meta: dict, name: str, png: str, test_runs: int, draws: int, cross: list | None = None
) -> list[str]:
    """The Markdown report: per offset and source, the mean held-out score of each rule at each k."""
    lines = [
        "# Thresholds from a few labelled runs of a held-out source",
        "",
        f"`{meta['command'].strip()}` — {meta['date']}, {meta['machine']}, {meta['seconds'] / 60:.1f} min. "
        f"Checkpoint `{name}` (sha256 `{meta['sha256'][:16]}…`). Per source, {test_runs} fresh runs at each seed "
        f"offset (none seen in training); {draws} random draws of k labelled runs; each rule's thresholds chosen "
        "on the k runs, every pick of the other runs scored pooled (weighted F-beta, β = 4); mean over draws. "
        "Every rule with the model's per-tomogram rule on top, as a recalibrated copy applies it "
        f"(noise tail: {str(meta['per_tomogram_rule']['noise_tail']).lower()}). `prior`: argmax shrunk toward the "
        f"model's thresholds, the prior worth {meta['prior_strength']:g} particles per class; `lean`: tolerance "
        f"{meta['lean_tolerance']:g}.",
        "",
        "| offset | source | particles | rule | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|---|---|" + "---|" * len(ks),
    ]
    for offset, per_source in results.items():
        for source, row in per_source.items():
            n = sum(v for k, v in row["particles"].items() if k != "beta-amylase")
            for rule in RULES:
                cells = []
                for k in ks:
                    value = row["curve"][rule][k]
                    best = max(row["curve"][r][k] for r in RULES)
                    cells.append(f"**{value:.3f}**" if value == best else f"{value:.3f}")
                lines.append(f"| {offset} | {source} | {n} | {rule} | " + " | ".join(cells) + " |")
    lines += ["", "Mean over sources and offsets:", "", "| rule | " + " | ".join(f"k={k}" for k in ks) + " |"]
    lines.append("|---|" + "---|" * len(ks))
    for rule in RULES:
        vals = [np.mean([row["curve"][rule][k] for per in results.values() for row in per.values()]) for k in ks]
        lines.append(f"| {rule} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += [
        "",
        "Leave one tomogram out (every other run labelled), pooled over all runs, against the oracle (argmax on all "
        "runs, scored on them, no per-tomogram rule): the oracle's lead is what tuning on the answers adds.",
        "",
        "| offset | source | shipped | argmax | lean | prior | oracle | oracle - best honest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for offset, per_source in results.items():
        for source, row in per_source.items():
            loo = row["loo"]
            honest = max(loo[r] for r in RULES)
            cells = " | ".join(f"{loo[r]:.3f}" for r in (*RULES, "oracle"))
            lines.append(f"| {offset} | {source} | {cells} | {loo['oracle'] - honest:+.3f} |")
    if cross:
        lines += [
            "",
            f"Across seed offsets: thresholds tuned on all {test_runs} runs of a source at one offset (labelled), "
            "every run of the same source at another offset picked at them and scored pooled, against that "
            "offset's oracle.",
            "",
            "| source | labelled | test | shipped | argmax | lean | prior | oracle | oracle - best honest "
            "| oracle - shipped |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in cross:
            honest = max(row[r] for r in RULES)
            cells = " | ".join(f"{row[r]:.3f}" for r in (*RULES, "oracle"))
            lines.append(
                f"| {row['source']} | {row['labelled']} | {row['test']} | {cells} | "
                f"{row['oracle'] - honest:+.3f} | {row['oracle'] - row['shipped']:+.3f} |"
            )
        gaps = [row["oracle"] - max(row[r] for r in RULES) for row in cross]
        shipped = [row["oracle"] - row["shipped"] for row in cross]
        lines += [
            "",
            f"Mean oracle - best honest across offsets: {np.mean(gaps):+.3f}; oracle - shipped: "
            f"{np.mean(shipped):+.3f} (the same test sets).",
        ]
    lines += ["", f"![held-out score against labelled runs]({png})"]
    return lines


if __name__ == "__main__":
    main()
