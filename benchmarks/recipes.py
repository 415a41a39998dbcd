"""Recipe ablation for generality: which training choices make a model find particles of generators it never saw?

Every recipe (the plain ``configs/generalize.yaml`` recipe, and each ``--variant``: a name and config
overrides) is trained on the same ``randomized`` corpus, at the same steps, per seed, as the shipped default
model is, and scored **zero-shot** on the test runs of the generalisation benchmark's three sources (A, B,
C: other generation paths, particle models and looks; ``benchmarks/generalization.py``, same cached data),
with the model's own thresholds (tuned on a held-out ``randomized`` run: what a user without labels gets;
argmax and the lean rule) and with thresholds tuned on the source's test runs (ranking quality, an
oracle). A variant is worth keeping only where it helps zero-shot, not just in-source::

    python -m benchmarks.recipes --steps 1000 \\
        --variant "hard negatives" data.hard_negative_fraction=0.15 \\
        --variant zoom data.augment.zoom=0.15

A variant can also change the training corpus: overrides named ``corpus.FIELD=VALUE`` are simulator fields
(:class:`~cryopoint.synth.SynthParams`) of its ``randomized`` corpus, and ``--corpus FIELD=VALUE...`` sets them
for every recipe. Holding one particle model out of the corpus makes source B (subunit assemblies) a source of
particle shapes no recipe saw, while A and C keep the analytic shapes::

    python -m benchmarks.recipes --seeds 0 1 --corpus "keep=[shape_model]" shape_model=analytic \
        --variant "varied particles" "corpus.particle_scale=[0.88,1.12]" corpus.particle_aspect=0.1 \
        "corpus.particle_density=[0.7,1.8]" --out benchmarks/results/held_out_shapes

Writes ``benchmarks/results/recipes.md``, ``.json`` and ``.png``. Finished trainings in ``--work`` are
reused, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.bench_common import add_variant_option, machine, parse_variants, slug
from benchmarks.generalization import (
    BUDGETS,
    SOURCES,
    blob_scores,
    lean_thresholds,
    predict,
    randomized_root,
    recipe,
    scores,
    source_root,
    split_names,
    train,
)
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
PLAIN = "plain"
#: The threshold settings reported, in order: (key in a scores() result, label).
SETTINGS = (("own", "own"), ("own_lean", "own, lean"), ("oracle", "tuned on H"))
console = Console()


def parse_corpus(items: list[str]) -> dict:
    """``FIELD=VALUE`` strings -> simulator overrides of the ``randomized`` corpus, checked before any training."""
    from cryopoint.synth import get_preset
    from cryopoint.synth.params import parse_overrides

    out = parse_overrides(items)
    get_preset("randomized", **out)  # bad values fail here, before any training
    return out


def split_corpus(overrides: list[str]) -> tuple[list[str], dict]:
    """A variant's overrides -> (engine config overrides, its ``corpus.`` simulator overrides)."""
    config = [o for o in overrides if not o.startswith("corpus.")]
    corpus = parse_corpus([o[len("corpus.") :] for o in overrides if o.startswith("corpus.")])
    return config, corpus


def corpus_root(b, cache_dir: str | None, overrides: dict) -> Path:
    """The ``randomized`` training corpus of a budget, with simulator overrides (none: the benchmark's own)."""
    if not overrides:
        return randomized_root(b, cache_dir)
    from cryopoint.data.cache import ensure_synthetic_dataset

    return ensure_synthetic_dataset(
        "randomized", runs=b.randomized_runs, shape=b.shape, seed=b.seed * 100 + 99, cache_dir=cache_dir,
        overrides=overrides,
    )  # fmt: skip


def mean_cell(cells: list[dict]) -> dict:
    """Seed average of score cells (``score`` and per-class F-beta)."""
    return {k: float(np.mean([c[k] for c in cells])) for k in cells[0]}


def summary_lines(results: dict, sources: list[str]) -> list[str]:
    """One line per variant: its zero-shot change against the plain recipe, per source and setting."""
    lines = []
    plain = results[PLAIN]
    for name, res in results.items():
        if name == PLAIN:
            continue
        for key, label in SETTINGS:
            diffs = {s: res["mean"][s][key]["score"] - plain["mean"][s][key]["score"] for s in sources}
            avg = float(np.mean(list(diffs.values())))
            lines.append(
                f"- **{name}** vs plain, {label} thresholds: "
                + ", ".join(f"{s} {d:+.3f}" for s, d in diffs.items())
                + f" (mean {avg:+.3f}; "
                + ("better on every source" if all(d > 0 for d in diffs.values()) else "not better everywhere")
                + ")."
            )
    return lines


