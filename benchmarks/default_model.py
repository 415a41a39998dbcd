"""The shipped default model on the generalisation benchmark's sources, and on a full-size tomogram.

For each source of ``benchmarks/generalization.py`` (A, B, C: same cached datasets, same test runs) the
default model is scored zero-shot with its shipped thresholds and with thresholds tuned on the source's test
runs (ranking quality), beside the LoG blob baseline (thresholds tuned on the source's training runs). None
of these sources is in its training data (it saw only ``randomized`` runs, which draw from the same
generator code). Then full 184 x 630 x 630 `realistic` tomograms (one, or ``--full-tomograms N``) go through
``cryopoint.detect`` on the CPU for time, peak memory and F-beta at the shipped thresholds beside thresholds tuned
on those tomograms themselves (``--no-full`` skips them)::

    python -m benchmarks.default_model                  # ~10 min on 2 cores
    python -m benchmarks.default_model --no-full
    python -m benchmarks.default_model --full-tomograms 3   # three full-size tomograms, ~3 more minutes
    python -m benchmarks.default_model --full-tomograms 3 --full-first 300   # three others (seeds no decision used)
    python -m benchmarks.default_model --no-full --test-runs 16 --out benchmarks/results/default_model_16runs

The benchmark's test set is 2 runs per source: 4 beta-galactosidases on source A, so "above the blob
detector on every class" cannot be read from it. ``--test-runs N`` scores each source on N fresh runs
instead (same source settings, another seed; the blob's thresholds still come from the source's training
runs), and every run gets a per-class comparison with the blob detector with a 90 % interval from
resampling test runs (paired: the same draws for both).

Writes ``benchmarks/results/default_model.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.bench_common import bootstrap_fbeta_gap, machine, own_picks, per_run_counts, run_in_child, score_cells
from benchmarks.generalization import (
    BUDGETS,
    FRESH_SEED_OFFSET,
    SOURCES,
    blob_picks,
    blob_thresholds,
    predict,
    run_geometry,
    scores,
    source_root,
    split_names,
)
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
FULL_SHAPE = (184, 630, 630)
console = Console()


def vs_blob_lines(rows: dict) -> list[str]:
    """The per-class comparison with the blob detector: gap in F-beta, 90 % interval, true count."""
    lines = [
        "### Above the blob detector? (per class)",
        "",
        "F-beta at the model's shipped thresholds minus the blob detector's (thresholds tuned on the source's "
        "training runs), on the same test runs; in brackets the 90 % interval from resampling test runs (paired: "
        "the same draws for both), then the true count *n*. **Above** where the whole interval is above 0. "
        "With a few runs and a handful of particles the interval is wide: it says what the test set can tell.",
        "",
        "| source | " + " | ".join(SCORED) + " |",
        "|---|" + "---|" * len(SCORED),
    ]
    for source, row in rows.items():
        cells = []
        for n in SCORED:
            g = row["vs_blob"][n]
            mark = "**above**" if g["lo"] > 0 else ("below" if g["hi"] < 0 else "not shown")
            cells.append(f"{g['gap']:+.2f} [{g['lo']:+.2f}, {g['hi']:+.2f}] n={row['counts'][n]}, {mark}")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    runs = {len(r["test_runs"]) for r in rows.values()}
    lines += ["", f"Test runs per source: {', '.join(map(str, sorted(runs)))}.", ""]
    return lines


def peaks_and_picks(det, volume: np.ndarray, voxel_size: float):
    """One detect pass on the CPU: every peak with its score, and the picks ``cryopoint.detect`` keeps by
    default (the model's thresholds, raised per tomogram where its config asks), taken from those peaks."""
    import cryopoint
    from cryopoint.post.thresholds import apply_thresholds

    peaks = cryopoint.detect(volume, det, voxel_size=voxel_size, thresholds=0.0, device="cpu")
    return peaks, apply_thresholds(peaks, det.thresholds_for(peaks, volume.shape, voxel_size))


def _full_size(checkpoint: str, seed: int, shape: tuple[int, int, int], queue) -> None:
    """Child process: one `realistic` tomogram of ``shape`` (simulator seed ``seed``) through detect with
    ``checkpoint``: seconds and peak RSS (GB), the truth, every peak and the default picks."""
    import cryopoint
    from cryopoint.synth import get_preset, simulate_run

    params = get_preset("realistic")
    vol, truth = simulate_run(shape, params, np.random.default_rng(seed))
    det = cryopoint.load(checkpoint)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    peaks, picks = peaks_and_picks(det, vol, params.voxel_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    name = f"full_{seed}"
    queue.put(
        {
            "seconds": seconds,
            "peak_gb": peak,
            "before_gb": base / 2**20,
            "truth": truth.assign(experiment=name),
            "peaks": peaks.assign(experiment=name),
            "picks": picks.assign(experiment=name),
        }
    )


def full_size(
    checkpoint: str,
    tomograms: int,
    shape: tuple[int, int, int] = FULL_SHAPE,
    report: Path | None = None,
    first_seed: int = 0,
    save: Path | None = None,
) -> dict:
    """``tomograms`` full-size `realistic` tomograms (simulator seeds ``first_seed``, ``first_seed + 1``, ...:
    0, 1, ... is the usual set, another first seed a fresh one), each through detect in its own process: time
    and memory of the first, and pooled over all the weighted and per-class F-beta at the shipped thresholds
    (``own``) and at thresholds tuned on these tomograms themselves (``oracle``: ranking). With ``report``, an
    evaluation report there (:func:`cryopoint.viz.report.make_report`, thresholds tuned on these tomograms: the
    ranking's failures, with a gallery of misses and of the most confident false positives). With ``save``, the
    tomograms' truth, every peak and the default picks as ``full_truth.csv``, ``full_peaks.csv`` and
    ``full_picks.csv`` there (``experiment`` is ``full_<seed>``), so that sets of full-size tomograms can be pooled
    or rescored without inference."""
    import pandas as pd

    if tomograms < 1:
        raise ValueError(f"full-size tomograms must be at least 1, got {tomograms} (use --no-full to skip them)")
    if first_seed < 0:
        raise ValueError(f"the first full-size seed must be 0 or more, got {first_seed}")
    seeds = list(range(first_seed, first_seed + tomograms))
    runs = []
    for k, seed in enumerate(seeds):
        console.print(f"full-size tomogram {k + 1}/{tomograms} (simulator seed {seed})")
        runs.append(run_in_child(_full_size, checkpoint, seed, tuple(shape)))
    truth = pd.concat([r["truth"] for r in runs], ignore_index=True)
    peaks = pd.concat([r["peaks"] for r in runs], ignore_index=True)
    picks = pd.concat([r["picks"] for r in runs], ignore_index=True)
    if save is not None:
        from cryopoint.io.atomic import atomic_write_text

        Path(save).mkdir(parents=True, exist_ok=True)
        for name, frame in (("truth", truth), ("peaks", peaks), ("picks", picks)):
            atomic_write_text(Path(save) / f"full_{name}.csv", frame.to_csv(index=False))
    first = runs[0]
    own = score_cells(picks, truth)
    sources = _fp_sources(picks, seeds, shape)
    if report is not None:
        _full_size_report(peaks, truth, seeds, shape, Path(report))
    return {
        "seconds": first["seconds"],
        "peak_gb": first["peak_gb"],
        "before_gb": first["before_gb"],
        "tomograms": tomograms,
        "seeds": seeds,
        "shape": list(shape),
        "own": own,
        "oracle": scores(peaks, truth, None)["oracle"],
        "counts": {n: int((truth.particle_type == n).sum()) for n in PARTICLE_NAMES},
        "fp_sources": {n: {k: int(v) for k, v in sources.loc[n].items()} for n in PARTICLE_NAMES},
        "score": own["score"],
        "n": len(truth),
        "n_scored": int(truth.particle_type.isin(SCORED).sum()),
    }


def _fp_sources(picks, seeds: list[int], shape):
    """Where the default picks' false positives sit, summed over the full-size tomograms (their layouts replayed
    from the same seeds: :func:`cryopoint.synth.simulate.run_layout`, no imaging)."""
    from benchmarks.fp_sources import false_positive_sources
    from cryopoint.synth import get_preset
    from cryopoint.synth.simulate import run_layout

    params = get_preset("realistic")
    total = None
    for seed in seeds:
        layout, slab = run_layout(shape, params, np.random.default_rng(seed))
        counts = false_positive_sources(picks[picks.experiment == f"full_{seed}"], layout, slab)
        total = counts if total is None else total + counts
    return total


def _full_size_report(peaks, truth, seeds: list[int], shape, out: Path) -> Path:
    """The evaluation report of the full-size tomograms' peaks, the volumes simulated again (same seeds)."""
    from cryopoint.synth import get_preset, simulate_run
    from cryopoint.tomogram import Tomogram
    from cryopoint.viz.report import make_report

    params = get_preset("realistic")
    volumes = {}
    for seed in seeds:
        name = f"full_{seed}"
        volumes[name] = Tomogram(
            simulate_run(shape, params, np.random.default_rng(seed))[0], voxel_size=params.voxel_size, name=name
        )
    title = f"The default model on {len(seeds)} full-size `realistic` tomograms, thresholds tuned on them (ranking)"
    md = make_report(peaks, truth, out, tomograms=volumes, thresholds="tune", title=title)
    console.print(f"Wrote {md}")
    return md


def full_size_lines(full: dict) -> list[str]:
    """The full-size section of the report: time and memory, then shipped against tuned-on-themselves."""
    k = full["tomograms"]
    seeds = full["seeds"]
    what = (
        f"tomogram (simulator seed {seeds[0]})"
        if k == 1
        else f"tomograms (simulator seeds {seeds[0]}-{seeds[-1]}, pooled)"
    )
    lines = [
        f"### Full-size `realistic` {what}",
        "",
        f"{' x '.join(map(str, full['shape']))} voxels through `cryopoint.detect` on the CPU: "
        f"**{full['seconds']:.0f} s** for the first, peak resident memory {full['peak_gb']:.1f} GB (the simulated "
        f"volume included; {full['before_gb']:.1f} GB before detection). {full['n']} particles, {full['n_scored']} "
        "of them scored. Thresholds tuned on the same tomograms (ranking) say how much of the gap to a perfect score "
        "is the thresholds and how much the ranking.",
        "",
        "| setting | weighted | " + " | ".join(SCORED) + " |",
        "|---|---|" + "---|" * len(SCORED),
    ]
    for label, cell in (
        ("shipped thresholds", full["own"]),
        ("thresholds tuned on these tomograms (ranking)", full["oracle"]),
    ):
        lines.append(f"| {label} | **{cell['score']:.3f}** | " + " | ".join(f"{cell[n]:.2f}" for n in SCORED) + " |")
    lines += ["", "True particles: " + ", ".join(f"{n} {full['counts'][n]}" for n in SCORED) + ".", ""]
    if "fp_sources" in full:
        from benchmarks.fp_sources import CATEGORIES

        lines += [
            "Where the false positives of the shipped picks sit (the simulator's layout replayed: "
            "`benchmarks/fp_sources.py` defines each column; the counts add up to the metric's FP):",
            "",
            "| class | " + " | ".join(CATEGORIES) + " | all |",
            "|---|" + "---|" * (len(CATEGORIES) + 1),
        ]
        for n in SCORED:
            row = full["fp_sources"][n]
            lines.append(f"| {n} | " + " | ".join(str(row[c]) for c in CATEGORIES) + f" | {sum(row.values())} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which cached source datasets")
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size tomograms")
    parser.add_argument(
        "--full-tomograms",
        type=int,
        default=1,
        metavar="N",
        help="full-size tomograms to score (simulator seeds --full-first to --full-first + N - 1; about a minute each)",
    )
    parser.add_argument(
        "--full-first",
        type=int,
        default=0,
        metavar="SEED",
        help="simulator seed of the first full-size tomogram (default 0, the usual set; another value gives other "
        "full-size tomograms: to confirm a decision, seeds no decision has used; docs/models.md lists those used)",
    )
    parser.add_argument(
        "--full-report",
        type=Path,
        metavar="DIR",
        help="also write an evaluation report of the full-size tomograms there (failure gallery, confusion)",
    )
    parser.add_argument("--cache-dir")
    parser.add_argument(
        "--test-runs",
        type=int,
        default=0,
        metavar="N",
        help="score on N fresh runs per source (another seed) instead of the benchmark's 2 test runs",
    )
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=FRESH_SEED_OFFSET,
        help="seed offset of the fresh runs (another value gives another test set, e.g. to confirm a decision)",
    )
    parser.add_argument(
        "--save-predictions",
        type=Path,
        metavar="DIR",
        help="write each source's peaks (all scores), and the full-size tomograms' truth, peaks and picks",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "default_model")
    args = parser.parse_args(argv)
    if args.full_tomograms < 1:
        parser.error("--full-tomograms must be at least 1 (use --no-full to skip the full-size tomograms)")
    if args.full_first < 0:
        parser.error(f"--full-first must be 0 or more, got {args.full_first}")

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.io import list_runs, read_truth
    from cryopoint.post.thresholds import apply_thresholds
    from cryopoint.weights import resolve_checkpoint

    b = BUDGETS[args.budget]
    ckpt = resolve_checkpoint(args.model)
    det = cryopoint.load(ckpt)
    rows = {}
    for source in SOURCES:
        console.rule(f"source {source}")
        root = source_root(source, b, args.cache_dir)
        train_runs, test_runs = split_names(root, b)
        truth_all = read_truth(root)
        test_root = root
        if args.test_runs > 0:
            test_root = source_root(source, b, args.cache_dir, fresh_runs=args.test_runs, fresh_offset=args.seed_offset)
            test_runs = sorted(list_runs(test_root), key=lambda n: int(n.rsplit("_", 1)[1]))
            truth = read_truth(test_root)
        else:
            truth = truth_all[truth_all.experiment.isin(test_runs)]
        start = time.perf_counter()
        preds = predict(ckpt, test_root, test_runs)
        seconds = (time.perf_counter() - start) / len(test_runs)
        if args.save_predictions:  # every peak with its score: other threshold rules can be scored without inference
            args.save_predictions.mkdir(parents=True, exist_ok=True)
            preds.to_csv(args.save_predictions / f"source_{source}.csv", index=False)
        blob_thr = blob_thresholds(root, train_runs, truth_all)
        blobs = apply_thresholds(blob_picks(test_root, test_runs), blob_thr)
        own = own_picks(det, preds, run_geometry(test_root, test_runs))  # as detect keeps them (adaptive or not)
        gap = bootstrap_fbeta_gap(per_run_counts(truth, own, test_runs), per_run_counts(truth, blobs, test_runs))
        rows[source] = {
            **scores(preds, truth, None),  # thresholds tuned on the test runs (oracle)
            "own": score_cells(own, truth),
            "blob": score_cells(blobs, truth),
            "vs_blob": {n: {k: float(v[i]) for k, v in gap.items()} for i, n in enumerate(PARTICLE_NAMES)},
            "test_runs": list(test_runs),
            "counts": {n: int((truth.particle_type == n).sum()) for n in PARTICLE_NAMES},
            "seconds_per_tomogram": seconds,
        }
    full = None
    if not args.no_full:
        console.rule("full-size tomogram")
        # the --model checkpoint, not whatever is shipped
        full = full_size(
            str(ckpt),
            args.full_tomograms,
            report=args.full_report,
            first_seed=args.full_first,
            save=args.save_predictions,
        )
    meta = {
        "command": "python -m benchmarks.default_model " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": str(ckpt),
        "sha256": sha256(ckpt),
        "budget": args.budget,
        "shape": list(b.shape),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
        "thresholds": det.thresholds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from cryopoint.io.atomic import atomic_write_text

    atomic_write_text(
        args.out.with_suffix(".json"), json.dumps({"meta": meta, "sources": rows, "full": full}, indent=2)
    )
    lines = [
        "# The shipped default model on the generalisation sources"
        if args.model == "default"
        else f"# A default-model candidate (`{ckpt.name}`) on the generalisation sources",
        "",
        f"`{meta['command'].strip()}` — {meta['date']}, {meta['machine']}. Checkpoint `{ckpt.name}` "
        f"(sha256 `{meta['sha256'][:16]}…`). "
        + (
            f"Test set: {args.test_runs} fresh runs of {tuple(b.shape)} voxels per source (the source's settings, "
            f"seed offset {args.seed_offset}: none of them is a run of `generalization.md`)"
            if args.test_runs > 0
            else f"Test runs of {tuple(b.shape)} voxels per source, as in `generalization.md`"
        )
        + "; the model saw none of these sources in training (only "
        f"`{det.config.data.synth_preset}` runs).",
        "",
        "| source | setting | weighted | " + " | ".join(SCORED) + " |",
        "|---|---|---|" + "---|" * len(SCORED),
    ]
    for source, row in rows.items():
        for label, cell in (
            ("shipped thresholds", row.get("own")),
            ("thresholds tuned on the source's test runs (ranking)", row["oracle"]),
            ("blob (LoG), tuned on the source's training runs", row["blob"]),
        ):
            per_class = " | ".join(f"{cell[n]:.2f}" for n in SCORED)
            lines.append(f"| {source} | {label} | **{cell['score']:.3f}** | {per_class} |")
    counts = {s: sum(r["counts"][n] for n in SCORED) for s, r in rows.items()}
    post = det.config.post
    lines += [
        "",
        "Scored test particles per source: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + ".",
        "",
        "Shipped thresholds: as `cryopoint.detect` applies them by default, the model's tuned thresholds raised per "
        f"tomogram where its config asks (`post.noise_tail: {str(post.noise_tail).lower()}`, "
        f"`post.adaptive_alpha: {post.adaptive_alpha:g}`).",
        "",
    ]
    lines += vs_blob_lines(rows)
    if full:
        lines += full_size_lines(full)
    md = args.out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    console.print(f"Wrote {md}")
    return md


if __name__ == "__main__":
    main()
