"""Per-tomogram, label-free thresholds (``post.adaptive_alpha``) chosen on development data, then tested.

A model's tuned thresholds keep a known density of peaks per class on data like its training data. This
benchmark measures that density (the *reference*: ``--ref-runs`` fresh runs of the model's training preset,
seed ``--ref-seed``, never a training seed of the shipped model), then picks the multiple ``alpha`` of it that
:mod:`cryopoint.post.adaptive` caps each tomogram at, and tests the choice on data it never saw:

1. **development**: the standard test runs of sources A, B and C (``benchmarks/generalization.py``) and the
   reference runs; ``alpha`` is the one of ``--alphas`` with the highest mean pooled score over the four;
2. **test**: ``--test-runs`` fresh runs per source (the ``default_model --test-runs`` sets), scored with the
   model's thresholds, with the selected ``alpha``, and with thresholds tuned on the test runs (oracle);
   per class the gap adaptive minus plain with a 90 % interval from resampling runs (paired).

``--save-as PATH`` writes a copy of the model with the reference density and the selected ``alpha``, which
``cryopoint.detect`` then applies by itself (the shipped file is never modified). The copy keeps the model's
``post.noise_tail`` (on for the shipped model), so each class then takes the higher of the two rules' thresholds,
while this benchmark scores the cap alone::

    python -m benchmarks.adaptive_thresholds                      # the shipped model, ~12 min on 2 cores
    python -m benchmarks.adaptive_thresholds --model runs/x/best.pt --save-as runs/x/adaptive.pt

Writes ``benchmarks/results/adaptive_thresholds.{md,json,png}``.
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
from rich.progress import Progress

from benchmarks.bench_common import bootstrap_fbeta_gap, machine, per_run_counts, score_cells
from benchmarks.generalization import BUDGETS, SOURCES, predict, run_geometry, source_root, split_names
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
REFERENCE = "reference"
console = Console()


def reference_peaks(det, preset: str, runs: int, seed: int, shape) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Every peak of ``det`` on fresh runs of ``preset``: ``(peaks, truth, total µm³)``."""
    import cryopoint
    from cryopoint.post.adaptive import volume_um3
    from cryopoint.synth import get_preset, run_names
    from cryopoint.synth.dataset import run_rng
    from cryopoint.synth.simulate import simulate_run

    params = get_preset(preset)
    peaks, truths = [], []
    with Progress(console=console) as progress:
        task = progress.add_task("reference runs", total=runs)
        for name in run_names(runs, seed, "train"):
            vol, truth = simulate_run(tuple(shape), params, run_rng(seed, "train", name))
            truths.append(truth.assign(experiment=name))
            picks = cryopoint.detect(vol, det, voxel_size=params.voxel_size, thresholds=0.0)
            peaks.append(picks.assign(experiment=name))
            progress.advance(task)
    total = runs * volume_um3(shape, params.voxel_size)
    return pd.concat(peaks, ignore_index=True), pd.concat(truths, ignore_index=True), total


def development_sets(
    ckpt: Path, det, budget, preset: str, ref_runs: int, ref_seed: int, cache_dir: str | None
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]]:
    """The development data of a per-tomogram threshold rule: ``{set: (every peak, truth, {run: µm³})}`` for the
    standard test runs of each source and (``REFERENCE``) ``ref_runs`` fresh runs of ``preset``."""
    from cryopoint.io import read_truth
    from cryopoint.synth import run_names

    sets = {}
    for source in SOURCES:
        root = source_root(source, budget, cache_dir)
        _, test = split_names(root, budget)
        truth = read_truth(root)
        sets[source] = (predict(ckpt, root, test), truth[truth.experiment.isin(test)], run_volumes(root, test))
    peaks, truth, um3 = reference_peaks(det, preset, ref_runs, ref_seed, budget.shape)
    sets[REFERENCE] = (peaks, truth, {n: um3 / ref_runs for n in run_names(ref_runs, ref_seed, "train")})
    return sets


