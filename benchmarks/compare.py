"""Head-to-head with learning curves: blob (LoG) vs unet3d vs heatmap25d, from scratch and fine-tuned.

On each chosen synthetic *source* (``realistic``, and sources of ``benchmarks/generalization.py`` such as
``B``), one command trains heatmap25d and unet3d at every budget of a curve (e.g. 250 / 500 / 1000 steps;
each budget its own full schedule, not a snapshot of a longer run) with the same crops, batch, data and
whole-tomogram folds, and scores the pooled out-of-fold (OOF) picks beside the training-free LoG blob baseline.
Two scores each: cross-fold thresholds (each fold thresholded by thresholds tuned on the *other* folds:
honest, the headline) and thresholds tuned on all pooled OOF picks (optimistic, the challenge CV habit).
Also, behind options:

* **transfer**: heatmap25d pretrained on the ``randomized`` corpus, or the shipped model (``--pretrained
  default``, the ``cpu`` budget's choice), or a given checkpoint, and fine-tuned as a whole
  (``train.init_from``) on each source at the same budgets as from scratch (``--transfer-budgets N``: the
  curve's N cheapest);
* **preprocessing** (on the first source, at the middle budget): Gaussian low-pass, a difference-of-Gaussians
  band-pass matched to particle size and local contrast normalisation, each applied to every tomogram of the
  dataset (a preprocessed copy), so training and inference see the same input; heatmap25d and blob.

Every training is kept in the work folder (``<work>/<source>/<arm>/s<steps>/fold<k>``, with ``done.json``):
a killed or extended run (more budgets, sources or settings) trains only what is missing and rescores the rest.
``--plan`` lists a command's trainings, those already finished and the time the rest should take at the speed
the finished ones measured (:mod:`benchmarks.compare_plan`)::

    python -m benchmarks.compare            # cpu: 200/400/800 steps, realistic + B, transfer at 200/400, band-pass
                                            # and local normalisation at 400 (~2 h est. on 2 cores by --plan)
    python -m benchmarks.compare --plan     # what it would train, and for how long; trains nothing
    python -m benchmarks.compare --curve 250 500 1000 --transfer-budgets 2 --preprocess bandpass localnorm lowpass
                                            # + --pretrained FILE: the published run (compare.md names it exactly)
    python -m benchmarks.compare --budget gpu       # full-size tomograms, 1000/3000/6000 steps
    python -m benchmarks.compare --budget smoke     # seconds; what the test runs
    python -m benchmarks.compare --report-only      # after a kill: score what finished, train nothing

Writes ``benchmarks/results/compare.md`` and ``.json`` and the figure ``compare_curves.png``; each row's
pooled OOF picks (and ``.crossfold.csv``: those its cross-fold score counts) go to
``<work>/predictions/<source>/`` for figures with ``tools/report.py --compare``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from benchmarks.bench_common import PeakRSS, add_variant_option, machine, parse_variants, slug
from benchmarks.compare_plan import BLOB, FINETUNED, estimate, finished_run, measured_rates, plan, total_seconds
from benchmarks.compare_report import verdict, write_figure, write_report
from cryopoint.particles import PARTICLE_NAMES, PARTICLES

REPO = Path(__file__).resolve().parents[1]
console = Console()
#: Run folders trained / found finished (and reused) by the current :func:`main` call.
TRAINED: list[str] = []
REUSED: list[str] = []


@dataclass(frozen=True)
class Budget:
    """Everything that sets a benchmark's cost. Networks get identical ``crop`` and ``batch_size``, and each
    curve budget (``curve``: training steps) is a full schedule of its own.

    ``heatmap_config`` is the heatmap recipe of that scale (its model section is used as is, except
    ``encoder`` when given); unet3d always starts from ``configs/unet3d.yaml`` with ``unet_channels``.
    ``pretrain_runs`` / ``pretrain_steps``: the ``randomized`` corpus and schedule of the transfer's pretraining
    (when ``pretrained`` is ``"randomized"``; ``"default"`` fine-tunes the shipped model, pretrained already).
    ``transfer_budgets``: the transfer arm runs at this many of the curve's budgets, cheapest first (None: all).
    ``preprocess``: the preprocessings compared by default (``--preprocess``).
    """

    runs: int
    shape: tuple[int, int, int]
    folds: int
    curve: tuple[int, ...]
    crop: tuple[int, int, int]
    batch_size: int
    roi: tuple[int, int, int]
    heatmap_config: str
    unet_channels: tuple[int, ...]
    pretrain_runs: int
    pretrain_steps: int
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    ema_decay: float = 0.95
    num_workers: int = 0
    encoder: str = ""
    seed: int = 0
    pretrained: str = "randomized"
    transfer_budgets: int | None = None
    preprocess: tuple[str, ...] = ("bandpass", "localnorm", "lowpass")


BUDGETS = {
    "smoke": Budget(
        2, (64, 128, 128), 2, (1, 2), (16, 32, 32), 1, (32, 64, 64), "configs/smoke.yaml", (4, 8, 16), 2, 2
    ),  # fmt: skip
    # Sized to ~2 h on 2 CPU cores (``--plan`` prices a command from trainings already measured): the
    # transfer starts from the shipped model (no pretraining) at the two lower budgets, two preprocessings.
    "cpu": Budget(
        6,
        (96, 320, 320),
        2,
        (200, 400, 800),
        (32, 64, 64),
        2,
        (96, 320, 320),
        "configs/quickstart.yaml",
        (16, 32, 64),
        6,
        1000,
        pretrained="default",
        transfer_budgets=2,
        preprocess=("bandpass", "localnorm"),
    ),  # fmt: skip
    "gpu": Budget(
        7,
        (184, 630, 630),
        7,
        (1000, 3000, 6000),
        (32, 128, 128),
        8,
        (64, 256, 256),
        "configs/heatmap_r34.yaml",
        (32, 64, 128, 256),
        12,
        6000,
    ),  # fmt: skip
}

#: The methods trained on the curve (``--methods``); the fine-tuned heatmap25d is the transfer arm.
METHODS = ("heatmap25d", "unet3d")


def largest_radius_voxels(voxel_size) -> float:
    """The largest scored particle radius in voxels (the scale the band-pass and the local window match)."""
    return max(p.radius for p in PARTICLES if p.weight > 0) / float(min(np.atleast_1d(voxel_size)))


#: Preprocessings (``--preprocess``): a description and ``f(volume, largest radius in voxels) -> volume``.
#: The filters are those of the appearance augmentation (``cryopoint.data.appearance``).
PREPROCESSINGS: dict[str, tuple[str, Callable[[np.ndarray, float], np.ndarray]]] = {
    "lowpass": ("Gaussian low-pass, σ 1 voxel", lambda v, r: _appearance().gaussian_blur(v, 1.0)),
    "bandpass": (
        "band-pass (difference of Gaussians): σ 1 voxel low-pass minus the background at σ = the largest particle "
        "radius (removes noise finer than a voxel and ice/thickness gradients coarser than any particle)",
        lambda v, r: _appearance().bandpass_filter(v, 1.0, r),
    ),
    "localnorm": (
        "local contrast normalisation, window σ = the largest particle radius",
        lambda v, r: _appearance().local_normalize(v, r),
    ),
}


def _appearance():
    from cryopoint.data import appearance

    return appearance


def source_root(name: str, b: Budget, cache_dir: str | None) -> Path:
    """A source's dataset (generated once, cached): ``realistic``, or a source of ``benchmarks.generalization``
    (its SynthParams overrides of the ``realistic`` preset) at this budget's runs and shape."""
    from benchmarks.generalization import SOURCES
    from cryopoint.data.cache import ensure_synthetic_dataset

    if name == "realistic":
        return ensure_synthetic_dataset("realistic", runs=b.runs, shape=b.shape, seed=b.seed, cache_dir=cache_dir)
    seed = b.seed + 10 * (1 + list(SOURCES).index(name))  # distinct run names per source
    return ensure_synthetic_dataset(
        "realistic", runs=b.runs, shape=b.shape, seed=seed, cache_dir=cache_dir, overrides=SOURCES[name][0]
    )


