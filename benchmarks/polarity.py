"""How often the contrast-polarity check (:mod:`cryopoint.data.polarity`) is right, and what it costs.

Every tomogram is checked as it is (protein dark, as every generator here writes it) and inverted (protein
bright, as some pipelines write theirs). A verdict is right when it says ``dark`` for the first and ``bright``
for the second; ``unclear`` is a tomogram the check declines to judge (``detect`` then neither warns nor
inverts); a wrong verdict would make ``detect(polarity="auto")`` invert a good tomogram, or ``"check"`` warn
about one. Data: the 16-run test sets of sources A, B and C (``default_model --test-runs 16``), the 24
`randomized` runs of seed 8 (every knob of the training corpus drawn afresh) and 6 `realistic` runs, all from
our own simulator (what real data does is unmeasured here). Cost: the check on one full-size 184 x 630 x 630
tomogram against ``detect`` with the shipped model on the same tomogram, in the same run.

::

    python -m benchmarks.polarity            # ~3 min on 2 cores
    python -m benchmarks.polarity --no-full  # without the full-size timing

Writes ``benchmarks/results/polarity.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from benchmarks.bench_common import machine, run_in_child
from benchmarks.generalization import BUDGETS, SOURCES, source_root

REPO = Path(__file__).resolve().parents[1]
console = Console()


def datasets(cache_dir: str | None) -> dict[str, Path]:
    from cryopoint.data.cache import ensure_synthetic_dataset

    b = BUDGETS["cpu"]
    out = {f"source {s}": source_root(s, b, cache_dir, fresh_runs=16) for s in SOURCES}
    out["randomized (seed 8)"] = ensure_synthetic_dataset(
        "randomized", runs=24, shape=b.shape, seed=8, cache_dir=cache_dir
    )
    out["realistic"] = ensure_synthetic_dataset("realistic", runs=6, shape=(96, 320, 320), seed=0, cache_dir=cache_dir)
    return out


def check_dataset(root: Path) -> dict:
    """Score and verdict of every run of ``root``, as it is and inverted, and the seconds per check."""
    from cryopoint.data.polarity import estimate_polarity
    from cryopoint.io import list_runs, read_tomogram, tomogram_path

    rows, seconds = [], []
    for run in track(list_runs(root), description=root.name, console=console):
        tomo = read_tomogram(tomogram_path(root, run))
        start = time.perf_counter()
        as_is = estimate_polarity(tomo.data, tomo.voxel_size)
        seconds.append(time.perf_counter() - start)
        inverted = estimate_polarity(-tomo.data, tomo.voxel_size)
        rows.append({"run": run, "score": as_is.score, "as_is": as_is.polarity, "inverted": inverted.polarity,
                     "inverted_score": inverted.score})  # fmt: skip
    return {"runs": rows, "seconds_per_check": float(np.mean(seconds)), "shape": list(tomo.shape)}


def _full_size(queue) -> None:
    """Child process: one full-size `realistic` tomogram: the check's seconds, and detect's with the shipped model."""
    import cryopoint
    from cryopoint.data.polarity import estimate_polarity
    from cryopoint.synth import get_preset, simulate_run

    params = get_preset("realistic")
    vol, _ = simulate_run((184, 630, 630), params, np.random.default_rng(0))
    start = time.perf_counter()
    verdict = estimate_polarity(vol, params.voxel_size)
    check = time.perf_counter() - start
    model = cryopoint.load("default")
    start = time.perf_counter()
    cryopoint.detect(vol, model, voxel_size=params.voxel_size, device="cpu", polarity="dark")
    queue.put({"check_s": check, "detect_s": time.perf_counter() - start, "verdict": verdict.polarity,
               "score": verdict.score})  # fmt: skip


def summarise(result: dict) -> dict:
    out = {}
    for name, d in result.items():
        runs = d["runs"]
        scores = np.array([r["score"] for r in runs])
        out[name] = {
            "n": len(runs),
            "as_is": {v: sum(r["as_is"] == v for r in runs) for v in ("dark", "unclear", "bright")},
            "inverted": {v: sum(r["inverted"] == v for r in runs) for v in ("bright", "unclear", "dark")},
            "min": float(scores.min()),
            "median": float(np.median(scores)),
            "seconds_per_check": d["seconds_per_check"],
            "shape": d["shape"],
        }
    return out


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryopoint.data.polarity import MARGIN

    names = list(result)
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(names) + 1.6))
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        s = np.array([r["score"] for r in result[name]["runs"]])
        jitter = rng.uniform(-0.15, 0.15, len(s))
        ax.scatter(s, i + jitter, s=14, color="tab:blue", label="as simulated (protein dark)" if i == 0 else None)
        ax.scatter(-s, i + jitter, s=14, color="tab:orange", label="inverted (protein bright)" if i == 0 else None)
    ax.axvspan(-MARGIN, MARGIN, color="0.85", zorder=0, label=f"unclear (|score| ≤ {MARGIN})")
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("polarity score (positive: protein dark)")
    ax.set_title("Contrast-polarity check, one dot per tomogram")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(summary: dict, full: dict | None, meta: dict, out: Path) -> Path:
    from cryopoint.data.polarity import MARGIN
    from cryopoint.io.atomic import atomic_write_text

    lines = [
        "# Contrast-polarity check",
        "",
        f"`{meta['command'].strip()}` — {meta['date']}, {meta['machine']}. Verdict margin ±{MARGIN}. Every "
        "tomogram checked as simulated (protein dark) and inverted; all from cryopoint's own simulator.",
        "",
        "| data | tomograms | shape | as is: dark / unclear / bright | inverted: bright / unclear / dark | "
        "score min | score median | s per check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        a, v = s["as_is"], s["inverted"]
        lines.append(
            f"| {name} | {s['n']} | {' x '.join(map(str, s['shape']))} | {a['dark']} / {a['unclear']} / {a['bright']} "
            f"| {v['bright']} / {v['unclear']} / {v['dark']} | {s['min']:+.3f} | {s['median']:+.3f} "
            f"| {s['seconds_per_check']:.2f} |"
        )
    total = sum(s["n"] for s in summary.values())
    wrong = sum(s["as_is"]["bright"] + s["inverted"]["dark"] for s in summary.values())
    unclear = sum(s["as_is"]["unclear"] for s in summary.values())
    lines += [
        "",
        f"Wrong verdicts: {wrong} of {2 * total} checks; unclear: {unclear} of {total} tomograms (both ways: the "
        "score is odd under inversion). A wrong verdict is what would mislead `detect`; an unclear one leaves the "
        "tomogram as it is, silently.",
    ]
    if full:
        share = full["check_s"] / full["detect_s"]
        lines += [
            "",
            f"Full size (184 x 630 x 630, `realistic`): the check {full['check_s']:.1f} s, `detect` with the shipped "
            f"model {full['detect_s']:.1f} s on the same tomogram (the check adds {share:.1%}); "
            f"verdict `{full['verdict']}` ({full['score']:+.3f}).",
        ]
    lines += [
        "",
        "Caveat: every tomogram here comes from one simulator (several generation paths, particle models and "
        "looks). Real reconstructions add structure the simulator lacks (thick carbon, ice contamination, "
        "dense organelles); all of it is dark in correctly oriented data, which should help the check, but that "
        "is not measured here.",
        "",
        "![scores](polarity.png)",
    ]
    path = out.with_suffix(".md")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-full", action="store_true", help="skip the full-size timing")
    p.add_argument("--cache-dir")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "polarity")
    args = p.parse_args(argv)
    from cryopoint.io.atomic import atomic_path, atomic_write_text

    result = {name: check_dataset(root) for name, root in datasets(args.cache_dir).items()}
    full = None if args.no_full else run_in_child(_full_size)
    summary = summarise(result)
    meta = {
        "command": "python -m benchmarks.polarity " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        args.out.with_suffix(".json"), json.dumps({"meta": meta, "summary": summary, "full": full, "runs": result})
    )
    with atomic_path(args.out.with_suffix(".png")) as tmp:
        write_figure(result, tmp)
    path = write_report(summary, full, meta, args.out)
    console.print(path.read_text())
    return path


if __name__ == "__main__":
    main()
