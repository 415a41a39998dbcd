"""A model on fresh runs of its own training distribution: the pooled score, run by run, and what each run drew.

Validation during training scores a handful of held-out runs; with a corpus as wide as ``randomized`` (every
run draws its generation path, particle model, look, dose, B-factor, ...) a handful can be easy or hard by luck.
This benchmark simulates ``--runs`` new runs of the model's training preset under a seed it never saw and
reports the weighted F-beta at the model's own thresholds and tuned on these runs (ranking quality), the score
of every run beside the knobs that run drew, and how strongly each drawn knob tracks the run score (Spearman)::

    python -m benchmarks.in_distribution                       # the shipped model, 24 runs of seed 8
    python -m benchmarks.in_distribution --model runs/x/best.pt --set "keep=[shape_model]" shape_model=analytic

``--set`` pins simulator knobs (the ``make_synthetic --set`` syntax), for paired comparisons: the same seed
gives the same runs with only the pinned knob changed. Writes ``benchmarks/results/in_distribution.md``,
``.json`` and ``.png`` (run score against the knobs that track it most).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from benchmarks.bench_common import machine, own_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
console = Console()


def drawn_knobs(params) -> dict:
    """The scalar knobs of one run's drawn parameters (numbers and names; a drawn range ``(a, a)`` as ``a``)."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        if isinstance(v, (tuple, list)) and len(v) == 2 and v[0] == v[1] and isinstance(v[0], (int, float)):
            v = v[0]
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            out[f.name] = v
    return out


def evaluate(det, preset: str, runs: int, shape, seed: int, overrides: dict) -> dict:
    """Simulate the runs (those of ``make_synthetic --seed SEED --split train``), detect, score."""
    import cryopoint
    from cryopoint.metric import score
    from cryopoint.post.thresholds import tune_thresholds
    from cryopoint.synth import get_preset, run_names
    from cryopoint.synth.dataset import run_rng
    from cryopoint.synth.simulate import simulate_run

    params = get_preset(preset, **overrides)
    names = run_names(runs, seed, "train")
    truths, preds, knobs = [], [], {}
    with Progress(console=console) as progress:
        task = progress.add_task("runs", total=len(names))
        for name in names:
            if params.randomize:
                from cryopoint.synth.randomize import draw_run_params

                knobs[name] = drawn_knobs(draw_run_params(params, run_rng(seed, "train", name)))
            vol, truth = simulate_run(shape, params, run_rng(seed, "train", name))
            truths.append(truth.assign(experiment=name))
            preds.append(
                cryopoint.detect(vol, det, voxel_size=params.voxel_size, thresholds=0.0).assign(experiment=name)
            )
            progress.advance(task)
    truth, preds = pd.concat(truths, ignore_index=True), pd.concat(preds, ignore_index=True)
    own = own_picks(det, preds, {name: (shape, params.voxel_size) for name in names})
    pooled = score(truth, own)
    tuned = tune_thresholds(truth, preds)
    per_run = {}
    for name in names:
        t = truth[truth.experiment == name]
        per_run[name] = {"score": float(score(t, own[own.experiment == name]).score), "particles": len(t)}
    recall = {c: float(pooled.table.loc[c, "recall"]) for c in SCORED}
    return {
        "own": float(pooled.score),
        "tuned": float(tuned.score_after),
        "recall_own": recall,
        "counts": {c: int((truth.particle_type == c).sum()) for c in SCORED},
        "runs": per_run,
        "knobs": knobs,
        "thresholds": {k: float(v) for k, v in det.thresholds.items()},
    }


def knob_correlations(result: dict) -> list[tuple[str, float]]:
    """Spearman correlation of each numeric drawn knob with the run score, strongest first."""
    from scipy.stats import spearmanr

    if not result["knobs"]:
        return []
    df = pd.DataFrame(result["knobs"]).T
    score = pd.Series({r: v["score"] for r, v in result["runs"].items()})
    out = []
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any() or values.nunique() < 2 or score.nunique() < 2:
            continue
        out.append((col, float(spearmanr(values, score.loc[values.index]).statistic)))
    return sorted(out, key=lambda kv: -abs(kv[1]))


