"""Leave-one-source-out benchmark: does a model learn particles, or the generator it was trained on?

Three synthetic *sources* that differ in generation path, particle model and look:

* **A**: Fourier-space imaging shortcut, analytic shapes, the Fourier path's Wiener "denoised" look
  (today's ``realistic`` preset);
* **B**: real-space tilt series + WBP, symmetric subunit-assembly shapes (clutter from the same generator),
  total-variation denoised look;
* **C**: real-space tilt series + WBP, analytic shapes, CTF-deconvolved (Wiener) and low-passed look.

For each held-out source H the same recipe, at the same budget, is trained (i) on H's own training runs
(the in-source score), (ii) on the other two sources pooled (zero-shot), and once (iii) on the
``randomized`` preset (shared by every H). Each is scored on H's test runs with the exact metric:
with the model's own thresholds (tuned on its own validation runs, never on H), with thresholds tuned on
H's test runs (ranking quality, an oracle), beside the LoG blob baseline (thresholds tuned on H's training
runs). A fine-tuning curve on H's training runs compares the randomized model fine-tuned
(``train.init_from``) with training from scratch at 100 / 300 / 600 steps (one schedule of the longest
length each, evaluated at those steps, thresholds tuned on H's test runs for both arms alike)::

    python -m benchmarks.generalization                 # --budget cpu: ~55 min on 2 cores
    python -m benchmarks.generalization --budget gpu    # full-size tomograms, long schedules
    python -m benchmarks.generalization --budget smoke  # a minute; what the test runs

Writes ``benchmarks/results/generalization.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from benchmarks.bench_common import machine
from cryopoint.particles import PARTICLE_NAMES

REPO = Path(__file__).resolve().parents[1]
console = Console()
#: Trainings found finished in the work folder and reused by this invocation (their seconds are the first run's).
REUSED: list[str] = []

#: The sources: SynthParams overrides on top of the ``realistic`` preset, and a description.
SOURCES: dict[str, tuple[dict, str]] = {
    "A": ({"imaging": "fourier", "shape_model": "analytic"}, "Fourier path, analytic shapes, Fourier Wiener look"),
    "B": (
        {"imaging": "realspace", "shape_model": "assembly", "denoiser": "tv"},
        "real-space tilt series + WBP, subunit assemblies, TV-denoised look",
    ),
    "C": (
        {"imaging": "realspace", "shape_model": "analytic", "denoiser": "wiener"},
        "real-space tilt series + WBP, analytic shapes, CTF-deconvolved + low-pass look",
    ),
}


@dataclass(frozen=True)
class Budget:
    """Everything that sets the benchmark's cost; every network gets the same recipe, crop and batch."""

    train_runs: int  # per source
    test_runs: int  # per source
    shape: tuple[int, int, int]
    crowding: float
    steps: int  # main trainings (in-source, leave-one-out, randomized)
    curve: tuple[int, ...]  # fine-tuning curve steps (the last is the schedule length)
    randomized_runs: int
    crop: tuple[int, int, int]
    batch_size: int
    roi: tuple[int, int, int]
    config: str
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    encoder: str = ""
    seed: int = 0


BUDGETS = {
    "smoke": Budget(2, 1, (32, 96, 96), 2.0, 2, (1, 2), 2, (16, 32, 32), 1, (32, 96, 96), "configs/generalize.yaml"),
    # 10 trainings of 600 steps (randomized; per source in-source, fine-tuned, left out) on 2 cores.
    "cpu": Budget(
        4, 2, (96, 256, 256), 1.5, 600, (100, 300, 600), 8, (32, 64, 64), 2, (96, 256, 256), "configs/generalize.yaml"
    ),
    "gpu": Budget(
        6,
        2,
        (184, 630, 630),
        1.0,
        8000,
        (500, 1500, 3000),
        24,
        (32, 128, 128),
        8,
        (96, 256, 256),
        "configs/generalize.yaml",
        encoder="resnet34",
    ),
}


#: Seed offset of a source's fresh test set (``source_root(..., fresh_runs=N)``): far from every budget's seeds.
FRESH_SEED_OFFSET = 5000


