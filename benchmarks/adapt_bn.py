"""Per-tomogram BatchNorm adaptation (``infer.adapt_bn``): what it does to a model on data it never saw.

For each ``--weights`` value (the share of each tomogram's own BatchNorm statistics; 0 = off) the model detects
every peak of ``--test-runs`` fresh runs of each held-out source of ``benchmarks/generalization.py`` (A, B, C; none
in the shipped model's training data) and, with ``--full-tomograms N``, of N full-size `realistic` tomograms
(simulator seeds 0 .. N-1). Each set is scored three ways from the same peaks: as ``detect`` picks by default (the
model's thresholds, raised per tomogram where its config asks), with its thresholds alone, and with thresholds tuned
on the set itself (the ranking, an oracle). Seconds per tomogram are timed in the same run for every weight::

    python -m benchmarks.adapt_bn --seed-offset 16000 --weights 0 0.5 --full-tomograms 3
    python -m benchmarks.adapt_bn --predictions 0=DIR0 0.5=DIR1 ...   # peaks already computed (DIR/source_A.csv)

The model's thresholds were tuned at one weight (the model's own ``infer.adapt_bn``): the other weights' default
picks use thresholds tuned for other scores, which the ranking column does not depend on.

Writes ``benchmarks/results/adapt_bn.md``, ``.json`` and ``.png``.
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

from benchmarks.bench_common import machine, own_picks, run_in_child, score_cells
from cryopoint.particles import PARTICLE_NAMES

REPO = Path(__file__).resolve().parents[1]
console = Console()
FULL = "full"  # the set name of the full-size tomograms


def set_scores(detector, truth: pd.DataFrame, peaks: pd.DataFrame, geometry: dict) -> dict:
    """Weighted F-beta of one set's peaks: ``default`` (as ``detect`` picks, with per-class F-beta and recall),
    ``alone`` (the model's thresholds without per-tomogram rules) and ``ranking`` (thresholds tuned on the set)."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    return {
        "default": score_cells(own_picks(detector, peaks, geometry), truth),
        "alone": float(score(truth, apply_thresholds(peaks, detector.default_thresholds)).score),
        "ranking": float(tune_thresholds(truth, peaks).score_after),
        "particles": int(truth.particle_type.isin([n for n in PARTICLE_NAMES if n != "beta-amylase"]).sum()),
    }


def _detect_all(detector, tomograms) -> tuple[pd.DataFrame, list[float]]:
    """Every peak of each ``(name, Tomogram)`` and the seconds each took."""
    import cryopoint

    peaks, seconds = [], []
    for name, tomo in tomograms:
        start = time.perf_counter()
        peaks.append(cryopoint.detect(tomo, detector, thresholds=0.0, device="cpu").assign(experiment=name))
        seconds.append(time.perf_counter() - start)
    return pd.concat(peaks, ignore_index=True), seconds


def _full_child(checkpoint: str, weight: float, n: int, shape: tuple[int, int, int], queue) -> None:
    """Child process: the full-size tomograms of ``shape`` simulated (seeds 0 .. n-1) and detected at ``weight``."""
    import cryopoint
    from cryopoint.synth import get_preset, simulate_run
    from cryopoint.tomogram import Tomogram

    params = get_preset("realistic")
    det = cryopoint.load(checkpoint).with_adapt_bn(weight)
    truths, peaks, seconds = [], [], []
    for seed in range(n):
        vol, truth = simulate_run(shape, params, np.random.default_rng(seed))
        p, s = _detect_all(det, [(f"full_{seed}", Tomogram(vol, voxel_size=params.voxel_size))])
        truths.append(truth.assign(experiment=f"full_{seed}"))
        peaks.append(p)
        seconds += s
    queue.put({"truth": pd.concat(truths, ignore_index=True), "peaks": pd.concat(peaks), "seconds": seconds})