def write_report(results: dict, meta: dict, out: Path) -> Path:
    """``out.md``, ``out.json`` and ``out.png`` (atomic). Returns the markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryopoint.io.atomic import atomic_path, atomic_write_text

    sources = meta["sources"]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "results": results}, indent=2) + "\n")

    fig, axes = plt.subplots(1, len(sources), figsize=(4.8 * len(sources), 4.2), squeeze=False, sharey=True)
    names = list(results)
    for ax, src in zip(axes[0], sources):
        for k, (key, label) in enumerate(SETTINGS[1:]):
            vals = [results[n]["mean"][src][key]["score"] for n in names]
            ax.bar(np.arange(len(names)) + 0.4 * k - 0.2, vals, width=0.38, label=label, color=("C0", "C7")[k])
            for i, v in enumerate(vals):
                ax.text(i + 0.4 * k - 0.2, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
        ax.axhline(meta["blob"][src]["score"], color="C2", linestyle="--", label="blob (tuned on H's training runs)")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"source {src} ({sum(meta['counts'][src][n] for n in SCORED)} scored test particles)")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("zero-shot weighted F-beta (mean over seeds)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Recipes trained on `randomized`, {meta['steps']} steps, seeds {meta['seeds']}", fontsize=10)
    fig.tight_layout()
    with atomic_path(out.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

    b = meta["budget"]
    lines = [
        "# Recipes for generality: trained on `randomized`, scored zero-shot on sources A, B, C",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['wall_seconds'] / 60:.0f} min for this "
        f"invocation ({len(meta['reused'])} trainings reused from the work folder).",
        "",
        f"Every recipe: `{b['config']}` with the overrides below, trained on the same {b['randomized_runs']} "
        f"`randomized` runs of {tuple(b['shape'])} voxels (one held out for its own thresholds), "
        f"{meta['steps']} steps of batch {b['batch_size']}, crop {tuple(b['crop'])}, seeds {meta['seeds']}. "
        f"Scored on each source's {b['test_runs']} test runs (the generalisation benchmark's data); no source is "
        "in the training data.",
        "",
        *[f"- **{n}**: " + (f"`{' '.join(o)}`" if o else "the recipe as it is") for n, o in meta["variants"].items()],
        *(
            ["", "Training corpora (simulator overrides of `randomized`; empty: the preset as it is):", ""]
            + [f"- **{n}**: `{json.dumps(c)}`" for n, c in meta["corpora"].items()]
            if any(meta.get("corpora", {}).values())
            else []
        ),
        "",
        "**Thresholds.** *own*: tuned on the held-out `randomized` run (argmax); *own, lean*: the same "
        "predictions, the lowest threshold within 0.05 F-beta of the best; *tuned on H*: tuned on the very "
        "test runs scored (an oracle: ranking quality only). Cells: mean over seeds.",
        "",
        "With this few test particles per class (counts below) one particle moves a class's F-beta by several "
        "points: read weighted differences under ~0.03 as noise.",
        "",
        "## Verdict",
        "",
        *summary_lines(results, sources),
        "",
        f"![recipes]({out.with_suffix('.png').name})",
        "",
    ]
    for src in sources:
        counts = meta["counts"][src]
        lines += [
            f"## Source {src}",
            "",
            "Test particles: " + ", ".join(f"{n} {counts[n]}" for n in SCORED) + ".",
            "",
            "| recipe | thresholds | weighted | " + " | ".join(SCORED) + " |",
            "|---|---|---|" + "---|" * len(SCORED),
        ]
        for name, res in results.items():
            for key, label in SETTINGS:
                cell = res["mean"][src][key]
                per_seed = res["per_seed"][src][key]
                spread = f" ({', '.join(f'{c:.3f}' for c in per_seed)})" if len(per_seed) > 1 else ""
                lines.append(
                    f"| {name} | {label} | **{cell['score']:.3f}**{spread} | "
                    + " | ".join(f"{cell[n]:.2f}" for n in SCORED)
                    + " |"
                )
        blob = meta["blob"][src]
        lines += [
            f"| blob (LoG) | tuned on H's training runs | **{blob['score']:.3f}** | "
            + " | ".join(f"{blob[n]:.2f}" for n in SCORED)
            + " |",
            "",
        ]
    lines += ["Training minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in meta["train_seconds"].items()) + ".", ""]
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines))
    return md


def main(argv: list[str] | None = None) -> Path:
    from benchmarks import generalization

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="data sizes (generalization's)")
    parser.add_argument("--steps", type=int, help="training steps (default: the budget's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_variant_option(parser, "the plain recipe is always trained")
    parser.add_argument(
        "--corpus", nargs="+", default=[], metavar="FIELD=VALUE",
        help="simulator overrides of every recipe's randomized corpus (a variant adds corpus.FIELD=VALUE)",
    )  # fmt: skip
    parser.add_argument("--sources", nargs="+", choices=sorted(SOURCES), default=sorted(SOURCES))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recipes")
    parser.add_argument("--work", type=Path, help="run folders (default runs/recipes-<budget>)")
    parser.add_argument("--cache-dir", help="synthetic dataset cache (default: cryopoint's cache)")
    args = parser.parse_args(argv)

    from cryopoint.checkpoint import load_checkpoint
    from cryopoint.data.cache import params_hash
    from cryopoint.io import list_runs, read_truth

    variants = {PLAIN: [], **parse_variants(parser, args.variant, reserved=(PLAIN,))}
    b = BUDGETS[args.budget]
    steps = args.steps or b.steps
    work = (args.work or REPO / "runs" / f"recipes-{args.budget}").absolute()
    generalization.REUSED.clear()
    begin = time.perf_counter()

    console.rule("[bold]data")
    roots = {s: source_root(s, b, args.cache_dir) for s in args.sources}
    tests = {s: split_names(roots[s], b)[1] for s in args.sources}
    truths = {s: read_truth(roots[s]) for s in args.sources}
    truths = {s: t[t.experiment.isin(tests[s])] for s, t in truths.items()}
    base_corpus = parse_corpus(args.corpus)
    split = {name: split_corpus(o) for name, o in variants.items()}
    corpora = {name: {**base_corpus, **corpus} for name, (_, corpus) in split.items()}
    schedule = [f"train.steps={steps}", f"train.val_every={steps}", f"train.warmup_steps={max(1, steps // 20)}"]

    results: dict[str, dict] = {}
    train_s: dict[str, float] = {}
    for name in variants:
        overrides = split[name][0]
        rand_root = corpus_root(b, args.cache_dir, corpora[name])
        rand_names = sorted(list_runs(rand_root), key=lambda n: int(n.rsplit("_", 1)[1]))
        per_seed: dict[str, dict[str, list]] = {s: {k: [] for k, _ in SETTINGS} for s in args.sources}
        cells: dict[str, dict[str, list]] = {s: {k: [] for k, _ in SETTINGS} for s in args.sources}
        for seed in args.seeds:
            tag = f"-{params_hash(corpora[name])[:8]}" if corpora[name] else ""  # never reuse another corpus's run
            run_name = f"{slug(name)}{tag}-seed{seed}"
            console.rule(f"[bold]{name}, seed {seed}")
            cfg = recipe(b, rand_root, rand_names, rand_names[-1:], work, run_name,
                         [*schedule, f"train.seed={seed}", *overrides])  # fmt: skip
            run_dir, train_s[run_name] = train(cfg)
            ckpt = run_dir / "best.pt"
            own, lean = load_checkpoint(ckpt)["thresholds"], lean_thresholds(run_dir, rand_root)
            for src in args.sources:
                res = scores(predict(ckpt, roots[src], tests[src]), truths[src], own, own_lean=lean)
                for key, _ in SETTINGS:
                    cells[src][key].append(res[key])
                    per_seed[src][key].append(res[key]["score"])
        mean = {s: {k: mean_cell(v) for k, v in by.items()} for s, by in cells.items()}
        results[name] = {"mean": mean, "per_seed": per_seed}

    console.rule("[bold]blob (LoG)")
    blob = {}
    for src in args.sources:
        train_names, test_names = split_names(roots[src], b)
        blob[src] = blob_scores(roots[src], train_names, test_names, read_truth(roots[src]))
    meta = {
        "command": "python -m benchmarks.recipes " + " ".join(argv if argv is not None else sys.argv[1:]),
        "budget_name": args.budget,
        "budget": dataclasses.asdict(b),
        "steps": steps,
        "seeds": list(args.seeds),
        "variants": variants,
        "corpora": corpora,
        "sources": list(args.sources),
        "counts": {s: {n: int((t.particle_type == n).sum()) for n in PARTICLE_NAMES} for s, t in truths.items()},
        "blob": blob,
        "train_seconds": train_s,
        "reused": list(generalization.REUSED),
        "wall_seconds": time.perf_counter() - begin,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
    }
    md = write_report(results, meta, args.out)
    console.print(f"Wrote {md}")
    for line in summary_lines(results, list(args.sources)):
        console.print(line)
    return md


if __name__ == "__main__":
    main()