def source_root(
    name: str, b: Budget, cache_dir: str | None, fresh_runs: int = 0, fresh_offset: int = FRESH_SEED_OFFSET
) -> Path:
    """Generate (once, cached) a source's dataset: ``train_runs + test_runs`` runs of the train split.

    With ``fresh_runs`` > 0, instead a larger test set of that many new runs of the same source (same
    settings, another seed: run names and draws disjoint from the benchmark's runs), for counts of the rare
    classes that the benchmark's few test runs cannot give. Another ``fresh_offset`` gives another such set
    (a confirmation set for a decision, when the usual one has been looked at too often).
    """
    from cryopoint.data.cache import ensure_synthetic_dataset

    overrides = {**SOURCES[name][0], "crowding": b.crowding}
    seed = b.seed * 100 + 10 * (1 + list(SOURCES).index(name))  # distinct run names per source
    runs = b.train_runs + b.test_runs
    if fresh_runs > 0:
        seed, runs = seed + fresh_offset, fresh_runs
    return ensure_synthetic_dataset(
        "realistic", runs=runs, shape=b.shape, seed=seed, cache_dir=cache_dir, overrides=overrides
    )


def randomized_root(b: Budget, cache_dir: str | None) -> Path:
    from cryopoint.data.cache import ensure_synthetic_dataset

    return ensure_synthetic_dataset(
        "randomized", runs=b.randomized_runs, shape=b.shape, seed=b.seed * 100 + 99, cache_dir=cache_dir
    )


def split_names(root: Path, b: Budget) -> tuple[list[str], list[str]]:
    """(training runs, test runs) of a source: the last ``test_runs`` run names are the test runs."""
    from cryopoint.io import list_runs

    names = sorted(list_runs(root), key=lambda n: int(n.rsplit("_", 1)[1]))
    return names[: b.train_runs], names[b.train_runs :]


def pooled_root(parts: list[tuple[Path, list[str]]], dest: Path) -> Path:
    """A dataset root whose runs are symbolic links to runs of other roots (nothing copied)."""
    for root, names in parts:
        for name in names:
            for sub in ("static", "overlay"):
                link = dest / "train" / sub / "ExperimentRuns" / name
                if not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(root / "train" / sub / "ExperimentRuns" / name, target_is_directory=True)
    return dest


def recipe(b: Budget, root: Path, runs: list[str], val: list[str], work: Path, name: str, extra=()):
    """The engine config of one training: the budget's base recipe with its shared overrides."""
    from cryopoint.config import load_config

    shared = [
        f"data.root={root}",
        f"data.runs={json.dumps(runs)}",
        f"data.val_runs={json.dumps(val)}",
        "data.n_folds=2",  # unused: data.val_runs decides the split
        f"data.crop={list(b.crop)}",
        f"train.steps={b.steps}",
        f"train.batch_size={b.batch_size}",
        f"train.warmup_steps={max(1, b.steps // 20)}",
        f"train.lr={b.lr}",
        f"train.val_every={b.steps}",
        f"train.out_dir={work}",
        f"train.name={name}",
        f"train.seed={b.seed}",
        f"infer.roi={list(b.roi)}",
        "post.min_score=0.01",
        "post.threshold_tolerance=0",  # checkpoints keep argmax thresholds; the lean rule is applied beside them
    ]
    if b.encoder:
        shared.append(f"model.encoder={b.encoder}")
    return load_config(REPO / b.config, [*shared, *extra])


def train(cfg) -> tuple[Path, float]:
    """Train with the engine; a finished run of the same name is reused, an interrupted one resumed.

    Returns:
        ``(run folder, seconds)``; the seconds of a resumed run count only its last part.
    """
    from cryopoint.engine import train as engine_train

    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    if (run_dir / "best.pt").is_file() and (run_dir / "done").is_file():
        REUSED.append(cfg.train.name)
        return run_dir, json.loads((run_dir / "done").read_text())["seconds"]
    if (run_dir / "last.pt").is_file():  # interrupted: continue where it stopped
        cfg.train.resume = True
    start = time.perf_counter()
    run_dir = Path(engine_train(cfg))
    seconds = time.perf_counter() - start
    (run_dir / "done").write_text(json.dumps({"seconds": seconds}) + "\n")
    return run_dir, seconds


def predict(ckpt: Path, root: Path, names: list[str]) -> pd.DataFrame:
    """Every peak (with its score) of a checkpoint on ``names``, through ``cryopoint.detect``."""
    import cryopoint
    from cryopoint.io import tomogram_path

    det = cryopoint.load(ckpt)
    picks = [cryopoint.detect(tomogram_path(root, n), det, thresholds=0.0).assign(experiment=n) for n in names]
    return pd.concat(picks, ignore_index=True)


