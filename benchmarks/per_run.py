"""Where a model's misses sit, run by run: per-run recall on a blind source beside what each run's simulator drew.

A source's score pools its runs. When a class is found in some runs and not at all in others, the cause lies in
what differs between runs (the imaging), not in the particles, and a pooled table hides it. This benchmark scores a
checkpoint on a blind source's runs and lists, per run and class, recall at the model's default picks (as
``cryopoint.detect`` keeps them) and with every peak kept (did the network put a peak there at all?). For source F,
whose simulator draws a run's imaging knobs first from the run's own seed, the knobs are replayed
(``blind_sim_f.draw_imaging``) and set beside the recall: the correlation of each numeric knob with each class's
recall across runs, and recall by each categorical knob. The other simulators draw their knobs amid the scene, so
their tables have recall only.

    python -m benchmarks.per_run --source F --seed 10 --first 1001 --runs 48   # report + json + PNG

Correlations over a few dozen runs are descriptive: a knob that moves with another (or with the run's particle
counts) shares its correlation. A run without a class has no recall for it (blank), and a class with few particles
in a run moves its recall in large steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryopoint.io.atomic import atomic_path, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
#: classes the table lists (beta-amylase carries no weight in the score)
CLASSES = ("apo-ferritin", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle")
SHORT = {"apo-ferritin": "apo", "beta-galactosidase": "b-gal", "ribosome": "ribo", "thyroglobulin": "thyro",
         "virus-like-particle": "VLP"}  # fmt: skip


def recall_counts(truth: pd.DataFrame, picks: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """True positives and true particles per run (rows, ``names``) and class (columns, :data:`CLASSES`) of ``picks``
    against ``truth``, from the exact metric run by run (:func:`benchmarks.bench_common.per_run_counts`)."""
    from benchmarks.bench_common import per_run_counts
    from cryopoint.particles import PARTICLE_NAMES

    counts = per_run_counts(truth, picks, names)  # (runs, [tp, n_pred, n_true], PARTICLE_NAMES)
    idx = [list(PARTICLE_NAMES).index(c) for c in CLASSES]
    return counts[:, 0, idx], counts[:, 2, idx]


def per_run_recall(tp: np.ndarray, n_true: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Recall per run and class from :func:`recall_counts`; NaN where a run has no particle of a class."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_true > 0, tp / n_true, np.nan)
    return pd.DataFrame(rate, index=names, columns=list(CLASSES))


def pooled_recall(tp: np.ndarray, n_true: np.ndarray) -> dict[str, float]:
    """Recall per class over all runs together (each particle matched within its own run)."""
    total = n_true.sum(axis=0)
    return {c: float(tp[:, i].sum() / total[i]) if total[i] else float("nan") for i, c in enumerate(CLASSES)}


def f_knobs(seed: int, first: int, runs: int) -> pd.DataFrame:
    """Source F's imaging knobs of runs ``first .. first + runs - 1`` at ``seed``, replayed: its simulator draws
    them first from ``default_rng([seed, run])``. One row per run (``TS_F_<k>``); the tilt angles become their
    count and range."""
    from benchmarks import blind_sim_f

    rows = {}
    for k in range(first, first + runs):
        p = dict(blind_sim_f.draw_imaging(np.random.default_rng([seed, k])))
        angles = np.asarray(p.pop("angles"))
        p["tilts"], p["tilt_range"] = len(angles), float(angles.max() - angles.min())
        rows[f"TS_F_{k}"] = {key: (v.item() if isinstance(v, np.generic) else v) for key, v in p.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


KNOBS = {"F": f_knobs}  # sources whose run knobs can be replayed without simulating


def knob_effects(recall: pd.DataFrame, knobs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """How recall moves with each knob across runs: ``(correlations, by_category)``. ``correlations``: Pearson r
    of each numeric knob (rows) with each class's recall (columns), over the runs that have the class;
    ``by_category``: per categorical knob (strings and booleans), the mean recall of each class per value, with the
    number of runs."""
    knobs = knobs.reindex(recall.index)
    numeric, categorical = [], []
    for name in knobs.columns:
        col = knobs[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            categorical.append(name)
        elif col.nunique() > 1:
            numeric.append(name)
    corr = pd.DataFrame(index=numeric, columns=recall.columns, dtype=float)
    for name in numeric:
        for cls in recall.columns:
            ok = recall[cls].notna()
            x, y = knobs.loc[ok, name].astype(float), recall.loc[ok, cls]
            corr.loc[name, cls] = float(np.corrcoef(x, y)[0, 1]) if ok.sum() >= 3 and y.std() > 0 else np.nan
    by_category = {}
    for name in categorical:
        group = recall.groupby(knobs[name].astype(str))
        by_category[name] = group.mean().assign(runs=group.size())
    return corr, by_category


def strongest_knobs(corr: pd.DataFrame) -> list[str]:
    """Numeric knobs by their mean |r| over classes, strongest first (knobs with no correlation left out)."""
    return list(corr.abs().mean(axis=1).dropna().sort_values(ascending=False).index)


def plot(recall: pd.DataFrame, knobs: pd.DataFrame, corr: pd.DataFrame, path: Path, top: int = 2) -> Path:
    """Per-run recall of each class against the ``top`` numeric knobs whose mean |r| over classes is largest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = strongest_knobs(corr)[:top]
    if len(chosen) == 0:
        raise ValueError("no numeric knob correlates with any class's recall here (too few runs?): nothing to plot")
    fig, axes = plt.subplots(len(chosen), len(recall.columns), figsize=(3.0 * len(recall.columns), 2.8 * len(chosen)))
    axes = np.atleast_2d(axes)
    for i, knob in enumerate(chosen):
        for j, cls in enumerate(recall.columns):
            ax = axes[i, j]
            ok = recall[cls].notna()
            ax.scatter(knobs.loc[recall.index[ok], knob], recall.loc[ok, cls], s=14, alpha=0.7)
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(f"{SHORT[cls]}: r = {corr.loc[knob, cls]:+.2f}", fontsize=9)
            ax.set_xlabel(knob, fontsize=8)
            if j == 0:
                ax.set_ylabel("recall, default picks", fontsize=8)
    fig.suptitle("recall per run as picked by default, against the knobs it moves with most", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _cell(v) -> str:
    return "" if pd.isna(v) else f"{v:.2f}"


def write_report(res: dict, meta: dict, out: Path) -> Path:
    """``out.md`` and ``out.json`` (atomically) from :func:`run`'s result."""
    recall, everything = res["recall"], res["recall_all"]
    lines = [
        f"# Source {meta['source']}, run by run",
        "",
        f"`{meta['command']}`: {meta['when']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}` "
        f"(sha256 `{meta['model_sha'][:12]}…`), seed {meta['seed']}, runs {meta['runs'][0]}..{meta['runs'][-1]} "
        f"({len(meta['runs'])}).",
        "",
        "Recall per run and class: as `detect` picks by default, and in brackets with every peak kept (whether the "
        "network put a peak on the particle at all). Blank: no particle of the class in the run.",
        "",
    ]
    knob_cols = strongest_knobs(res["corr"])[:4] if "corr" in res else []
    head = "| run | " + " | ".join(SHORT[c] for c in recall.columns) + "".join(f" | {k}" for k in knob_cols) + " |"
    lines += [head, "|---" * (1 + len(recall.columns) + len(knob_cols)) + "|"]
    knobs = res.get("knobs")
    for run in recall.index:
        cells = [
            "" if pd.isna(recall.loc[run, c]) else f"{recall.loc[run, c]:.2f} ({everything.loc[run, c]:.2f})"
            for c in recall.columns
        ]
        for k in knob_cols:
            v = knobs.loc[run, k]
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    pooled = " | ".join(f"{res['pooled'][c]:.2f}" for c in recall.columns) + " |" * len(knob_cols)
    lines.append(f"| **all runs (pooled)** | {pooled} |")
    if "corr" in res:
        corr = res["corr"]
        lines += [
            "",
            "Correlation (Pearson r, over runs that have the class) of each numeric knob with recall at the default "
            "picks; strongest first:",
            "",
            "| knob | " + " | ".join(SHORT[c] for c in corr.columns) + " |",
            "|---" * (1 + len(corr.columns)) + "|",
        ]
        order = strongest_knobs(corr)
        lines += [
            f"| {k} | " + " | ".join(f"{v:+.2f}" if pd.notna(v) else "" for v in corr.loc[k]) + " |" for k in order
        ]
        for name, table in res["by_category"].items():
            lines += [
                "",
                f"Mean recall by `{name}`:",
                "",
                "| value | runs | " + " | ".join(SHORT[c] for c in recall.columns) + " |",
            ]
            lines.append("|---" * (2 + len(recall.columns)) + "|")
            for value, row in table.iterrows():
                lines.append(
                    f"| {value} | {int(row['runs'])} | " + " | ".join(_cell(row[c]) for c in recall.columns) + " |"
                )
        if res.get("figure"):
            lines += ["", f"![recall against the strongest knobs]({Path(res['figure']).name})"]
    lines += ["", "Correlations over a few dozen runs are descriptive: knobs that move together share them.", ""]
    if meta.get("notes"):
        lines += [f"Notes: {meta['notes']}", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    md = atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    data = {
        "meta": meta,
        "recall": json.loads(recall.to_json(orient="index")),
        "recall_all_peaks": json.loads(everything.to_json(orient="index")),
        "pooled": res["pooled"],
    }
    if "corr" in res:
        data["correlation"] = json.loads(res["corr"].to_json(orient="index"))
    atomic_write_text(out.with_suffix(".json"), json.dumps(data, indent=1))
    return md


def run(det, root: Path, names: list[str], knobs: pd.DataFrame | None, figure: Path | None = None) -> dict:
    """Per-run recall of detector ``det`` on runs ``names`` of ``root`` (default picks and every peak), with the
    knob effects and figure where ``knobs`` are given."""
    from benchmarks.bench_common import own_picks
    from benchmarks.blind_source import predict_timed
    from benchmarks.generalization import run_geometry
    from cryopoint.io import read_truth

    truth = read_truth(root, runs=names)
    peaks, _ = predict_timed(det, root, names)
    picks = own_picks(det, peaks, run_geometry(root, names))
    tp, n_true = recall_counts(truth, picks, names)
    res = {"recall": per_run_recall(tp, n_true, names), "pooled": pooled_recall(tp, n_true)}
    res["recall_all"] = per_run_recall(*recall_counts(truth, peaks, names), names)
    if knobs is not None:
        res["knobs"] = knobs.reindex(names)
        res["corr"], res["by_category"] = knob_effects(res["recall"], knobs)
        if figure is not None and strongest_knobs(res["corr"]):
            res["figure"] = str(plot(res["recall"], res["knobs"], res["corr"], figure))
    return res


def main(argv: list[str] | None = None) -> Path:
    import platform

    import torch

    import cryopoint
    from benchmarks.blind_source import SIMULATORS, _sha, dataset, run_names

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="checkpoint to score (default: the shipped file)")
    p.add_argument("--source", choices=sorted(SIMULATORS), default="F", help="which blind simulator (default F)")
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--first", type=int, default=1001, help="index of the first run")
    p.add_argument("--runs", type=int, default=48)
    p.add_argument("--shape", type=int, nargs=3, default=[96, 256, 256], metavar=("Z", "Y", "X"))
    p.add_argument("--cache-dir", help="cache root (default: $CRYOPOINT_CACHE or ~/.cache/cryopoint)")
    p.add_argument("--notes", default="", help="a sentence for the report")
    p.add_argument(
        "--out", type=Path, help="report path, no suffix (default benchmarks/results/per_run_<source>_s<seed>)"
    )
    args = p.parse_args(argv)
    out = args.out or REPO / "benchmarks" / "results" / f"per_run_{args.source}_s{args.seed}"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    det = cryopoint.load(args.model)
    root = dataset(args.seed, args.first, args.runs, tuple(args.shape), args.cache_dir, args.source)
    names = run_names(args.first, args.runs, args.source)
    knobs = KNOBS[args.source](args.seed, args.first, args.runs) if args.source in KNOBS else None
    res = run(det, root, names, knobs, figure=out.with_suffix(".png") if knobs is not None else None)
    meta = {
        "command": "python -m benchmarks.per_run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "minutes": (time.time() - t0) / 60,
        "model": str(args.model),
        "model_sha": _sha(det),
        "source": args.source,
        "seed": args.seed,
        "runs": names,
        "notes": args.notes,
    }
    path = write_report(res, meta, out)
    print(path.read_text())
    return path


if __name__ == "__main__":
    main()