def source_description(name: str) -> str:
    from benchmarks.generalization import SOURCES

    return "the `realistic` preset" if name == "realistic" else f"source {name}: {SOURCES[name][1]}"


def evaluate(preds: pd.DataFrame, truth: pd.DataFrame, folds: dict[str, int]) -> dict:
    """Score pooled OOF predictions with cross-fold thresholds (honest) and thresholds tuned on them all.

    Args:
        preds: Every out-of-fold pick (``experiment``, ``particle_type``, ``x, y, z``, ``score``).
        truth: True picks of (at least) the runs in ``folds``.
        folds: ``{run: fold}``: each fold's picks are thresholded with thresholds tuned on the other folds.

    Returns:
        ``score`` (tuned on all), ``score_crossfold``, ``thresholds`` (tuned on all), ``thresholds_by_fold``
        (``{"fold<k>": thresholds tuned without fold k}``), ``per_class`` (precision, recall, fbeta, tp, fp,
        fn at the tuned thresholds; ``fbeta_crossfold``, ``recall_crossfold``, ``precision_crossfold``),
        ``crossfold_preds`` (the picks the cross-fold score counts: each fold's at its thresholds) and
        ``miss_causes`` (``{class: {"true", "missed", cause: count}}`` of those picks, causes judged against
        each fold's picks scoring at least half its thresholds: :mod:`cryopoint.viz.misses`).
    """
    from benchmarks.bench_common import per_run_counts
    from cryopoint.post.thresholds import cross_fold_score, tune_out_of_fold
    from cryopoint.viz.misses import miss_cause_table, miss_causes, near_threshold

    exp = preds["experiment"].astype(str)
    by_fold = {
        f"fold{k}": preds[exp.isin([r for r, f in folds.items() if f == k])] for k in sorted(set(folds.values()))
    }
    truth = truth[truth["experiment"].astype(str).isin(set(folds))]
    tuned = tune_out_of_fold(truth, by_fold)
    crossed = cross_fold_score(truth, by_fold)
    near = pd.concat([near_threshold(by_fold[k], t) for k, t in crossed.thresholds.items()])
    causes = miss_cause_table(miss_causes(truth, crossed.picks, near), truth)
    per_class = {}
    for name in PARTICLE_NAMES:
        row = {k: float(tuned.table.loc[name, k]) for k in ("precision", "recall", "fbeta", "tp", "fp", "fn")}
        row |= {f"{k}_crossfold": float(crossed.table.loc[name, k]) for k in ("precision", "recall", "fbeta")}
        per_class[name] = row
    return {
        "score": float(tuned.score_after),
        "score_crossfold": float(crossed.score),
        "thresholds": {k: float(v) for k, v in tuned.thresholds.items()},
        "thresholds_by_fold": {f: {k: float(v) for k, v in t.items()} for f, t in crossed.thresholds.items()},
        "per_class": per_class,
        "crossfold_preds": crossed.picks,
        "runs": sorted(folds),  # and their exact-metric counts of the cross-fold picks, for intervals over tomograms
        "run_counts": per_run_counts(truth, crossed.picks, sorted(folds)).tolist(),
        "miss_causes": {n: {k: int(v) for k, v in row.items()} for n, row in causes.iterrows()},
    }


