"""The shipped default model on the generalisation benchmark's sources, and on a full-size tomogram.

For each source of ``benchmarks/generalization.py`` (A, B, C: same cached datasets, same test runs) the
default model is scored zero-shot with its shipped thresholds and with thresholds tuned on the source's test
runs (ranking quality), beside the LoG blob baseline (thresholds tuned on the source's training runs). None
of these sources is in its training data (it saw only ``randomized`` runs, which draw from the same
generator code). Then one full 184 x 630 x 630 tomogram goes through ``cryopoint.detect`` on the CPU for
time and peak memory (``--no-full`` skips it)::

    python -m benchmarks.default_model                  # ~10 min on 2 cores
    python -m benchmarks.default_model --no-full

Writes ``benchmarks/results/default_model.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.bench_common import machine, run_in_child
from benchmarks.generalization import BUDGETS, SOURCES, blob_scores, predict, scores, source_root, split_names
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
console = Console()


def _full_size(checkpoint: str, queue) -> None:
    """Child process: one full-size `realistic` tomogram through detect with ``checkpoint``; seconds and peak
    RSS (GB)."""
    import cryopoint
    from cryopoint.metric import score
    from cryopoint.synth import get_preset, simulate_run

    params = get_preset("realistic")
    vol, truth = simulate_run((184, 630, 630), params, np.random.default_rng(0))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    picks = cryopoint.detect(vol, checkpoint, voxel_size=params.voxel_size, device="cpu")
    seconds = time.perf_counter() - start
    result = score(truth.assign(experiment="full"), picks.assign(experiment="full"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    queue.put({"seconds": seconds, "peak_gb": peak, "before_gb": base / 2**20, "score": result.score, "n": len(truth)})


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which cached source datasets")
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size timing")
    parser.add_argument("--cache-dir")
    parser.add_argument("--save-predictions", type=Path, metavar="DIR", help="write each source's peaks (all scores)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "default_model")
    args = parser.parse_args(argv)

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.io import read_truth
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
        truth = truth_all[truth_all.experiment.isin(test_runs)]
        start = time.perf_counter()
        preds = predict(ckpt, root, test_runs)
        seconds = (time.perf_counter() - start) / len(test_runs)
        if args.save_predictions:  # every peak with its score: other threshold rules can be scored without inference
            args.save_predictions.mkdir(parents=True, exist_ok=True)
            preds.to_csv(args.save_predictions / f"source_{source}.csv", index=False)
        rows[source] = {
            **scores(preds, truth, det.thresholds),
            "blob": blob_scores(root, train_runs, test_runs, truth_all),
            "counts": {n: int((truth.particle_type == n).sum()) for n in PARTICLE_NAMES},
            "seconds_per_tomogram": seconds,
        }
    full = None
    if not args.no_full:
        console.rule("full-size tomogram")
        full = run_in_child(_full_size, str(ckpt))  # the --model checkpoint, not whatever is shipped
    meta = {
        "command": "python -m benchmarks.default_model " + " ".join(argv or []),
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
        f"(sha256 `{meta['sha256'][:16]}…`). Test runs of {tuple(b.shape)} voxels per source, as in "
        "`generalization.md`; the model saw none of these sources in training (only "
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
    lines += ["", "Scored test particles per source: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + ".", ""]
    if full:
        lines += [
            "Full 184 x 630 x 630 `realistic` tomogram through `cryopoint.detect` on the CPU: "
            f"**{full['seconds']:.0f} s**, "
            f"peak resident memory {full['peak_gb']:.1f} GB (the simulated volume included; {full['before_gb']:.1f} GB "
            f"before detection); weighted F-beta {full['score']:.3f} over {full['n']} particles at the shipped "
            "thresholds.",
            "",
        ]
    md = args.out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    console.print(f"Wrote {md}")
    return md


if __name__ == "__main__":
    main()