def run_geometry(root: Path, names: list[str]) -> dict[str, tuple[tuple[int, ...], tuple[float, ...]]]:
    """``{run: (shape, voxel_size)}`` of each run's tomogram (for per-tomogram thresholds)."""
    from cryopoint.io import read_tomogram, tomogram_path

    out = {}
    for n in names:
        tomo = read_tomogram(tomogram_path(root, n))
        out[n] = (tuple(tomo.shape), tuple(tomo.voxel_size))
    return out


#: The lean threshold rule (``post.threshold_tolerance``) reported beside the argmax one, fixed before the run.
LEAN_TOLERANCE = 0.05


def lean_thresholds(run_dir: Path, root: Path) -> dict[str, float]:
    """A run's thresholds re-tuned from its own validation predictions with the lean rule (never on H)."""
    from cryopoint.io import read_submission_csv, read_truth
    from cryopoint.post.thresholds import tune_thresholds

    oof = read_submission_csv(run_dir / "oof_predictions.csv")
    truth = read_truth(root)
    truth = truth[truth.experiment.isin(set(oof.experiment))]
    return tune_thresholds(truth, oof, tolerance=LEAN_TOLERANCE).thresholds


def scores(preds: pd.DataFrame, truth: pd.DataFrame, own: dict[str, float] | None, **more: dict) -> dict:
    """Weighted and per-class F-beta with the model's own thresholds (``own`` and any ``more`` named sets) and
    with thresholds tuned on ``truth`` (``oracle``)."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    out = {}
    oracle = tune_thresholds(truth, preds)
    for label, thr in (("own", own), *more.items(), ("oracle", oracle.thresholds)):
        if thr is None:
            continue
        res = score(truth, apply_thresholds(preds, thr))
        out[label] = {"score": float(res.score), **{n: float(res.table.loc[n, "fbeta"]) for n in PARTICLE_NAMES}}
    return out


def blob_picks(root: Path, names: list[str]) -> pd.DataFrame:
    """Every LoG blob (with its score) on the runs ``names`` of ``root``."""
    from cryopoint.baselines.blob import detect_blobs
    from cryopoint.io import read_tomogram, tomogram_path

    out = []
    for n in names:
        tomo = read_tomogram(tomogram_path(root, n))
        out.append(detect_blobs(np.asarray(tomo.data), tomo.voxel_size, min_score=0.0).assign(experiment=n))
    return pd.concat(out, ignore_index=True)


def blob_thresholds(root: Path, train_names: list[str], truth: pd.DataFrame) -> dict[str, float]:
    """The LoG blob baseline's per-class thresholds, tuned on the source's training runs."""
    from cryopoint.post.thresholds import tune_thresholds

    return tune_thresholds(truth[truth.experiment.isin(train_names)], blob_picks(root, train_names)).thresholds


def blob_scores(root: Path, train_names: list[str], test_names: list[str], truth: pd.DataFrame) -> dict:
    """LoG blob baseline: thresholds tuned on the source's training runs, scored on its test runs."""
    tuned = blob_thresholds(root, train_names, truth)
    return scores(blob_picks(root, test_names), truth[truth.experiment.isin(test_names)], tuned)["own"]