def preprocess_dataset(root: Path, out: Path, name: str) -> tuple[Path, float]:
    """A copy of a dataset whose tomograms went through preprocessing ``name``; picks unchanged. Cached.

    Returns:
        ``(dataset root, preprocessing seconds per tomogram)``.
    """
    from cryopoint.io import list_runs, read_picks, read_tomogram, tomogram_path, write_ome_zarr, write_run_picks
    from cryopoint.io.atomic import atomic_write_text

    marker = out / "done.json"
    if marker.is_file():
        return out, json.loads(marker.read_text())["seconds_per_tomogram"]
    fn, seconds = PREPROCESSINGS[name][1], []
    runs = list_runs(root)
    for run in runs:
        source = tomogram_path(root, run)
        tomo = read_tomogram(source)
        start = time.perf_counter()
        data = fn(np.asarray(tomo.data, dtype=np.float32), largest_radius_voxels(tomo.voxel_size))
        seconds.append(time.perf_counter() - start)
        write_ome_zarr(out / source.relative_to(root), data, tomo.voxel_size, overwrite=True)  # same layout
        write_run_picks(out, run, read_picks(root, run), overwrite=True)
    record = {"preprocess": name, "source_root": str(root), "seconds_per_tomogram": float(np.mean(seconds))}
    atomic_write_text(marker, json.dumps(record) + "\n")
    return out, record["seconds_per_tomogram"]