def _weight(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a weight is in [0, 1]; got {text}")
    return value


def main(argv: list[str] | None = None) -> Path:
    from benchmarks import default_model
    from benchmarks.generalization import BUDGETS, FRESH_SEED_OFFSET, SOURCES, run_geometry, source_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="which cached source datasets")
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir")
    parser.add_argument("--weights", type=_weight, nargs="+", default=[0.0, 0.5], metavar="W")
    parser.add_argument("--test-runs", type=int, default=16, metavar="N", help="fresh runs per source")
    parser.add_argument("--seed-offset", type=int, default=FRESH_SEED_OFFSET)
    parser.add_argument("--full-tomograms", type=int, default=0, metavar="N", help="full-size `realistic` ones")
    parser.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        metavar="W=DIR",
        help="peaks this model already gave at weight W on these sets (DIR/source_A.csv ..., DIR/source_full.csv)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adapt_bn")
    args = parser.parse_args(argv)
    given = {}
    for item in args.predictions:
        w, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"--predictions takes W=DIR; got {item!r}")
        given[_weight(w)] = Path(folder)
    if set(given) - set(args.weights):
        parser.error("--predictions names a weight that --weights does not")

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.io import list_runs, read_submission_csv, read_tomogram, read_truth, tomogram_path
    from cryopoint.synth import get_preset
    from cryopoint.weights import resolve_checkpoint

    FULL_SHAPE = default_model.FULL_SHAPE  # noqa: N806 - read at call time (a test makes it small)
    ckpt = resolve_checkpoint(args.model)
    base = cryopoint.load(ckpt)
    b = BUDGETS[args.budget]
    results: dict[str, dict[str, dict]] = {}
    timing: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    sets = list(SOURCES) + ([FULL] if args.full_tomograms else [])
    with Progress(console=console) as progress:
        task = progress.add_task("sets x weights", total=len(sets) * len(args.weights))
        for name in sets:
            results[name] = {}
            if name == FULL:
                truth = geometry = None
            else:
                root = source_root(name, b, args.cache_dir, fresh_runs=args.test_runs, fresh_offset=args.seed_offset)
                runs = sorted(list_runs(root), key=lambda n: int(n.rsplit("_", 1)[1]))
                truth, geometry = read_truth(root), run_geometry(root, runs)
            for w in args.weights:
                det = base.with_adapt_bn(w)
                seconds: list[float] = []
                if w in given:
                    peaks = read_submission_csv(given[w] / f"source_{name}.csv")
                elif name == FULL:
                    child = run_in_child(_full_child, str(ckpt), w, args.full_tomograms, tuple(FULL_SHAPE))
                    truth, peaks, seconds = child["truth"], child["peaks"], child["seconds"]
                else:
                    tomos = [(r, read_tomogram(tomogram_path(root, r))) for r in runs]
                    peaks, seconds = _detect_all(det, tomos)
                if name == FULL:
                    if truth is None:  # peaks given for this weight: simulate the truth alone
                        truth = full_truth(args.full_tomograms, tuple(FULL_SHAPE))
                    voxel = float(get_preset("realistic").voxel_size)
                    geometry = {f"full_{s}": (tuple(FULL_SHAPE), (voxel,) * 3) for s in range(args.full_tomograms)}
                results[name][str(w)] = set_scores(det, truth, peaks, geometry)
                if seconds:
                    timing.setdefault(name, {})[str(w)] = float(np.mean(seconds))
                progress.advance(task)
    minutes = (time.perf_counter() - start) / 60
    data = {
        "model": str(args.model),
        "sha256": sha256(ckpt),
        "model_adapt_bn": float(base.config.infer.adapt_bn),
        "weights": args.weights,
        "seed_offset": args.seed_offset,
        "test_runs": args.test_runs,
        "full_tomograms": args.full_tomograms,
        "budget": args.budget,
        "results": results,
        "seconds_per_tomogram": timing,
        "given": {str(k): str(v) for k, v in given.items()},
        "minutes": minutes,
        "machine": machine(),
        "command": "python -m benchmarks.adapt_bn " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    _figure(data, args.out.with_suffix(".png"))
    md = args.out.with_suffix(".md")
    md.write_text("\n".join(report_lines(data)) + "\n")
    console.print(f"Wrote {md}")
    return md


def full_truth(n: int, shape: tuple[int, int, int]) -> pd.DataFrame:
    """The particles of the full-size `realistic` tomograms of ``shape``, seeds 0 .. n-1 (simulated again)."""
    from cryopoint.synth import get_preset, simulate_run

    params = get_preset("realistic")
    return pd.concat(
        [simulate_run(shape, params, np.random.default_rng(s))[1].assign(experiment=f"full_{s}") for s in range(n)],
        ignore_index=True,
    )


def report_lines(data: dict) -> list[str]:
    """The markdown report: one row per set and weight, then the means over the sources."""
    ws = [str(w) for w in data["weights"]]
    lines = [
        "# Per-tomogram BatchNorm adaptation (`infer.adapt_bn`)",
        "",
        f"`{data['command']}`; model `{data['model']}` (sha256 `{data['sha256'][:16]}…`, its own "
        f"`infer.adapt_bn` {data['model_adapt_bn']}: its thresholds were tuned at that weight); {data['machine']}; "
        f"{data['minutes']:.1f} min.",
        "",
        f"Sets: {data['test_runs']} fresh runs per source at seed offset {data['seed_offset']} (budget "
        f"`{data['budget']}`)"
        + (
            f", and {data['full_tomograms']} full-size `realistic` tomograms (seeds 0-{data['full_tomograms'] - 1})"
            if data["full_tomograms"]
            else ""
        )  # fmt: skip
        + ". *default*: as `detect` picks (the model's thresholds, raised per tomogram where its config asks); "
        "*alone*: its thresholds without per-tomogram rules; *ranking*: thresholds tuned on the set itself (an "
        "oracle). Per-class F-beta at the default picks.",
        "",
    ]
    if data["given"]:
        lines += [f"Peaks read for weights {', '.join(data['given'])} (not computed in this run).", ""]
    head = "| set | particles | weight | default | alone | ranking | " + " | ".join(
        n for n in PARTICLE_NAMES if n != "beta-amylase"
    )
    lines += [head + " | s / tomogram |", "|" + "---|" * (head.count("|") + 1)]
    for name, per in data["results"].items():
        for w in ws:
            r = per[w]
            t = data["seconds_per_tomogram"].get(name, {}).get(w)
            classes = " | ".join(f"{r['default'][n]:.2f}" for n in PARTICLE_NAMES if n != "beta-amylase")
            secs = f"{t:.1f}" if t is not None else "-"
            lines.append(
                f"| {name} | {r['particles']} | {w} | {r['default']['score']:.3f} | {r['alone']:.3f} | "
                f"{r['ranking']:.3f} | {classes} | {secs} |"
            )
    sources = [s for s in data["results"] if s != FULL]
    lines += ["", "| mean over " + " / ".join(sources) + " | default | alone | ranking |", "|---|---|---|---|"]
    for w in ws:
        m = [np.mean([data["results"][s][w][k] if k != "default" else data["results"][s][w][k]["score"]
                      for s in sources]) for k in ("default", "alone", "ranking")]  # fmt: skip
        lines.append(f"| weight {w} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} |")
    return lines


def _figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(data["results"])
    ws = [str(w) for w in data["weights"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    width = 0.8 / len(ws)
    for ax, key in zip(axes, ("default", "ranking")):
        for i, w in enumerate(ws):
            vals = [data["results"][n][w][key]["score"] if key == "default" else data["results"][n][w][key]
                    for n in names]  # fmt: skip
            ax.bar(np.arange(len(names)) + i * width, vals, width, label=f"adapt_bn {w}")
        ax.set_xticks(np.arange(len(names)) + width * (len(ws) - 1) / 2, names)
        ax.set_title("as detect picks" if key == "default" else "ranking (thresholds tuned on the set)")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("weighted F-beta (β = 4)")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"BatchNorm statistics from each tomogram: {data['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