def val_records(run_dir: Path) -> dict[int, dict]:
    """The validation records of a run by step (``metrics.jsonl``; thresholds tuned on the validation runs)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {int(r["step"]): r for r in records if r.get("type") == "val"}


def curve(run_dir: Path, steps: tuple[int, ...]) -> dict[int, float]:
    """Validation score at the given steps."""
    vals = val_records(run_dir)
    return {s: float(vals[s]["score"]) for s in steps if s in vals}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generalization")
    parser.add_argument("--work", type=Path, help="run folders (default runs/generalization-<budget>)")
    parser.add_argument("--cache-dir", help="synthetic dataset cache (default: cryopoint's cache)")
    parser.add_argument("--sources", nargs="+", choices=sorted(SOURCES), default=sorted(SOURCES))
    args = parser.parse_args(argv)

    from cryopoint.checkpoint import load_checkpoint
    from cryopoint.io import list_runs, read_truth

    b = BUDGETS[args.budget]
    work = args.work or REPO / "runs" / f"generalization-{args.budget}"
    begin = time.perf_counter()
    console.rule("[bold]data")
    roots = {s: source_root(s, b, args.cache_dir) for s in SOURCES}
    splits = {s: split_names(roots[s], b) for s in SOURCES}
    truths = {s: read_truth(roots[s]) for s in SOURCES}
    rand_root = randomized_root(b, args.cache_dir)
    rand_names = sorted(list_runs(rand_root), key=lambda n: int(n.rsplit("_", 1)[1]))
    train_s: dict[str, float] = {}

    console.rule("[bold]randomized")
    rand_cfg = recipe(b, rand_root, rand_names, rand_names[-1:], work, "randomized")
    rand_dir, train_s["randomized"] = train(rand_cfg)
    rand_ckpt = rand_dir / "best.pt"

    results: dict[str, dict] = {}
    last = b.curve[-1]
    curve_extra = [
        f"train.steps={last}",
        "train.val_every=" + str(min(b.curve)),
        f"train.warmup_steps={max(1, last // 20)}",
    ]
    for held in args.sources:
        console.rule(f"[bold]held-out source {held}")
        tr, te = splits[held]
        truth = truths[held][truths[held].experiment.isin(te)]
        row: dict = {"counts": {n: int((truth.particle_type == n).sum()) for n in PARTICLE_NAMES}}
        # (iv) in-source: H's training runs, validated on H's test runs every curve step (the scratch arm)
        cfg = recipe(b, roots[held], tr + te, te, work, f"insource-{held}", curve_extra)
        ins_dir, train_s[f"insource-{held}"] = train(cfg)
        final = val_records(ins_dir)[last]  # the final EMA model, not best.pt (chosen on these very runs)
        row["in-source"] = {"score": final["score"], **{n: final["per_class"][n]["fbeta"] for n in PARTICLE_NAMES}}
        row["curve_scratch"] = curve(ins_dir, b.curve)
        # fine-tuned from the randomized model on the same runs and schedule, lower learning rate
        ft_extra = [*curve_extra, f"train.init_from={rand_ckpt}", f"train.lr={b.finetune_lr}"]
        ft_dir, train_s[f"finetune-{held}"] = train(
            recipe(b, roots[held], tr + te, te, work, f"finetune-{held}", ft_extra)
        )
        row["curve_finetune"] = curve(ft_dir, b.curve)
        # (ii) zero-shot from the other sources, pooled (validated on their test runs, never on H)
        others = [s for s in SOURCES if s != held]
        pooled = pooled_root([(roots[s], splits[s][0] + splits[s][1]) for s in others], work / f"pool-not-{held}")
        runs = [n for s in others for n in splits[s][0] + splits[s][1]]
        val = [n for s in others for n in splits[s][1]]
        loso_dir, train_s[f"loso-{held}"] = train(recipe(b, pooled, runs, val, work, f"loso-{held}"))
        own, lean = load_checkpoint(loso_dir / "best.pt")["thresholds"], lean_thresholds(loso_dir, pooled)
        preds = predict(loso_dir / "best.pt", roots[held], te)
        row["leave-one-source-out"] = scores(preds, truth, own, own_lean=lean)
        own, lean = load_checkpoint(rand_ckpt)["thresholds"], lean_thresholds(rand_dir, rand_root)
        row["randomized"] = scores(predict(rand_ckpt, roots[held], te), truth, own, own_lean=lean)
        row["blob"] = blob_scores(roots[held], tr, te, truths[held])
        results[held] = row

    meta = {
        "command": "python -m benchmarks.generalization " + " ".join(argv if argv is not None else sys.argv[1:]),
        "budget_name": args.budget,
        "budget": dataclasses.asdict(b),
        "sources": {s: {"overrides": o, "description": d} for s, (o, d) in SOURCES.items()},
        "roots": {**{s: str(r) for s, r in roots.items()}, "randomized": str(rand_root)},
        "train_seconds": train_s,
        "wall_seconds": time.perf_counter() - begin,
        "reused_trainings": list(REUSED),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
    }
    from benchmarks.generalization_report import write_report

    path = write_report(results, meta, args.out)
    console.print(f"Wrote {path}")
    return path


if __name__ == "__main__":
    main()