def run_blob(root: Path, names: list[str]) -> dict:
    """Training-free blob detector on every run (recomputed each call: seconds)."""
    from cryopoint.baselines.blob import detect_blobs
    from cryopoint.io import read_tomogram, tomogram_path

    preds, seconds = [], []
    with PeakRSS() as mem:
        for run in names:
            tomo = read_tomogram(tomogram_path(root, run))
            data = np.asarray(tomo.data, dtype=np.float32)
            start = time.perf_counter()
            preds.append(detect_blobs(data, tomo.voxel_size, min_score=0.0).assign(experiment=run))
            seconds.append(time.perf_counter() - start)
    return {
        "preds": pd.concat(preds, ignore_index=True),
        "train_s": 0.0,
        "train_s_per_model": 0.0,
        "infer_s_per_tomo": float(np.mean(seconds)),
        "peak_mib": mem.mib,
        "params": 0,
    }


def model_overrides(ckpt: Path) -> list[str]:
    """The model section of a checkpoint's config as overrides: a fine-tuned network must have its shape."""
    from cryopoint.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt).get("config", {}).get("model", {})
    # ``pretrained`` seeds an encoder at build time; the whole network comes from ``train.init_from`` here.
    return [f"model.{k}={json.dumps(v)}" for k, v in model.items() if k != "pretrained"]


def network_config(method: str, b: Budget, root: Path, val_runs: list[str], out_dir: Path, name: str, steps: int,
                   extra=()):  # fmt: skip
    """The engine config of one network for one fold: base YAML + the budget's shared overrides."""
    from cryopoint.config import load_config

    base = "configs/unet3d.yaml" if method == "unet3d" else b.heatmap_config
    shared = [
        f"data.root={root}",
        f"data.val_runs={json.dumps(val_runs)}",
        f"data.crop={list(b.crop)}",
        f"train.steps={steps}",
        f"train.batch_size={b.batch_size}",
        f"train.warmup_steps={max(1, steps // 20)}",
        f"train.lr={b.lr}",
        f"train.ema_decay={b.ema_decay}",
        "train.class_weights=[1, 1, 2, 1, 2, 1]",
        "data.positive_fraction=0.7",
        # A low floor: thresholds are tuned afterwards, and an early softmax model's class probabilities
        # sit far below a sigmoid heatmap's peaks (a 0.01 floor removed every unet3d peak at 80 steps).
        "post.min_score=0.001",
        f"data.num_workers={b.num_workers}",
        f"train.val_every={steps}",
        f"train.out_dir={out_dir}",
        f"train.name={name}",
        f"train.seed={b.seed}",
        f"infer.roi={list(b.roi)}",
    ]
    if method == "unet3d":
        arch = [f"model.channels={list(b.unet_channels)}"]
    else:
        arch = [f"model.encoder={b.encoder}"] if b.encoder else []
    return load_config(REPO / base, [*shared, *arch, *extra])


class NotTrained(Exception):
    """``--report-only``: a training the report needs has not finished in the work folder."""


#: ``--report-only``: reuse finished trainings, train nothing (arms with an unfinished fold are left out).
REPORT_ONLY = False


def train_once(cfg, *, report_only: bool | None = None) -> tuple[Path, dict]:
    """Train one model with the engine, or reuse the finished run of the same name in the work folder.

    A training killed before it finished left no ``done.json``; it is trained again from the start (into the
    engine's next free ``name-N`` folder; the partial folder stays, nothing is deleted). ``report_only``
    (default: this module's ``--report-only`` state, ``REPORT_ONLY``) raises :class:`NotTrained` instead.

    Returns:
        ``(run folder, record)``; the record (``train_s`` without the validation pass, ``val_s`` the final
        validation pass, ``peak_mib``) is the one measured when the run was trained.
    """
    from cryopoint.engine import train
    from cryopoint.io.atomic import atomic_write_text

    out_dir = Path(cfg.train.out_dir)
    done = finished_run(out_dir, cfg.train.name)
    if done is not None:
        REUSED.append(str(done))
        return done, json.loads((done / "done.json").read_text())
    if REPORT_ONLY if report_only is None else report_only:
        raise NotTrained(f"{out_dir / cfg.train.name}")
    with PeakRSS() as mem:
        start = time.perf_counter()
        run_dir = Path(train(cfg))
        wall = time.perf_counter() - start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    vals = [r.get("seconds", 0.0) for r in records if r.get("type") == "val"]
    record = {
        "steps": int(cfg.train.steps),
        "train_s": wall - sum(vals),
        "val_s": vals[-1] if vals else float("nan"),
        "peak_mib": mem.gpu_mib or mem.mib,
    }
    atomic_write_text(run_dir / "done.json", json.dumps(record) + "\n")
    TRAINED.append(str(run_dir))
    return run_dir, record