def write_report(result: dict, meta: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryopoint.io.atomic import atomic_path, atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    corr = knob_correlations(result)
    atomic_write_text(
        out.with_suffix(".json"), json.dumps({"meta": meta, "result": result, "spearman": corr}, indent=2)
    )
    runs = sorted(result["runs"].items(), key=lambda kv: kv[1]["score"])
    top = [k for k, _ in corr[:4]]
    if top:
        fig, axes = plt.subplots(1, len(top), figsize=(3.6 * len(top), 3.4), sharey=True, squeeze=False)
        for ax, (k, rho) in zip(axes[0], corr[:4]):
            xs = [result["knobs"][r][k] for r, _ in runs]
            ax.scatter(xs, [v["score"] for _, v in runs], s=18)
            if min(xs) > 0 and max(xs) / min(xs) > 100:  # drawn log-uniform (gain): spread it out
                ax.set_xscale("log")
            ax.set_xlabel(f"{k} (Spearman {rho:+.2f})")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("run weighted F-beta, own thresholds")
        fig.suptitle(f"{meta['model']}: {len(runs)} fresh `{meta['preset']}` runs (seed {meta['seed']})")
        fig.tight_layout()
        with atomic_path(out.with_suffix(".png")) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
    names = ["imaging", "shape_model", "denoiser", "snr", "dqe", "bfactor", "tilt_max"]
    lines = [
        f"# `{meta['model']}` on fresh runs of `{meta['preset']}`",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min. {len(runs)} runs of "
        f"{tuple(meta['shape'])} voxels, seed {meta['seed']} (`make_synthetic --seed {meta['seed']}` writes the same "
        f"runs), simulator overrides {meta['overrides'] or 'none'}.",
        "",
        f"Weighted F-beta over all runs: **{result['own']:.3f}** at the model's own thresholds, "
        f"**{result['tuned']:.3f}** with thresholds tuned on these runs (ranking; optimistic). Recall at own "
        "thresholds: "
        + ", ".join(f"{c} {result['recall_own'][c]:.2f} (of {result['counts'][c]})" for c in SCORED)
        + ".",
        "",
    ]
    if corr:
        lines += [
            "Knobs that track the run score most (Spearman over runs; with this few runs |rho| < ~0.4 is noise): "
            + ", ".join(f"{k} {rho:+.2f}" for k, rho in corr[:6])
            + ".",
            "",
            "![runs](" + out.with_suffix(".png").name + ")",
            "",
        ]
    header = ["run", "particles", "score (own thresholds)"] + (names if result["knobs"] else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r, v in runs:
        cells = [r, str(v["particles"]), f"{v['score']:.3f}"]
        if result["knobs"]:
            kn = result["knobs"][r]
            cells += [f"{kn[k]:.3g}" if isinstance(kn.get(k), float) else str(kn.get(k, "-")) for k in names]
        lines.append("| " + " | ".join(cells) + " |")
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines) + "\n")
    return md


def main(argv=None) -> int:
    from cryopoint.synth.params import parse_overrides

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="checkpoint, or 'default' (the shipped model)")
    p.add_argument("--preset", default=None, help="simulator preset (default: the model's training preset)")
    p.add_argument("--runs", type=int, default=24)
    p.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256), metavar=("Z", "Y", "X"))
    p.add_argument("--seed", type=int, default=8, help="a seed the model was not trained on")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="simulator overrides")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "in_distribution")
    args = p.parse_args(argv)
    import cryopoint

    overrides = parse_overrides(args.set)
    det = cryopoint.load(args.model)
    preset = args.preset or det.config.data.synth_preset
    if not preset:
        p.error(f"{args.model} was not trained on a simulator preset; name one with --preset.")
    t0 = time.time()
    result = evaluate(det, preset, args.runs, tuple(args.shape), args.seed, overrides)
    meta = {
        "command": "python -m benchmarks.in_distribution " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "minutes": (time.time() - t0) / 60,
        "model": Path(args.model).name if args.model != "default" else "default.pt",
        "preset": preset,
        "shape": list(args.shape),
        "seed": args.seed,
        "overrides": overrides,
    }
    md = write_report(result, meta, args.out)
    console.print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
