"""Per-tomogram thresholds from each tomogram's own background tail (``post.noise_tail``), chosen then tested.

The rule (:mod:`cryopoint.post.noise_tail`) has one setting, the fit region (peaks per µm³ whose scores the
background tail is fitted on). It is chosen, then tested, on data the model never saw:

1. **development**: the standard test runs of sources A, B and C (``benchmarks/generalization.py``) and
   ``--ref-runs`` fresh runs of the model's training preset (seed ``--ref-seed``); the fit region of
   ``--fit-regions`` with the highest mean pooled score over the four is selected (ties: the first listed);
2. **test**: ``--test-runs`` fresh runs per source (the ``default_model --test-runs`` sets), scored with the
   model's thresholds, with the noise-tail rule, with the density cap of ``benchmarks/adaptive_thresholds.py``
   (``--alpha``, where the model carries a reference density) and with thresholds tuned on the test runs
   (oracle); per class the gap noise tail minus the model's thresholds with a 90 % interval from resampling
   runs (paired);
   Also: thresholds recalibrated from labels (tuned on the source's standard test runs, two labelled tomograms,
   with ``--tolerance`` 0 and 0.05) on the same fresh runs, with and without the rule on top: what a user who
   labels a couple of tomograms gets either way;
3. **easy**: the small ``easy`` tomograms of ``tests/test_default_model.py`` (seed 2026) and more seeds, at the
   model's thresholds, with the rule, and tuned on each tomogram (its ranking).

::

    python -m benchmarks.noise_tail                      # the shipped model, ~12 min on 2 cores
    python -m benchmarks.noise_tail --model runs/x/best.pt

Writes ``benchmarks/results/noise_tail.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from benchmarks.adaptive_thresholds import adapted, development_sets, fresh_test_set, rule_meta, write_outputs
from benchmarks.bench_common import bootstrap_fbeta_gap, per_run_counts, score_cells
from benchmarks.generalization import BUDGETS, SOURCES
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
#: The ``easy`` tomograms (:func:`easy_tomogram`), also those of ``tests/test_default_model.py``.
EASY_COUNTS = {"apo-ferritin": 4, "beta-galactosidase": 3, "ribosome": 3, "thyroglobulin": 3, "virus-like-particle": 2}
EASY_SHAPE = (64, 256, 256)
#: Threshold-tuning tolerances of the recalibration rows (argmax and the lean rule).
RECALIBRATION_TOLERANCES = (0.0, 0.05)
console = Console()


def tail_picks(peaks: pd.DataFrame, floor: dict, volumes: dict[str, float], region: tuple[float, float]):
    """The picks ``cryopoint.detect`` keeps with ``post.noise_tail`` on (fit region ``region``): per run."""
    from cryopoint.post.noise_tail import noise_tail_thresholds
    from cryopoint.post.thresholds import apply_thresholds

    kept = [
        apply_thresholds(g, noise_tail_thresholds(g, floor, volumes[run], region))
        for run, g in peaks.groupby("experiment", sort=False)
    ]
    return pd.concat(kept, ignore_index=True) if kept else peaks.iloc[:0]


def easy_tomogram(seed: int) -> tuple[np.ndarray, pd.DataFrame, float]:
    """One small ``easy`` tomogram (``EASY_COUNTS``, ``EASY_SHAPE``; seed 2026 is the regression test's):
    ``(volume, truth, voxel size in Å)``."""
    from cryopoint.synth import get_preset
    from cryopoint.synth.simulate import simulate_run

    params = get_preset("easy", counts=EASY_COUNTS)
    vol, truth = simulate_run(EASY_SHAPE, params, np.random.default_rng(seed))
    return vol, truth, params.voxel_size


def easy_peaks(det, seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Every peak of ``det`` on small ``easy`` tomograms (one per seed): ``(peaks, truth, {run: µm³})``."""
    import cryopoint
    from cryopoint.post.adaptive import volume_um3

    peaks, truths, vols = [], [], {}
    for seed in seeds:
        name = f"easy_{seed}"
        vol, truth, vs = easy_tomogram(seed)
        peaks.append(cryopoint.detect(vol, det, voxel_size=vs, thresholds=0.0).assign(experiment=name))
        truths.append(truth.assign(experiment=name))
        vols[name] = volume_um3(EASY_SHAPE, vs)
    return pd.concat(peaks, ignore_index=True), pd.concat(truths, ignore_index=True), vols


def parse_region(text: str) -> tuple[float, float]:
    top, _, bottom = text.partition(":")
    try:
        region = (float(top), float(bottom))
    except ValueError:
        msg = f"a fit region is TOP:BOTTOM peaks per µm³ (e.g. 5000:50000); got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 < region[0] < region[1]:
        raise argparse.ArgumentTypeError(f"a fit region needs 0 < TOP < BOTTOM; got {text!r}")
    return region


#: One colour per threshold rule in every panel.
COLORS = {"own": "0.6", "density": "tab:orange", "tail": "tab:blue", "oracle": "tab:red", "tuned": "tab:red"}


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 1.4, 1.2]})
    dev, regions = result["development"], result["meta"]["fit_regions"]
    names = list(dev)
    x = np.arange(len(names))
    width = 0.8 / (len(regions) + 1)
    axes[0].bar(x - 0.4 + width / 2, [dev[n]["own"] for n in names], width, label="model's thresholds", color="0.6")
    others = iter(plt.cm.Blues(np.linspace(0.35, 0.6, max(len(regions) - 1, 1))))
    for i, r in enumerate(regions):
        chosen = r == result["selected"]
        label = f"noise tail {r}" + (" (selected)" if chosen else "")
        color = COLORS["tail"] if chosen else next(others)
        axes[0].bar(x - 0.4 + (i + 1.5) * width, [dev[n]["tail"][r] for n in names], width, label=label, color=color)
    axes[0].set_xticks(x, names)
    axes[0].set(ylabel="weighted F-beta", ylim=(0, 1), title="development: choosing the fit region")
    axes[0].legend(fontsize=7)

    test = result["test"]
    keys = [k for k in ("own", "density", "tail", "oracle") if k in next(iter(test.values()))]
    labels = {"own": "model's thresholds", "density": f"density cap, alpha {result['meta']['alpha']:g}",
              "tail": "noise tail", "oracle": "oracle (tuned on the test runs)"}  # fmt: skip
    names = list(test)
    x = np.arange(len(names))
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        scores = [test[n][k]["score"] for n in names]
        axes[1].bar(x - 0.4 + (i + 0.5) * width, scores, width, label=labels[k], color=COLORS[k])
    axes[1].set_xticks(x, [f"{n}\n({test[n]['particles']} particles)" for n in names])
    axes[1].set(ylim=(0, 1), title=f"test: {result['meta']['test_runs']} fresh runs per source")
    axes[1].legend(fontsize=7)

    easy = result["easy"]
    seeds = list(easy["runs"])
    x = np.arange(len(seeds))
    for i, (k, label) in enumerate((("own", "model's thresholds"), ("tail", "noise tail"), ("tuned", "tuned on it"))):
        scores = [easy["runs"][s][k] for s in seeds]
        axes[2].bar(x - 0.4 + (i + 0.5) * 0.8 / 3, scores, 0.8 / 3, label=label, color=COLORS[k])
    axes[2].axhline(0.9, color="k", lw=0.8, ls=":")
    axes[2].set_xticks(x, [s.split("_")[1] for s in seeds], fontsize=7)
    axes[2].set(xlabel="easy tomogram (seed)", ylim=(0, 1.05), title="easy: one small tomogram each")
    axes[2].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict, out: Path) -> Path:
    from cryopoint.io.atomic import atomic_write_text

    meta, sel = result["meta"], result["selected"]
    regions = meta["fit_regions"]
    lines = [
        "# Per-tomogram thresholds from the tomogram's own background tail (`post.noise_tail`)",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}` "
        f"(sha256 `{meta['sha256'][:12]}…`).",
        "",
        "Per class and tomogram, the rule fits the background's tail (log rank against score) on the ranks whose "
        "density lies in the fit region (peaks per µm³), counts the peaks standing above it as particles, and "
        "raises the model's threshold to the one that maximises the F-beta these counts estimate "
        "(`cryopoint/post/noise_tail.py`). No labels, no reference data, one tomogram at a time.",
        "",
        "## Development: choosing the fit region",
        "",
        f"Pooled weighted F-beta on the standard test runs of each source and on {meta['ref_runs']} fresh "
        f"`{meta['preset']}` runs (seed {meta['ref_seed']}); the fit region with the highest mean is selected.",
        "",
        "| set | particles | model's thresholds | " + " | ".join(f"noise tail {r}" for r in regions) + " |",
        "|---|---|---|" + "---|" * len(regions),
    ]
    for name, row in result["development"].items():
        cells = " | ".join(f"**{row['tail'][r]:.3f}**" if r == sel else f"{row['tail'][r]:.3f}" for r in regions)
        lines.append(f"| {name} | {row['particles']} | {row['own']:.3f} | {cells} |")
    means = result["development_mean"]
    lines.append(f"| **mean** | | {means['own']:.3f} | " + " | ".join(f"{means[r]:.3f}" for r in regions) + " |")
    lines += [
        "",
        f"Selected: **fit region {sel} peaks per µm³**.",
        "",
        f"## Test: {meta['test_runs']} fresh runs per source",
        "",
        "None of these runs was used above (the `default_model --test-runs` sets). Per class: F-beta, then recall "
        "in brackets.",
        "",
        "| source | particles | thresholds | weighted | " + " | ".join(SCORED) + " |",
        "|---|---|---|---|" + "---|" * len(SCORED),
    ]
    labels = {"own": "model's own", "density": f"density cap, alpha {meta['alpha']:g}", "tail": "noise tail",
              "oracle": "oracle"}  # fmt: skip
    for name, row in result["test"].items():
        for key in ("own", "density", "tail", "oracle"):
            if key not in row:
                continue
            c = row[key]
            per = " | ".join(f"{c[n]:.2f} ({c[n + ' recall']:.2f})" for n in SCORED)
            lines.append(f"| {name} | {row['particles']} | {labels[key]} | **{c['score']:.3f}** | {per} |")
    mean = {k: np.mean([r[k]["score"] for r in result["test"].values()]) for k in ("own", "tail", "oracle")}
    lines += [
        "",
        f"Mean over sources: model's own thresholds **{mean['own']:.3f}**, noise tail **{mean['tail']:.3f}** "
        f"({mean['tail'] - mean['own']:+.3f}), oracle {mean['oracle']:.3f}.",
        "",
        "Per class, noise tail minus the model's own thresholds (F-beta), with the 90 % interval from resampling "
        "test runs (paired):",
        "",
        "| source | " + " | ".join(SCORED) + " |",
        "|---|" + "---|" * len(SCORED),
    ]
    for name, row in result["test"].items():
        g = row["gap"]
        cells = " | ".join(f"{g[n]['gap']:+.2f} [{g[n]['lo']:+.2f}, {g[n]['hi']:+.2f}]" for n in SCORED)
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        "### With a few labels: recalibrated thresholds, with and without the rule on top",
        "",
        "Thresholds tuned on each source's standard test runs (2 labelled tomograms, the development runs above), "
        "applied to the same fresh runs; weighted F-beta.",
        "",
        "| source | " + " | ".join(f"tuned, tolerance {t:g} | + noise tail" for t in RECALIBRATION_TOLERANCES) + " |",
        "|---|" + "---|---|" * len(RECALIBRATION_TOLERANCES),
    ]
    for name, row in result["test"].items():
        r = row["recalibrated"]
        cells = " | ".join(f"{r[str(t)]['plain']:.3f} | {r[str(t)]['tail']:.3f}" for t in RECALIBRATION_TOLERANCES)
        lines.append(f"| {name} | {cells} |")
    easy = result["easy"]
    lines += [
        "",
        f"## Easy: {len(easy['runs'])} small `easy` tomograms ({EASY_SHAPE} voxels, 15 scored particles each)",
        "",
        "Seed 2026 is the one `tests/test_default_model.py` checks.",
        "",
        "| seed | model's thresholds | noise tail | tuned on the tomogram |",
        "|---|---|---|---|",
    ]
    for run, row in easy["runs"].items():
        lines.append(f"| {run.split('_')[1]} | {row['own']:.3f} | {row['tail']:.3f} | {row['tuned']:.3f} |")
    p = easy["pooled"]
    lines += [
        f"| **pooled** | {p['own']:.3f} | {p['tail']:.3f} | |",
        "",
        f"![development, test and easy]({meta['figure']})",
        "",
    ]
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    return md


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which source datasets")
    parser.add_argument("--preset", help="the reference runs' synthetic preset (default: the model's training preset)")
    parser.add_argument("--ref-runs", type=int, default=24)
    parser.add_argument("--ref-seed", type=int, default=8, help="a seed the model was not trained on")
    parser.add_argument(
        "--fit-regions", type=parse_region, nargs="+", default=[(5000.0, 50000.0), (10000.0, 50000.0),
                                                                (10000.0, 100000.0)],
        help="candidate fit regions TOP:BOTTOM in peaks per µm³",
    )  # fmt: skip
    parser.add_argument("--alpha", type=float, default=0.5, help="the density cap shown beside it (0: not shown)")
    parser.add_argument("--test-runs", type=int, default=16, help="fresh test runs per source")
    parser.add_argument("--easy-seeds", type=int, nargs="+", default=[2026, *range(2030, 2038)])
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "noise_tail")
    args = parser.parse_args(argv)
    if args.ref_runs < 1 or args.test_runs < 1 or args.alpha < 0:
        parser.error("--ref-runs and --test-runs must be >= 1 and --alpha >= 0")

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds
    from cryopoint.weights import resolve_checkpoint

    begin = time.perf_counter()
    b = BUDGETS[args.budget]
    ckpt = resolve_checkpoint(args.model)
    det = cryopoint.load(ckpt)
    floor = det.default_thresholds
    preset = args.preset or det.config.data.synth_preset
    if not preset:
        parser.error(f"{ckpt} was not trained on a synthetic preset: name the reference data's with --preset")
    key = lambda r: f"{r[0]:g}:{r[1]:g}"  # noqa: E731
    regions = {key(r): r for r in args.fit_regions}

    console.rule("development")
    dev_sets = development_sets(ckpt, det, b, preset, args.ref_runs, args.ref_seed, args.cache_dir)
    development = {
        name: {
            "particles": int(truth.particle_type.isin(SCORED).sum()),
            "own": score_cells(apply_thresholds(peaks, floor), truth)["score"],
            "tail": {k: score_cells(tail_picks(peaks, floor, vols, r), truth)["score"] for k, r in regions.items()},
        }
        for name, (peaks, truth, vols) in dev_sets.items()
    }
    dev_mean = {"own": float(np.mean([r["own"] for r in development.values()]))}
    dev_mean |= {k: float(np.mean([r["tail"][k] for r in development.values()])) for k in regions}
    selected = max(regions, key=lambda k: dev_mean[k])  # max() keeps the first of equals
    console.print(f"Selected fit region {selected} (development mean {dev_mean[selected]:.3f})")

    console.rule("test")
    density = args.alpha > 0 and bool(det.kept_density)
    test = {}
    for source in SOURCES:
        names, peaks, truth, vols = fresh_test_set(ckpt, b, source, args.test_runs, args.cache_dir)
        own = apply_thresholds(peaks, floor)
        tail = tail_picks(peaks, floor, vols, regions[selected])
        gap = bootstrap_fbeta_gap(per_run_counts(truth, tail, names), per_run_counts(truth, own, names))
        row = {
            "particles": int(truth.particle_type.isin(SCORED).sum()),
            "runs": len(names),
            "own": score_cells(own, truth),
            "tail": score_cells(tail, truth),
            "oracle": score_cells(apply_thresholds(peaks, tune_thresholds(truth, peaks).thresholds), truth),
            "gap": {n: {k: float(v[i]) for k, v in gap.items()} for i, n in enumerate(PARTICLE_NAMES) if n in SCORED},
        }
        if density:
            row["density"] = score_cells(adapted(peaks, floor, det.kept_density, vols, args.alpha), truth)
        dev_peaks, dev_truth, _ = dev_sets[source]
        row["recalibrated"] = {}
        for tol in RECALIBRATION_TOLERANCES:
            mine = tune_thresholds(dev_truth, dev_peaks, tolerance=tol).thresholds
            row["recalibrated"][str(tol)] = {
                "plain": score_cells(apply_thresholds(peaks, mine), truth)["score"],
                "tail": score_cells(tail_picks(peaks, mine, vols, regions[selected]), truth)["score"],
            }
        test[source] = row

    console.rule("easy")
    peaks, truth, vols = easy_peaks(det, args.easy_seeds)
    tail = tail_picks(peaks, floor, vols, regions[selected])
    own = apply_thresholds(peaks, floor)
    runs = {}
    for run in vols:
        t, p = truth[truth.experiment == run], peaks[peaks.experiment == run]
        runs[run] = {
            "own": score_cells(own[own.experiment == run], t)["score"],
            "tail": score_cells(tail[tail.experiment == run], t)["score"],
            "tuned": float(tune_thresholds(t, p).score_after),
        }
    pooled = {"own": score_cells(own, truth)["score"], "tail": score_cells(tail, truth)["score"]}
    easy = {"runs": runs, "pooled": pooled}

    figure = args.out.parent / f"{args.out.name}.png"
    meta = rule_meta("noise_tail", argv, args, ckpt, preset, b, begin, figure)
    meta |= {"sha256": sha256(ckpt), "fit_regions": list(regions), "alpha": args.alpha if density else 0.0}
    result = {
        "meta": meta,
        "thresholds": floor,
        "development": development,
        "development_mean": dev_mean,
        "selected": selected,
        "test": test,
        "easy": easy,
    }
    md = write_outputs(result, args.out, figure, write_figure, write_report)
    console.print(f"Wrote {md}")
    return md


if __name__ == "__main__":
    main()