def _params(ckpt: Path) -> int:
    from cryopoint.checkpoint import load_checkpoint

    return int(sum(t.numel() for t in load_checkpoint(ckpt)["model_state"].values()))


def run_arm(method: str, b: Budget, root: Path, folds: dict[str, int], out_dir: Path, steps: int, extra=()) -> dict:
    """One network per fold at ``steps`` (trained or reused), its OOF peaks pooled.

    The picks are the engine's own validation output (``oof_predictions.csv``: EMA weights, sliding window,
    NMS with ``post.min_score=0.001``); its final validation pass per tomogram is the inference time.
    """
    base = "unet3d" if method == "unet3d" else "heatmap25d"
    preds, infer_s, train_s, peak = [], [], [], 0.0
    for f in sorted(set(folds.values())):
        val = sorted(r for r, k in folds.items() if k == f)
        cfg = network_config(base, b, root, val, out_dir, f"fold{f}", steps, extra)
        console.rule(f"[bold]{out_dir.relative_to(out_dir.parents[2])}: fold {f} ({', '.join(val)})")
        run_dir, rec = train_once(cfg)
        train_s.append(rec["train_s"])
        infer_s.append(rec["val_s"] / len(val))
        peak = max(peak, rec["peak_mib"])
        preds.append(pd.read_csv(run_dir / "oof_predictions.csv"))
    return {
        "preds": pd.concat(preds, ignore_index=True),
        "train_s": float(np.sum(train_s)),
        "train_s_per_model": float(np.mean(train_s)),
        "infer_s_per_tomo": float(np.mean(infer_s)),
        "peak_mib": peak,
        "params": _params(run_dir / "best.pt"),
    }


def pretrained_checkpoint(spec: str, b: Budget, work: Path, cache_dir: str | None) -> dict:
    """The transfer's starting network and what it cost.

    ``spec`` ``"randomized"``: heatmap25d (the budget's recipe) trained here on the ``randomized`` corpus for
    ``b.pretrain_steps`` (validated on its last run); otherwise a checkpoint path or ``"default"`` (the
    shipped model), whose pretraining is read from its own config.
    """
    from cryopoint.checkpoint import load_checkpoint, sha256
    from cryopoint.data.cache import ensure_synthetic_dataset
    from cryopoint.io import list_runs
    from cryopoint.weights import resolve_checkpoint

    if spec == "randomized":
        if REPORT_ONLY and finished_run(work / "pretrain", "randomized") is None:  # not even its data generated
            raise NotTrained(str(work / "pretrain" / "randomized"))
        root = ensure_synthetic_dataset(
            "randomized", runs=b.pretrain_runs, shape=b.shape, seed=b.seed + 99, cache_dir=cache_dir
        )
        names = sorted(list_runs(root))
        console.rule("[bold]pretraining heatmap25d on the randomized corpus")
        cfg = network_config("heatmap25d", b, root, names[-1:], work / "pretrain", "randomized", b.pretrain_steps)
        run_dir, rec = train_once(cfg)
        ckpt = run_dir / "best.pt"
        return {
            "spec": spec,
            "tag": "randomized",
            "checkpoint": str(ckpt),
            "corpus": f"`randomized` preset, {b.pretrain_runs} runs of {tuple(b.shape)} (1 held out for validation)",
            "steps": b.pretrain_steps,
            "train_s": rec["train_s"],
        }
    ckpt = resolve_checkpoint(spec)
    cfg = load_checkpoint(ckpt).get("config", {})
    digest = sha256(ckpt)[:10]  # fine-tunings of another checkpoint (or a retrained default) are not reused
    data = cfg.get("data", {})
    corpus = data.get("root") or f"`{data.get('synth_preset', '?')}` preset (synthetic)"
    return {
        "spec": spec,
        "tag": digest,
        "checkpoint": str(ckpt),
        "corpus": f"{corpus}, as its config says",
        "steps": cfg.get("train", {}).get("steps"),
        # a staged model's config holds its last stage only: the steps before it are not known from the file
        "continued_from": cfg.get("train", {}).get("init_from"),
        "train_s": None,
    }