def fresh_test_set(ckpt: Path, budget, source: str, runs: int, cache_dir: str | None):
    """``runs`` fresh runs of ``source`` (the ``default_model --test-runs`` sets): ``(names, every peak, truth,
    {run: µm³})``."""
    from cryopoint.io import list_runs, read_truth

    root = source_root(source, budget, cache_dir, fresh_runs=runs)
    names = sorted(list_runs(root), key=lambda n: int(n.rsplit("_", 1)[1]))
    return names, predict(ckpt, root, names), read_truth(root), run_volumes(root, names)


def rule_meta(name: str, argv, args, ckpt: Path, preset: str, budget, begin: float, figure: Path) -> dict:
    """The ``meta`` block both per-tomogram threshold benchmarks write: the command, model and data, when, where
    and how long (``begin``: ``time.perf_counter()`` at the start)."""
    return {
        "command": f"python -m benchmarks.{name} " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model),
        "checkpoint": str(ckpt),
        "preset": preset,
        "ref_runs": args.ref_runs,
        "ref_seed": args.ref_seed,
        "shape": list(budget.shape),
        "test_runs": args.test_runs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
        "minutes": (time.perf_counter() - begin) / 60,
        "figure": figure.name,
    }


def write_outputs(result: dict, out: Path, figure: Path, write_figure, write_report) -> Path:
    """``out``.json (atomic), the figure and the report; returns the report's path."""
    from cryopoint.io.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
    write_figure(result, figure)
    return write_report(result, out)


def run_volumes(root: Path, names: list[str]) -> dict[str, float]:
    """µm³ of each run's tomogram (shape and voxel size from the file)."""
    from cryopoint.post.adaptive import volume_um3

    return {n: volume_um3(shape, vs) for n, (shape, vs) in run_geometry(root, names).items()}


