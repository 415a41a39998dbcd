"""Does ``tools/detect.py``'s flood note point at false positives? Measured on labelled tomograms it never saw.

``tools/detect.py`` names each run and class whose picks are at least ``FLOOD_FACTOR`` times denser than what
the model's thresholds keep on its reference data (``Detector.flooded``). The note is label-free, so it can be
wrong both ways: quiet where the picks are mostly false positives, or loud on a crowded sample. This benchmark
scores it where the truth is known: for every (run, class) of each set, the model's own picks, whether the
note names them, and their precision. A useful note names pairs of low precision and leaves the others alone.

Sets: 16 fresh runs of each generalisation source (A, B, C; the ``default_model --test-runs 16`` sets) and the
model's 24 reference runs (``randomized``, seed 8: by construction the picks there match the reference on
average, so the note should be rare)::

    python -m benchmarks.flood_note                       # the shipped model
    python -m benchmarks.flood_note --model cand.pt --out /tmp/flood_note

Writes ``benchmarks/results/flood_note.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from benchmarks.bench_common import machine, own_picks, per_run_counts
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
console = Console()


def pair_rows(detector, peaks: pd.DataFrame, truth: pd.DataFrame, geometry: dict) -> pd.DataFrame:
    """One row per run and scored class: the detector's own picks there (``picks``), true positives (``tp``),
    true particles (``n_true``), picks per µm³ over the reference (``ratio``) and whether the note names it
    (``flagged``). ``peaks``: every peak (``experiment`` = run); ``geometry``: ``{run: (shape, voxel_size)}``."""
    from cryopoint.post.adaptive import density_ratios, volume_um3

    picks = own_picks(detector, peaks, geometry)
    runs = list(geometry)
    counts = per_run_counts(truth, picks, runs)  # (runs, [tp, n_pred, n_true], classes)
    rows = []
    for i, run in enumerate(runs):
        mine = picks[picks.experiment == run]
        ratios = density_ratios(mine, detector.kept_density, volume_um3(*geometry[run]))
        flagged = detector.flooded(mine, *geometry[run])
        for name in SCORED:
            c = PARTICLE_NAMES.index(name)
            rows.append({
                "run": run, "class": name, "picks": int(counts[i, 1, c]), "tp": int(counts[i, 0, c]),
                "n_true": int(counts[i, 2, c]), "ratio": float(ratios.get(name, float("nan"))),
                "flagged": name in flagged,
            })  # fmt: skip
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame) -> dict:
    """Pairs named and not named by the note: how many, pooled precision, and the share of all false positives
    that sit in named pairs."""

    def precision(part: pd.DataFrame) -> float:
        return float(part.tp.sum() / part.picks.sum()) if part.picks.sum() else float("nan")

    named, rest = rows[rows.flagged], rows[~rows.flagged]
    fp = rows.picks - rows.tp
    return {
        "pairs": len(rows),
        "named": len(named),
        "precision_named": precision(named),
        "precision_rest": precision(rest),
        "fp_share_named": float(fp[rows.flagged].sum() / fp.sum()) if fp.sum() else float("nan"),
        "true_in_named": int(named.n_true.sum()),
        "named_classes": named["class"].value_counts().to_dict(),
    }


def write_report(result: dict, meta: dict, out: Path) -> Path:
    from cryopoint.io.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "result": result}, indent=2))
    lines = [
        "# Does the flood note point at false positives?",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}`.",
        "",
        f"The note (`tools/detect.py`, `Detector.flooded`) names a run's class when its picks at the model's own "
        f"thresholds are at least {meta['factor']:g} times the reference density and at least {meta['min_picks']} "
        "picks. Per set: (run, class) pairs over the scored classes, how many the note names, the pooled precision "
        "of the picks in named and in other pairs, the share of all false positives that sit in named pairs, and "
        "the true particles in named pairs.",
        "",
        "| set | runs | scored particles | pairs | named | precision, named | precision, not named | "
        "false positives in named pairs | true particles in named pairs | named classes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result.items():
        s = r["summary"]
        classes = ", ".join(f"{k} {v}" for k, v in s["named_classes"].items()) or "-"
        lines.append(
            f"| {name} | {r['runs']} | {r['particles']} | {s['pairs']} | {s['named']} | {s['precision_named']:.2f} | "
            f"{s['precision_rest']:.2f} | {100 * s['fp_share_named']:.0f} % | {s['true_in_named']} | {classes} |"
        )
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines) + "\n")
    return md


def main(argv: list[str] | None = None) -> Path:
    import cryopoint
    from benchmarks.generalization import BUDGETS, SOURCES, predict, run_geometry, source_root
    from cryopoint.data.cache import ensure_synthetic_dataset
    from cryopoint.io import list_runs, read_truth
    from cryopoint.post.adaptive import FLOOD_FACTOR, FLOOD_MIN_PICKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--test-runs", type=int, default=16, help="fresh runs per source")
    parser.add_argument("--ref-runs", type=int, default=24)
    parser.add_argument("--ref-seed", type=int, default=8, help="the model's reference runs (a seed it never saw)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "flood_note")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    detector = cryopoint.load(args.model)
    if not detector.kept_density:
        parser.error(f"{args.model} carries no reference density (kept_density): the note never speaks for it")
    b = BUDGETS["cpu"]
    roots = {s: source_root(s, b, args.cache_dir, fresh_runs=args.test_runs) for s in SOURCES}
    roots["reference (randomized)"] = ensure_synthetic_dataset(
        "randomized", runs=args.ref_runs, shape=b.shape, seed=args.ref_seed, cache_dir=args.cache_dir
    )
    result = {}
    for name, root in roots.items():
        runs = sorted(list_runs(root))
        console.print(f"{name}: {len(runs)} runs")
        truth = read_truth(root)
        truth = truth[truth.experiment.isin(runs)]
        rows = pair_rows(detector, predict(args.model, root, runs), truth, run_geometry(root, runs))
        scored = int(truth.particle_type.isin(SCORED).sum())
        result[name] = {"runs": len(runs), "particles": scored, "summary": summarize(rows),
                        "pairs": rows.to_dict(orient="records")}  # fmt: skip
    meta = {
        "command": "python -m benchmarks.flood_note " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "minutes": (time.perf_counter() - begin) / 60,
        "model": args.model,
        "factor": FLOOD_FACTOR,
        "min_picks": FLOOD_MIN_PICKS,
    }
    md = write_report(result, meta, args.out)
    console.print(md.read_text())
    return md


if __name__ == "__main__":
    main()