def transfer_tag(spec: str) -> str:
    """The name of the transfer's starting network in its arm folder (``finetuned-<tag>``): ``randomized``, or
    the first 10 hex digits of the checkpoint's sha256 (a retrained default is not mistaken for the old one)."""
    from cryopoint.checkpoint import sha256
    from cryopoint.weights import resolve_checkpoint

    return "randomized" if spec == "randomized" else sha256(resolve_checkpoint(spec))[:10]


def print_plan(jobs, b: Budget, work: Path, pretrain: bool) -> None:
    """``--plan``: a table of the command's trainings, what ``work`` already holds and the time left.

    Returns:
        None (``main`` returns it: nothing was written).
    """
    from rich.table import Table

    rates = measured_rates(work)
    priced = estimate(jobs, b.folds, work, rates)
    table = Table(title=f"trainings in {work} ({b.folds} folds each)")
    for col in ("source", "arm", "steps", "finished", "to train", "est. min"):
        table.add_column(col, justify="left" if col in ("source", "arm") else "right")
    for p in priced:
        j = p["job"]
        est = "-" if not p["todo"] else "?" if p["seconds"] is None else f"{p['seconds'] / 60:.0f}"
        table.add_row(j.source, j.arm, str(j.steps), f"{p['finished']}/{b.folds}", str(p["todo"]), est)
    console.print(table)
    total = total_seconds(priced)
    if pretrain:
        done = finished_run(work / "pretrain", "randomized") is not None
        rate = rates.get("heatmap25d")
        extra = 0.0 if done else (rate["s_per_step"] * b.pretrain_steps + rate["val_s"]) if rate else None
        total = None if total is None or extra is None else total + extra
        console.print(f"pretraining on the randomized corpus, {b.pretrain_steps} steps: "
                      + ("finished" if done else "?" if extra is None else f"~{extra / 60:.0f} min"))  # fmt: skip
    for kind, r in sorted(rates.items()):
        console.print(f"measured {kind}: {r['s_per_step']:.3f} s/step, {r['val_s']:.0f} s per final validation "
                      f"({r['n']} finished trainings in {work})")  # fmt: skip
    if total is None:
        console.print("Time left: unknown (no finished training in the work folder to measure the speed by).")
    else:
        console.print(f"Time left for the trainings: ~{total / 60:.0f} min (data generation, the blob baseline and "
                      "scoring come on top: minutes)")  # fmt: skip


def save_predictions(rows: list[dict], folder: Path) -> list[Path]:
    """Every row's pooled out-of-fold picks (with scores) under ``folder/<source>/<row>.csv``, and beside them
    ``<row>.crossfold.csv``: the picks its cross-fold score counts (each fold's picks kept at the thresholds
    tuned on the other folds), so a report drawn from them (``tools/report.py``, no ``--thresholds``) shows
    the honest result, not one tuned on itself."""
    from cryopoint.io.atomic import atomic_path

    written = []
    for r in rows:
        stem = slug(row_label(r))
        for name, frame in ((f"{stem}.csv", r["preds"]), (f"{stem}.crossfold.csv", r["crossfold_preds"])):
            path = folder / r["source"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False)
            written.append(path)
    return written


def row_label(r: dict) -> str:
    """``"heatmap25d, 500 steps"``, ``"blob (LoG)"``, ``"heatmap25d, 500 steps, bandpass"``,
    ``"heatmap25d, 500 steps, hard negatives"`` (a recipe variant)."""
    parts = [r["method"], *([f"{r['steps']} steps"] if r["steps"] else [])]
    parts += [r["preprocess"]] if r["preprocess"] != "none" else []
    return ", ".join([*parts, *([r["variant"]] if r.get("variant", "none") != "none" else [])])