def adapted(peaks: pd.DataFrame, floor: dict, density: dict, volumes: dict[str, float], alpha: float) -> pd.DataFrame:
    """The picks ``cryopoint.detect`` keeps with ``post.adaptive_alpha = alpha``: per run, its own thresholds."""
    from cryopoint.post.adaptive import density_thresholds
    from cryopoint.post.thresholds import apply_thresholds

    kept = []
    for run, group in peaks.groupby("experiment", sort=False):
        kept.append(apply_thresholds(group, density_thresholds(group, floor, density, volumes[run], alpha)))
    return pd.concat(kept, ignore_index=True) if kept else peaks.iloc[:0]


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dev, test = result["development"], result["test"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    alphas = result["meta"]["alphas"]
    for name, row in dev.items():
        ax1.plot(alphas, [row["alpha"][str(a)] for a in alphas], marker="o", label=name)
        ax1.axhline(row["plain"], color=ax1.lines[-1].get_color(), ls=":", lw=1)
    ax1.axvline(result["selected_alpha"], color="k", lw=0.8)
    ax1.set(xlabel="alpha (multiple of the reference kept density)", ylabel="weighted F-beta",
            title="development (dotted: plain thresholds)")  # fmt: skip
    ax1.legend(fontsize=8)
    names = list(test)
    x = np.arange(len(names))
    for i, (key, label) in enumerate((("plain", "model's thresholds"), ("adaptive", "adaptive"), ("oracle", "oracle"))):
        ax2.bar(x + (i - 1) * 0.27, [test[n][key]["score"] for n in names], 0.27, label=label)
    ax2.set_xticks(x, [f"{n}\n({test[n]['particles']} particles)" for n in names])
    ax2.set(ylabel="weighted F-beta", ylim=(0, 1), title=f"test: fresh runs, alpha {result['selected_alpha']:g}")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict, out: Path) -> Path:
    from cryopoint.io.atomic import atomic_write_text

    meta, a = result["meta"], result["selected_alpha"]
    lines = [
        "# Per-tomogram, label-free thresholds (`post.adaptive_alpha`)",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}`.",
        "",
        f"Reference: {meta['ref_runs']} fresh `{meta['preset']}` runs (seed {meta['ref_seed']}, {tuple(meta['shape'])} "
        "voxels): the peaks per µm³ the model's thresholds keep there, per class: "
        + ", ".join(f"{n} {v:.0f}" for n, v in result["kept_density"].items())
        + ". On a tomogram, each class keeps at most alpha times that density (never a threshold below the "
        "model's own).",
        "",
        "## Development: choosing alpha",
        "",
        "Pooled weighted F-beta on the standard test runs of each source (as in `default_model.md`) and on the "
        "reference runs themselves; alpha is the one with the highest mean over the four.",
        "",
        "| set | particles | model's thresholds | " + " | ".join(f"alpha {x:g}" for x in meta["alphas"]) + " |",
        "|---|---|---|" + "---|" * len(meta["alphas"]),
    ]
    for name, row in result["development"].items():
        cells_ = " | ".join(
            (f"**{row['alpha'][str(x)]:.3f}**" if x == a else f"{row['alpha'][str(x)]:.3f}") for x in meta["alphas"]
        )
        lines.append(f"| {name} | {row['particles']} | {row['plain']:.3f} | {cells_} |")
    means = result["development_mean"]
    lines.append(
        "| **mean** | | "
        + f"{means['plain']:.3f} | "
        + " | ".join(f"{means[str(x)]:.3f}" for x in meta["alphas"])
        + " |"
    )
    lines += [
        "",
        f"Selected: **alpha {a:g}**.",
        "",
        f"## Test: {meta['test_runs']} fresh runs per source",
        "",
        "None of these runs was used above (the `default_model --test-runs` sets, seed offset 5000). Per class: "
        "F-beta, then recall in brackets.",
        "",
        "| source | particles | thresholds | weighted | " + " | ".join(SCORED) + " |",
        "|---|---|---|---|" + "---|" * len(SCORED),
    ]
    for name, row in result["test"].items():
        for key, label in (("plain", "model's own"), ("adaptive", f"adaptive, alpha {a:g}"), ("oracle", "oracle")):
            c = row[key]
            per = " | ".join(f"{c[n]:.2f} ({c[n + ' recall']:.2f})" for n in SCORED)
            lines.append(f"| {name} | {row['particles']} | {label} | **{c['score']:.3f}** | {per} |")
    plain = np.mean([r["plain"]["score"] for r in result["test"].values()])
    adapt = np.mean([r["adaptive"]["score"] for r in result["test"].values()])
    lines += [
        "",
        f"Mean over sources: model's own thresholds **{plain:.3f}**, adaptive **{adapt:.3f}** ({adapt - plain:+.3f}).",
        "",
        "Per class, adaptive minus the model's own thresholds (F-beta), with the 90 % interval from resampling "
        "test runs (paired):",
        "",
        "| source | " + " | ".join(SCORED) + " |",
        "|---|" + "---|" * len(SCORED),
    ]
    for name, row in result["test"].items():
        g = row["gap"]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{g[n]['gap']:+.2f} [{g[n]['lo']:+.2f}, {g[n]['hi']:+.2f}]" for n in SCORED)
            + " |"
        )
    lines += ["", f"![development and test]({meta['figure']})", ""]
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    return md


def save_adaptive_copy(model: str, dst: Path, density: dict, alpha: float) -> Path:
    """A copy of ``model`` that ``detect`` runs with per-tomogram thresholds (``alpha``, ``density``)."""
    from cryopoint.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
    from cryopoint.weights import resolve_checkpoint

    src = resolve_checkpoint(model)
    export_checkpoint(src, dst, overrides=[f"post.adaptive_alpha={alpha}"])
    payload = load_checkpoint(dst)
    payload["kept_density"] = {str(k): float(v) for k, v in density.items()}
    return save_checkpoint(dst, payload)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which source datasets")
    parser.add_argument("--preset", help="the reference runs' synthetic preset (default: the model's training preset)")
    parser.add_argument("--ref-runs", type=int, default=24)
    parser.add_argument("--ref-seed", type=int, default=8, help="a seed the model was not trained on")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1, 1.5, 2, 3, 4])
    parser.add_argument("--test-runs", type=int, default=16, help="fresh test runs per source")
    parser.add_argument("--cache-dir")
    parser.add_argument("--save-as", type=Path, help="write a copy of the model that uses the selected alpha")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adaptive_thresholds")
    args = parser.parse_args(argv)
    if args.save_as is not None and args.save_as.exists():
        parser.error(f"--save-as {args.save_as} exists; choose another path")
    if args.ref_runs < 1 or args.test_runs < 1 or any(not x > 0 for x in args.alphas):
        parser.error("--ref-runs and --test-runs must be >= 1 and every alpha > 0")

    import cryopoint
    from cryopoint.post.adaptive import kept_density
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds
    from cryopoint.weights import resolve_checkpoint

    begin = time.perf_counter()
    b = BUDGETS[args.budget]
    ckpt = resolve_checkpoint(args.model)
    det = cryopoint.load(ckpt)
    floor = det.default_thresholds
    alphas = sorted(set(args.alphas))
    preset = args.preset or det.config.data.synth_preset
    if not preset:
        parser.error(f"{ckpt} was not trained on a synthetic preset: name the reference data's with --preset")

    console.rule("development")
    dev_sets = development_sets(ckpt, det, b, preset, args.ref_runs, args.ref_seed, args.cache_dir)
    ref_peaks, _, ref_vol = dev_sets[REFERENCE]
    density = kept_density(ref_peaks, floor, sum(ref_vol.values()))
    development = {}
    for name, (peaks, truth, vols) in dev_sets.items():
        development[name] = {
            "particles": int(truth.particle_type.isin(SCORED).sum()),
            "plain": score_cells(apply_thresholds(peaks, floor), truth)["score"],
            "alpha": {str(x): score_cells(adapted(peaks, floor, density, vols, x), truth)["score"] for x in alphas},
        }
    dev_mean = {"plain": float(np.mean([r["plain"] for r in development.values()]))}
    dev_mean |= {str(x): float(np.mean([r["alpha"][str(x)] for r in development.values()])) for x in alphas}
    selected = max(alphas, key=lambda x: (dev_mean[str(x)], x))  # ties: the larger alpha (keeps more: recall first)
    console.print(f"Selected alpha {selected:g} (development mean {dev_mean[str(selected)]:.3f})")

    console.rule("test")
    test = {}
    for source in SOURCES:
        names, peaks, truth, vols = fresh_test_set(ckpt, b, source, args.test_runs, args.cache_dir)
        plain = apply_thresholds(peaks, floor)
        adapt = adapted(peaks, floor, density, vols, selected)
        gap = bootstrap_fbeta_gap(per_run_counts(truth, adapt, names), per_run_counts(truth, plain, names))
        oracle = apply_thresholds(peaks, tune_thresholds(truth, peaks).thresholds)
        test[source] = {
            "particles": int(truth.particle_type.isin(SCORED).sum()),
            "runs": len(names),
            "plain": score_cells(plain, truth),
            "adaptive": score_cells(adapt, truth),
            "oracle": score_cells(oracle, truth),
            "gap": {n: {k: float(v[i]) for k, v in gap.items()} for i, n in enumerate(PARTICLE_NAMES) if n in SCORED},
        }

    figure = args.out.parent / f"{args.out.name}.png"
    meta = rule_meta("adaptive_thresholds", argv, args, ckpt, preset, b, begin, figure) | {"alphas": alphas}
    result = {
        "meta": meta,
        "kept_density": density,
        "development": development,
        "development_mean": dev_mean,
        "selected_alpha": selected,
        "test": test,
    }
    md = write_outputs(result, args.out, figure, write_figure, write_report)
    if args.save_as is not None:
        save_adaptive_copy(args.model, args.save_as, density, selected)
        console.print(f"Wrote {args.save_as} (post.adaptive_alpha {selected:g} and the reference density)")
    console.print(f"Wrote {md}")
    return md


if __name__ == "__main__":
    main()
