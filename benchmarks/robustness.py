"""Robustness sweep: how a trained model's picks hold up when one thing about the tomogram changes.

A model trained on one simulator can lean on things another simulator (or a microscope) does differently:
how dark a complex is, its exact size and proportions, the missing wedge, crowding, noise. This benchmark
keeps everything else fixed and moves one knob at a time (``SHIFTS``), on the same seeds, then scores each
``--models`` checkpoint with **its own thresholds** (what a user without labels gets) and with thresholds
tuned on the shifted tomograms themselves (ranking quality, an oracle), beside the training-free LoG blob
detector (tuned on the same tomograms: an upper bound for it). Per class it reports recall at the model's
own thresholds, because a recall collapse of one class (say, the ribosome) is what a user notices first::

    python -m benchmarks.robustness --models shipped=default candidate=runs/candidate/best.pt

Base: the ``realistic`` preset with the ``mixed`` particle model (analytic shapes and subunit assemblies),
``--tomograms`` runs of ``--shape`` per shift. Writes ``benchmarks/results/robustness.md``, ``.json``, ``.png``.
A shift can lie inside a model's training ranges (the ``randomized_varied`` corpus draws particle size,
stretch and density; ``randomized`` draws tilt range, SNR and crowding): the report names the corpus each
model was trained on, so read a row as "robust to this knob", not "generalises to an unseen simulator".
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

from benchmarks.bench_common import machine, own_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
console = Console()

#: Density maps of real complexes, built from PDB atomic models (benchmarks/atomic_maps.py; README there).
MAPS = Path(__file__).resolve().parent / "data" / "particle_maps"

#: Base simulator settings of every shift (the ``realistic`` preset plus these).
BASE = {"shape_model": "mixed"}

#: One knob moved per row: SynthParams overrides on top of ``BASE`` and what they stand for.
SHIFTS: dict[str, tuple[dict, str]] = {
    "none": ({}, "the base: realistic preset, mixed particle models"),
    "darker x1.8": ({"particle_density": (1.8, 1.8)}, "every protein (particles and clutter) 1.8x darker"),
    "fainter x0.6": ({"particle_density": (0.6, 0.6)}, "every protein 0.6x as dark"),
    "ribosome x1.5": ({"class_density": {"ribosome": 1.5}}, "ribosomes alone 1.5x darker (RNA weighed as atoms do)"),
    "ribosome x2": ({"class_density": {"ribosome": 2.0}}, "ribosomes alone 2x darker"),
    "atomic ribosome": ({"particle_maps": {"ribosome": str(MAPS / "ribosome.npz")}}, "ribosomes from PDB 4V5D atoms"),
    "microtubules": (
        {"filaments_per_volume": 20.0, "microtubule_fraction": 1.0},
        "microtubules through the sample (20 per full volume), as in cells",
    ),
    "actin": ({"filaments_per_volume": 60.0, "microtubule_fraction": 0.0}, "actin filaments (60 per full volume)"),
    "atomic apo-ferritin": (
        {"particle_maps": {"apo-ferritin": str(MAPS / "apo-ferritin.npz")}},
        "apo-ferritins from PDB 4V1W atoms",
    ),
    "larger x1.15": ({"particle_scale": (1.15, 1.15)}, "labelled particles 15 % larger than the catalogue"),
    "smaller x0.87": ({"particle_scale": (0.87, 0.87)}, "labelled particles 13 % smaller"),
    "stretched": ({"particle_aspect": 0.2}, "each particle axis stretched by up to x1.22"),
    "no wedge": ({"tilt_max": 90.0, "tilt_step": 1.0}, "tilts to ±90°: no missing wedge"),
    "wedge ±35°": ({"tilt_max": 35.0}, "a huge missing wedge"),
    "crowded x3": ({"crowding": 3.0}, "three times the real runs' particle counts"),
    "crowded x6": ({"crowding": 6.0}, "six times the real runs' particle counts"),
    "crowded x12": ({"crowding": 12.0}, "twelve times: a packed sample"),
    "clean": ({"snr": 6.0, "clutter_per_particle": 0.2}, "high SNR, little clutter"),
    "noisy": ({"snr": 0.15}, "very low SNR"),
    # The base's SNR is 0.5 (the realistic preset's): these rows give the shape of the accuracy-noise curve.
    "snr 0.25": ({"snr": 0.25}, "half the base's signal-to-noise power ratio (0.5)"),
    "snr 1": ({"snr": 1.0}, "twice the base's signal-to-noise power ratio"),
    "snr 2": ({"snr": 2.0}, "four times the base's signal-to-noise power ratio"),
}


def shift_params(name: str, crowding: float | None = None):
    """The SynthParams of one shift (``BASE``, ``crowding`` if given, then the shift's overrides)."""
    from cryopoint.synth import get_preset

    base = dict(BASE, **({"crowding": crowding} if crowding is not None else {}))
    return get_preset("realistic", **{**base, **SHIFTS[name][0]})


def make_tomograms(name: str, n: int, shape: tuple[int, int, int], seed: int, crowding: float | None = None):
    """``n`` simulated tomograms of one shift (same seeds for every shift) and their truth table."""
    from cryopoint.synth.simulate import simulate_run

    params = shift_params(name, crowding)
    vols, truths = [], []
    for i in range(n):
        vol, truth = simulate_run(shape, params, np.random.default_rng(seed * 1000 + i))
        vols.append(vol)
        truths.append(truth.assign(experiment=f"t{i}"))
    return vols, pd.concat(truths, ignore_index=True), params.voxel_size


def cell(preds: pd.DataFrame, truth: pd.DataFrame, thresholds: dict | None) -> dict:
    """Weighted F-beta and per-class F-beta and recall at ``thresholds`` (None: tuned on ``truth``; ``{}``:
    ``preds`` are the picks already)."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    thr = tune_thresholds(truth, preds).thresholds if thresholds is None else thresholds
    res = score(truth, apply_thresholds(preds, thr))
    t = res.table
    out = {"score": float(res.score)}
    for n in SCORED:
        tp, fn = float(t.loc[n, "tp"]), float(t.loc[n, "fn"])
        out[n] = {"fbeta": float(t.loc[n, "fbeta"]), "recall": tp / (tp + fn) if tp + fn else float("nan")}
    return out


def corpus_of(det) -> str:
    data = det.config.data
    return f"{data.synth_preset} ({data.synth_runs} runs)" if not data.root else str(data.root)


def parse_models(given: list[str]) -> dict[str, str]:
    """``LABEL=CHECKPOINT`` or ``CHECKPOINT`` (its own label) -> ``{label: checkpoint}``."""
    out = {}
    for item in given:
        label, sep, path = item.partition("=")
        label, path = (label, path) if sep else (item, item)
        if label in out:
            raise SystemExit(f"--models: the label {label!r} is given twice; name them LABEL=CHECKPOINT.")
        out[label] = path
    return out


def run(models: dict[str, str], shifts: list[str], n: int, shape, seed: int, crowding: float | None = None) -> dict:
    import cryopoint
    from cryopoint.baselines.blob import detect_blobs

    dets = {label: cryopoint.load(path) for label, path in models.items()}
    results = {}
    with Progress(console=console) as progress:
        task = progress.add_task("shifts", total=len(shifts) * n * (len(models) + 1))
        for name in shifts:
            vols, truth, vs = make_tomograms(name, n, shape, seed, crowding)
            row = {"counts": {c: int((truth.particle_type == c).sum()) for c in SCORED}, "models": {}}
            for m, det in dets.items():
                preds = []
                for i, vol in enumerate(vols):
                    preds.append(cryopoint.detect(vol, det, voxel_size=vs, thresholds=0.0).assign(experiment=f"t{i}"))
                    progress.advance(task)
                preds = pd.concat(preds, ignore_index=True)
                own = own_picks(det, preds, {f"t{i}": (vol.shape, vs) for i, vol in enumerate(vols)})
                row["models"][m] = {"own": cell(own, truth, {}), "ranking": cell(preds, truth, None)}
            blobs = []
            for i, vol in enumerate(vols):
                blobs.append(detect_blobs(vol, vs, min_score=0.0).assign(experiment=f"t{i}"))
                progress.advance(task)
            row["blob"] = cell(pd.concat(blobs, ignore_index=True), truth, None)
            results[name] = row
    return results


def write_report(results: dict, meta: dict, out: Path) -> Path:
    from cryopoint.io.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "shifts": results}, indent=2))
    models = meta["models"]
    lines = [
        "# Robustness sweep: one knob at a time",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min. "
        f"{meta['tomograms']} simulated tomograms of {tuple(meta['shape'])} voxels per shift (same seeds for every "
        f"shift), base: `realistic` preset with {BASE}. Models: "
        + "; ".join(
            f"**{m}** (`{models[m]['file']}`, sha256 `{models[m]['sha256'][:12]}…`, trained on {models[m]['corpus']})"
            for m in models
        )
        + ".",
        "",
        "Weighted F-beta at each model's **own** thresholds / with thresholds tuned on the shifted tomograms "
        "(**ranking**, an oracle); blob (LoG) tuned on the same tomograms (its upper bound). Recall per class at "
        "the model's own thresholds in the second table.",
        "",
        "| shift | what changes | scored particles | "
        + " | ".join(f"{m}: own / ranking" for m in models)
        + " | blob (tuned) |",
        "|---|---|---|" + "---|" * len(models) + "---|",
    ]
    for name, row in results.items():
        cells = " | ".join(
            f"{row['models'][m]['own']['score']:.3f} / {row['models'][m]['ranking']['score']:.3f}" for m in models
        )
        lines.append(
            f"| {name} | {SHIFTS[name][1]} | {sum(row['counts'].values())} | {cells} | {row['blob']['score']:.3f} |"
        )
    lines += [
        "",
        "Recall at own thresholds per class (" + ", ".join(SCORED) + "), and blob's (tuned):",
        "",
        "| shift | " + " | ".join(models) + " | blob |",
        "|---|" + "---|" * (len(models) + 1),
    ]
    for name, row in results.items():

        def rec(c):
            return " / ".join("–" if np.isnan(c[n]["recall"]) else f"{c[n]['recall']:.2f}" for n in SCORED)

        lines.append(
            f"| {name} | " + " | ".join(rec(row["models"][m]["own"]) for m in models) + f" | {rec(row['blob'])} |"
        )
    counts = {n: sum(r["counts"][n] for r in results.values()) for n in SCORED}
    lines += [
        "",
        "Scored particles over all shifts: "
        + ", ".join(f"{n} {c}" for n, c in counts.items())
        + ". Per shift a class has a handful to a few dozen particles: one particle moves its recall by several "
        "points. A shift can lie inside a model's training ranges (see the corpus named above), so a row says "
        "how robust a model is to that knob, not how it does on a simulator it never saw.",
        "",
    ]
    if meta.get("notes"):
        lines += [meta["notes"], ""]
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    figure(results, models, out.with_suffix(".png"))
    return md


def figure(results: dict, models: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.8), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, title in ((axes[0], "own", "own thresholds"), (axes[1], "ranking", "thresholds tuned on the shift")):
        for k, m in enumerate(models):
            vals = [results[s]["models"][m][key]["score"] for s in names]
            ax.plot(vals, y + (k - (len(models) - 1) / 2) * 0.18, "o", color=colors[k % len(colors)], label=m)
        ax.plot([results[s]["blob"]["score"] for s in names], y, "x", color="grey", label="blob (tuned)")
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_xlabel("weighted F-beta (β = 4)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle("Robustness: one knob of the tomogram moved at a time")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    from cryopoint.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["default"], help="checkpoints as LABEL=PATH or PATH ('default' = shipped)"
    )
    parser.add_argument("--shifts", nargs="+", choices=list(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--tomograms", type=int, default=3, help="simulated tomograms per shift")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 256, 256], metavar=("Z", "Y", "X"))
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--crowding", type=float, help="base particle crowding (default: the preset's 1.0)")
    parser.add_argument("--notes", default="", help="a paragraph appended to the report (interpretation)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "robustness")
    args = parser.parse_args(argv)

    import cryopoint
    from cryopoint.checkpoint import sha256
    from cryopoint.weights import resolve_checkpoint

    start = time.perf_counter()
    given = parse_models(args.models)
    results = run(given, args.shifts, args.tomograms, tuple(args.shape), args.seed, args.crowding)
    models = {}
    for label, given_path in given.items():
        path = resolve_checkpoint(given_path)
        models[label] = {"file": path.name, "sha256": sha256(path), "corpus": corpus_of(cryopoint.load(path))}
    meta = {
        "command": ("python -m benchmarks.robustness " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
        "minutes": (time.perf_counter() - start) / 60,
        "tomograms": args.tomograms,
        "shape": list(args.shape),
        "seed": args.seed,
        "base": {**BASE, **({"crowding": args.crowding} if args.crowding is not None else {})},
        "shift_overrides": {
            s: {k: list(v) if isinstance(v, tuple) else v for k, v in SHIFTS[s][0].items()} for s in args.shifts
        },
        "models": models,
        "notes": args.notes,
    }
    md = write_report(results, meta, args.out)
    console.print(md.read_text())
    return md


if __name__ == "__main__":
    main()