def main(argv: list[str] | None = None) -> Path:
    from benchmarks.generalization import SOURCES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--curve", type=int, nargs="+", help="override the budget's training steps (the curve)")
    parser.add_argument("--sources", nargs="+", choices=["realistic", *SOURCES], default=["realistic", "B"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="networks from scratch")
    parser.add_argument("--runs", type=int, help="override the number of synthetic runs per source")
    parser.add_argument("--shape", type=int, nargs=3, help="override the tomogram shape (z y x)")
    parser.add_argument("--folds", type=int, help="override the number of whole-tomogram folds (at least 2)")
    parser.add_argument("--crop", type=int, nargs=3, help="override the training crop (z y x), both networks")
    parser.add_argument("--no-transfer", action="store_true", help="skip the pretrained + fine-tuned heatmap25d arm")
    parser.add_argument(
        "--pretrained",
        help="the transfer's starting network: 'randomized' (trained here on the randomized corpus, "
        "pretrain_steps of the budget), 'default' (the shipped model) or a checkpoint path (default: the budget's)",
    )
    parser.add_argument(
        "--transfer-budgets",
        type=int,
        help="fine-tune at this many of the curve's budgets, cheapest first (default: the budget's; cpu 2, else all)",
    )
    parser.add_argument(
        "--preprocess",
        nargs="*",
        choices=sorted(PREPROCESSINGS),
        help="preprocessings compared on the first source at --preprocess-steps (default: the budget's; "
        "the option alone: none)",
    )
    parser.add_argument("--preprocess-steps", type=int, help="their budget (default: the curve's middle one)")
    add_variant_option(
        parser,
        "heatmap25d trained with it on every source at --variant-steps beside the plain recipe "
        "at the same steps, same folds and seed",
    )
    parser.add_argument("--variant-steps", type=int, help="the variants' budget (default: the curve's middle one)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "compare")
    parser.add_argument("--work", type=Path, help="run folders (default runs/compare-<budget>); reused when rerun")
    parser.add_argument("--cache-dir", help="synthetic dataset cache (default: cryopoint's cache)")
    parser.add_argument("--note", action="append", default=[], help="a sentence added to the report (repeatable)")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="train nothing: list the trainings this command would run, those already finished in --work, and the "
        "time the rest should take at the speed measured by the finished ones",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: score the finished trainings in --work and list the arms left out (after a kill)",
    )
    args = parser.parse_args(argv)

    from cryopoint.data.folds import assign_folds
    from cryopoint.io import list_runs, read_truth

    over = {"runs": args.runs, "shape": tuple(args.shape) if args.shape else None}
    over |= {"folds": args.folds, "crop": tuple(args.crop) if args.crop else None}
    over |= {"curve": tuple(sorted(set(args.curve))) if args.curve else None, "pretrained": args.pretrained}
    over |= {"transfer_budgets": args.transfer_budgets}
    over |= {"preprocess": tuple(args.preprocess) if args.preprocess is not None else None}
    b = dataclasses.replace(BUDGETS[args.budget], **{k: v for k, v in over.items() if v is not None})
    if b.transfer_budgets is not None and b.transfer_budgets < 1:
        parser.error(f"--transfer-budgets must be at least 1 (use --no-transfer for none); got {b.transfer_budgets}.")
    if b.folds < 2:
        parser.error(f"--folds must be at least 2 (cross-fold thresholds need another fold); got {b.folds}.")
    pre_steps = args.preprocess_steps or b.curve[len(b.curve) // 2]
    var_steps = args.variant_steps or b.curve[len(b.curve) // 2]
    variants = parse_variants(parser, args.variant)
    work = (args.work or REPO / "runs" / f"compare-{args.budget}").absolute()
    device = "cuda" if args.budget == "gpu" and torch.cuda.is_available() else "cpu"
    global REPORT_ONLY
    REPORT_ONLY = args.report_only
    TRAINED.clear()
    REUSED.clear()
    begin = time.perf_counter()
    command = "python -m benchmarks.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    tag = None if args.no_transfer else transfer_tag(b.pretrained)
    transfer_curve = b.curve[: b.transfer_budgets]
    jobs = plan(args.sources, args.methods, b.curve, b.preprocess, pre_steps, variants, var_steps, tag, transfer_curve)
    if args.plan:
        return print_plan(jobs, b, work, pretrain=b.pretrained == "randomized" and tag is not None)

    console.rule("[bold]data")
    data = {}
    for src in args.sources:
        root = source_root(src, b, args.cache_dir)
        names = sorted(list_runs(root))
        truth = read_truth(root)
        data[src] = {"root": root, "names": names, "folds": assign_folds(names, b.folds), "truth": truth}

    rows: list[dict] = []
    meta = {
        "commands": [command],
        "notes": list(args.note),
        "budget_name": args.budget,
        "budget": dataclasses.asdict(b),
        "preprocess_steps": pre_steps,
        "preprocessings": {p: PREPROCESSINGS[p][0] for p in b.preprocess},
        "variant_steps": var_steps,
        "variants": variants,
        "sources": {
            s: {
                "description": source_description(s),
                "root": str(d["root"]),
                "folds": d["folds"],
                "truth_counts": {n: int((d["truth"]["particle_type"] == n).sum()) for n in PARTICLE_NAMES},
            }
            for s, d in data.items()
        },
        "machine": machine(device),
        "device": device,
        "pretrain": None,
        "missing": [],
    }

    def arm(*a, **kw) -> dict | None:
        """``run_arm``, or None (listed in the report) when ``--report-only`` finds a fold unfinished."""
        try:
            return run_arm(*a, **kw)
        except NotTrained as err:
            meta["missing"].append(f"{Path(str(err)).parent.relative_to(work)} (no finished {Path(str(err)).name})")
            return None

    def add(src: str, method: str, steps: int | None, raw: dict | None, preprocess: str = "none", **more) -> None:
        if raw is None:
            return
        d = data[src]
        row = {"source": src, "method": method, "steps": steps, "preprocess": preprocess, "variant": "none"}
        rows.append(row | raw | more | evaluate(raw["preds"], d["truth"], d["folds"]))

    def report() -> Path:
        meta["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        meta["wall_s"] = time.perf_counter() - begin
        meta["trained"], meta["reused"] = list(TRAINED), list(REUSED)
        figure = args.out.parent / f"{args.out.name}_curves.png"
        meta["figure"] = figure.name
        write_figure(rows, meta, figure)
        return write_report(rows, meta, args.out)

    for src, d in data.items():
        console.rule(f"[bold]{src}: blob (LoG)")
        add(src, BLOB, None, run_blob(d["root"], d["names"]))

    prepared: dict[str, Path] = {}  # preprocessing -> the first source's preprocessed copy
    prep_s: dict[str, float] = {}
    no_pretrain = False  # --report-only found the pretraining unfinished: no transfer rows
    for i, job in enumerate(jobs):
        d = data[job.source]
        root, more, extra = d["root"], {}, list(variants.get(job.variant, []))
        if job.preprocess != "none":
            if job.preprocess not in prepared:
                prepared[job.preprocess], prep_s[job.preprocess] = preprocess_dataset(
                    d["root"], work / job.source / f"data-{job.preprocess}", job.preprocess
                )
                console.rule(f"[bold]{job.source}, {job.preprocess}: blob (LoG)")
                blob = run_blob(prepared[job.preprocess], d["names"])
                add(job.source, BLOB, None, blob, job.preprocess, prep_s_per_tomo=prep_s[job.preprocess])
            root, more = prepared[job.preprocess], {"prep_s_per_tomo": prep_s[job.preprocess]}
        if job.method == FINETUNED:
            if meta["pretrain"] is None and not no_pretrain:
                try:
                    meta["pretrain"] = pretrained_checkpoint(b.pretrained, b, work, args.cache_dir)
                except NotTrained:
                    meta["missing"].append("the transfer arm (its pretraining has not finished)")
                    no_pretrain = True
            if no_pretrain:
                continue
            ckpt = Path(meta["pretrain"]["checkpoint"])
            extra = [f"train.init_from={ckpt}", f"train.lr={b.finetune_lr}", *model_overrides(ckpt)]
        raw = arm(job.network, b, root, d["folds"], job.out_dir(work), job.steps, extra)
        add(job.source, job.method, job.steps, raw, job.preprocess, variant=job.variant, **more)
        if i + 1 == len(jobs) or jobs[i + 1].group != job.group:
            report()

    md = report()
    if paths := save_predictions(rows, work / "predictions"):
        console.print(
            f"Out-of-fold picks, all and cross-fold-thresholded, of {len(paths) // 2} rows in {work}/predictions"
        )
    console.print(f"Wrote {md} ({len(TRAINED)} trainings, {len(REUSED)} reused from {work})")
    for line in verdict(rows, meta):
        console.print(line)
    return md


if __name__ == "__main__":
    main()
