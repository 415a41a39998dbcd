"""Head-to-head benchmark: blob (LoG) vs unet3d (sphere segmentation) vs heatmap25d on one synthetic dataset.

One command trains and evaluates every method on the same ``realistic`` synthetic runs with whole-tomogram
folds, the same crop size and the same number of training steps for the two networks, pools the
out-of-fold (OOF) predictions, tunes per-class thresholds on them, and writes
``benchmarks/results/compare.md`` (+ ``.json``)::

    python -m benchmarks.compare                    # --budget cpu (default): ~46 min on 2 cores
    python -m benchmarks.compare --budget gpu       # full-size tomograms, long schedules
    python -m benchmarks.compare --budget smoke     # seconds; what the test runs

Two scores per method: thresholds tuned on all pooled OOF predictions (the challenge's CV habit; optimistic,
since the thresholds see the answers) and cross-fold thresholds (each fold scored with thresholds tuned on
the other folds' predictions: honest). Also a preprocessing comparison (Gaussian low-pass before the usual
normalisation) and a transfer setting (heatmap25d encoder pretrained on the ``easy`` preset, then trained
on ``realistic``, versus ``realistic`` alone). Each method's pooled out-of-fold picks are saved to
``<work>/predictions/<method>.csv`` for figures with ``tools/report.py --compare``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from scipy import ndimage

from benchmarks.bench_common import PeakRSS, machine
from benchmarks.compare_report import verdict, write_report
from cryopoint.particles import PARTICLE_NAMES

REPO = Path(__file__).resolve().parents[1]
console = Console()


@dataclass(frozen=True)
class Budget:
    """Everything that sets a benchmark's cost. Networks get identical ``steps``, ``crop`` and ``batch_size``.

    ``heatmap_config`` is the heatmap recipe of that scale (its model section is used as is, except
    ``encoder`` when given); unet3d always starts from ``configs/unet3d.yaml`` with ``unet_channels``.
    """

    runs: int
    shape: tuple[int, int, int]
    folds: int
    steps: int
    crop: tuple[int, int, int]
    batch_size: int
    roi: tuple[int, int, int]
    heatmap_config: str
    unet_channels: tuple[int, ...]
    lr: float = 2e-3
    ema_decay: float = 0.95
    num_workers: int = 0
    encoder: str = ""
    lowpass_sigma: float = 1.0
    seed: int = 0


BUDGETS = {
    "smoke": Budget(2, (64, 128, 128), 2, 2, (16, 32, 32), 1, (32, 64, 64), "configs/smoke.yaml", (4, 8, 16)),
    # 46 min measured on 2 cores: 9 trainings (2 folds x unet3d, heatmap25d, low-pass, transfer; 1 easy pretraining).
    "cpu": Budget(6, (96, 320, 320), 2, 500, (32, 64, 64), 2, (96, 320, 320), "configs/quickstart.yaml", (16, 32, 64)),
    "gpu": Budget(
        7, (184, 630, 630), 7, 6000, (32, 128, 128), 8, (64, 256, 256), "configs/heatmap_r34.yaml", (32, 64, 128, 256)
    ),
}


def evaluate(preds: pd.DataFrame, truth: pd.DataFrame, folds: dict[str, int]) -> dict:
    """Score pooled OOF predictions: thresholds tuned on everything, and cross-fold thresholds."""
    from cryopoint.metric import score
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    tuned = tune_thresholds(truth, preds)
    result = score(truth, apply_thresholds(preds, tuned.thresholds))
    crossed = []
    for f in sorted(set(folds.values())):
        held = {r for r, k in folds.items() if k == f}
        rest_thr = tune_thresholds(truth[~truth["experiment"].isin(held)], preds[~preds["experiment"].isin(held)])
        crossed.append(apply_thresholds(preds[preds["experiment"].isin(held)], rest_thr.thresholds))
    honest = score(truth, pd.concat(crossed, ignore_index=True))
    return {
        "score": result.score,
        "score_crossfold": honest.score,
        "thresholds": {k: float(v) for k, v in tuned.thresholds.items()},
        "per_class": {
            name: {k: float(result.table.loc[name, k]) for k in ("precision", "recall", "fbeta", "tp", "fp", "fn")}
            for name in PARTICLE_NAMES
        },
    }


def lowpass_dataset(root: Path, out: Path, sigma: float) -> Path:
    """A copy of a dataset whose tomograms are Gaussian low-passed (σ in voxels); picks unchanged. Cached."""
    from cryopoint.io import list_runs, read_picks, read_tomogram, tomogram_path, write_ome_zarr, write_run_picks

    if (out / "done").is_file():
        return out
    for run in list_runs(root):
        tomo = read_tomogram(tomogram_path(root, run))
        dest = out / "train" / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"
        filtered = ndimage.gaussian_filter(np.asarray(tomo.data, dtype=np.float32), sigma)
        write_ome_zarr(dest, filtered, tomo.voxel_size, overwrite=True)
        write_run_picks(out, run, read_picks(root, run), overwrite=True)
    (out / "done").write_text(f"low-pass sigma={sigma} of {root}\n")
    return out


def run_blob(root: Path, names: list[str], *, prefilter: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Training-free blob detector on every run; no folds needed beyond threshold tuning."""
    from cryopoint.baselines.blob import detect_blobs
    from cryopoint.io import read_tomogram, tomogram_path

    preds, seconds = [], []
    with PeakRSS() as mem:
        for run in names:
            tomo = read_tomogram(tomogram_path(root, run))
            data = np.asarray(tomo.data, dtype=np.float32)
            start = time.perf_counter()
            data = prefilter(data) if prefilter else data
            preds.append(detect_blobs(data, tomo.voxel_size, min_score=0.0).assign(experiment=run))
            seconds.append(time.perf_counter() - start)
    return {
        "preds": pd.concat(preds, ignore_index=True),
        "train_s": 0.0,
        "infer_s_per_tomo": float(np.mean(seconds)),
        "peak_mib": mem.mib,
        "params": 0,
    }


def network_config(method: str, b: Budget, root: Path, val_runs: list[str], work: Path, name: str, extra=()):
    """The engine config of one network for one fold: base YAML + the budget's shared overrides."""
    from cryopoint.config import load_config

    base = b.heatmap_config if method == "heatmap25d" else "configs/unet3d.yaml"
    shared = [
        f"data.root={root}",
        f"data.val_runs={json.dumps(val_runs)}",
        f"data.crop={list(b.crop)}",
        f"train.steps={b.steps}",
        f"train.batch_size={b.batch_size}",
        f"train.warmup_steps={max(1, b.steps // 20)}",
        f"train.lr={b.lr}",
        f"train.ema_decay={b.ema_decay}",
        "train.class_weights=[1, 1, 2, 1, 2, 1]",
        "data.positive_fraction=0.7",
        # A low floor: thresholds are tuned afterwards, and an early softmax model's class probabilities
        # sit far below a sigmoid heatmap's peaks (a 0.01 floor removed every unet3d peak at 80 steps).
        "post.min_score=0.001",
        f"data.num_workers={b.num_workers}",
        f"train.val_every={b.steps}",
        f"train.out_dir={work}",
        f"train.name={name}",
        f"train.seed={b.seed}",
        f"infer.roi={list(b.roi)}",
    ]
    if method == "unet3d":
        arch = [f"model.channels={list(b.unet_channels)}"]
    else:
        arch = [f"model.encoder={b.encoder}"] if b.encoder else []
    return load_config(REPO / base, [*shared, *arch, *extra])


def train_fold(cfg) -> tuple[Path, float, float]:
    """Train one fold with the engine.

    Returns:
        ``(run_dir, train_s, val_s)``: the run folder (``best.pt``, ``oof_predictions.csv``), training seconds
        without validation, and the seconds of the final validation pass (sliding window + NMS + tuning).
    """
    from cryopoint.engine import train

    start = time.perf_counter()
    run_dir = Path(train(cfg))
    wall = time.perf_counter() - start
    metrics = run_dir / "metrics.jsonl"
    records = (
        [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    )
    vals = [r.get("seconds", 0.0) for r in records if r.get("type") == "val"]
    return run_dir, wall - sum(vals), vals[-1] if vals else float("nan")


def component_picks(ckpt: Path, root: Path, runs: list[str], device: str) -> pd.DataFrame:
    """Connected-component centroids of a segmentation model's held-out runs (the NMS alternative)."""
    from cryopoint.api import load
    from cryopoint.infer import predict_heatmaps
    from cryopoint.io import read_tomogram, tomogram_path
    from cryopoint.post.components import component_centroids

    det = load(ckpt)
    model = det.model.to(device).eval()
    fraction = det.config.data.target_options.radius_fraction  # a segmentation model's sphere-target option
    picks = []
    for run in runs:
        tomo = read_tomogram(tomogram_path(root, run))
        with torch.inference_mode():
            heat, stride = predict_heatmaps(
                model, tomo, roi=det.roi, batch_size=det.config.infer.batch_size, device=device
            )
        cc = component_centroids(heat, voxel_size=tomo.voxel_size, stride=stride, radius_fraction=fraction)
        picks.append(cc.assign(experiment=run))
    return pd.concat(picks, ignore_index=True)


def run_network(method: str, b: Budget, root: Path, folds: dict[str, int], work: Path, device: str, extra=()) -> dict:
    """Train one network per fold with the engine and pool its out-of-fold peaks.

    NMS picks are the engine's own validation output (``oof_predictions.csv``: EMA weights, sliding window,
    ``find_peaks`` with ``post.min_score=0.001``); its validation time per tomogram is the inference time.
    Segmentation models are also decoded by connected components for the centroid comparison.
    """
    tag = work.name
    nms, cc, infer_s, train_s, peak_mib = [], [], [], 0.0, 0.0
    for f in sorted(set(folds.values())):
        val = sorted(r for r, k in folds.items() if k == f)
        cfg = network_config(method, b, root, val, work, f"{method}-fold{f}", extra)
        console.rule(f"[bold]{tag}: {method} fold {f} (validation runs {', '.join(val)})")
        with PeakRSS() as mem:
            run_dir, seconds, val_s = train_fold(cfg)
        train_s, peak_mib = train_s + seconds, max(peak_mib, mem.gpu_mib or mem.mib)
        infer_s.append(val_s / len(val))
        nms.append(pd.read_csv(run_dir / "oof_predictions.csv"))
        if method == "unet3d":
            cc.append(component_picks(run_dir / "best.pt", root, val, device))
    from cryopoint.api import load

    params = sum(p.numel() for p in load(run_dir / "best.pt").model.parameters())
    common = {"train_s": train_s, "infer_s_per_tomo": float(np.mean(infer_s)), "params": params, "peak_mib": peak_mib}
    out = {"nms": {"preds": pd.concat(nms, ignore_index=True), **common}}
    if cc:
        out["cc"] = {"preds": pd.concat(cc, ignore_index=True), **common}
    return out


def pretrain_easy(b: Budget, work: Path, cache_dir: str | None) -> Path:
    """heatmap25d trained on the easy preset (same budget); its checkpoint seeds the transfer setting."""
    from cryopoint.data.cache import ensure_synthetic_dataset
    from cryopoint.io import list_runs

    easy = ensure_synthetic_dataset("easy", runs=b.runs, shape=b.shape, seed=b.seed + 1, cache_dir=cache_dir)
    names = sorted(list_runs(easy))
    cfg = network_config("heatmap25d", b, easy, names[-1:], work, "heatmap25d-easy")
    run_dir, _, _ = train_fold(cfg)
    return run_dir / "best.pt"


def save_predictions(rows: dict[str, dict], folder: Path) -> list[Path]:
    """Pooled out-of-fold picks (with scores) of every row computed in this invocation, one CSV per row.

    They feed ``tools/report.py`` (figures of the comparison); rows read back by ``--extend`` hold no picks.
    """
    from cryopoint.io.atomic import atomic_path

    written = []
    for label, r in rows.items():
        if "preds" not in r:
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        with atomic_path(folder / f"{slug}.csv") as tmp:
            r["preds"].to_csv(tmp, index=False)
        written.append(folder / f"{slug}.csv")
    return written


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--steps", type=int, help="override the budget's training steps (both networks)")
    parser.add_argument("--runs", type=int, help="override the number of synthetic runs")
    parser.add_argument("--shape", type=int, nargs=3, help="override the tomogram shape (z y x)")
    parser.add_argument("--folds", type=int, help="override the number of whole-tomogram folds")
    parser.add_argument("--crop", type=int, nargs=3, help="override the training crop (z y x), both networks")
    parser.add_argument("--no-transfer", action="store_true", help="skip the easy→realistic transfer setting")
    parser.add_argument("--no-lowpass-net", action="store_true", help="low-pass comparison on blob only")
    parser.add_argument(
        "--extend",
        action="store_true",
        help="keep the results already in OUT.json (same budget) and run only the settings missing there",
    )
    parser.add_argument("--rerun-blob", action="store_true", help="with --extend: recompute the blob rows (seconds)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "compare")
    parser.add_argument("--work", type=Path, help="run folders (default runs/compare-<budget>)")
    parser.add_argument("--cache-dir", help="synthetic dataset cache (default: cryopoint's cache)")
    parser.add_argument("--root", type=Path, help="use this dataset (challenge layout) instead of generating one")
    parser.add_argument("--note", action="append", default=[], help="a sentence added to the report (repeatable)")
    args = parser.parse_args(argv)

    from cryopoint.data.cache import ensure_synthetic_dataset
    from cryopoint.data.folds import assign_folds
    from cryopoint.io import list_runs, read_truth

    over = {"steps": args.steps, "runs": args.runs, "shape": tuple(args.shape) if args.shape else None}
    over |= {"folds": args.folds, "crop": tuple(args.crop) if args.crop else None}
    b = dataclasses.replace(BUDGETS[args.budget], **{k: v for k, v in over.items() if v is not None})
    work = args.work or REPO / "runs" / f"compare-{args.budget}"
    device = "cuda" if args.budget == "gpu" and torch.cuda.is_available() else "cpu"
    root = args.root or ensure_synthetic_dataset(
        "realistic", runs=b.runs, shape=b.shape, seed=b.seed, cache_dir=args.cache_dir
    )
    names = sorted(list_runs(root))
    folds = assign_folds(names, b.folds)
    truth = read_truth(root)

    def scored(raw: dict) -> dict:
        return {**raw, **evaluate(raw["preds"], truth, folds)}

    command = "python -m benchmarks.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    pre_title, tr_title = "Preprocessing: Gaussian low-pass before normalisation", "Transfer"
    results, extras, commands, notes = {}, {pre_title: {}, tr_title: {}}, [command], list(args.note)
    if args.extend:
        prev = json.loads(args.out.with_suffix(".json").read_text())
        if prev["budget"] != json.loads(json.dumps(dataclasses.asdict(b))):
            raise SystemExit(f"--extend needs the budget of {args.out.with_suffix('.json')}: {prev['budget']}")
        results, commands = prev["results"], [*prev.get("commands", [prev.get("command")]), command]
        notes = [*prev.get("notes", []), *notes]
        for title, rows in prev["extras"].items():
            extras.setdefault(title, {}).update(rows)
        if args.rerun_blob:
            results["blob (LoG)"] = scored(run_blob(root, names))
            extras[pre_title] = {}
    else:
        console.rule("[bold]blob (LoG)")
        results["blob (LoG)"] = scored(run_blob(root, names))
        unet = run_network("unet3d", b, root, folds, work / "main", device)
        results["unet3d + NMS"] = scored(unet["nms"])
        results["unet3d + components"] = scored(unet["cc"])
        results["heatmap25d"] = scored(run_network("heatmap25d", b, root, folds, work / "main", device)["nms"])

    pre, tr, sigma = extras[pre_title], extras[tr_title], b.lowpass_sigma
    if not pre:
        pre["blob, no low-pass"] = results["blob (LoG)"]
        pre[f"blob, low-pass σ={sigma:g} voxel"] = scored(
            run_blob(root, names, prefilter=lambda v: ndimage.gaussian_filter(v, sigma))
        )
    if not args.no_lowpass_net and "heatmap25d, no low-pass" not in pre:
        low_root = lowpass_dataset(root, work / f"lowpass-{sigma:g}", sigma)
        pre["heatmap25d, no low-pass"] = results["heatmap25d"]
        low = run_network("heatmap25d", b, low_root, folds, work / "lowpass", device)
        pre[f"heatmap25d, low-pass σ={sigma:g} voxel"] = scored(low["nms"])
    if not args.no_transfer and not tr:
        easy_ckpt = pretrain_easy(b, work / "easy", args.cache_dir)
        tr["heatmap25d, realistic only"] = results["heatmap25d"]
        ft = run_network("heatmap25d", b, root, folds, work / "transfer", device, [f"model.pretrained={easy_ckpt}"])
        tr["heatmap25d, encoder from easy, then realistic"] = scored(ft["nms"])
    extras = {k: v for k, v in extras.items() if v}

    meta = {
        "commands": commands,
        "notes": notes,
        "data_root": str(root),
        "truth_counts": {n: int((truth["particle_type"] == n).sum()) for n in PARTICLE_NAMES},
        "budget_name": args.budget,
        "budget": dataclasses.asdict(b),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(device),
        "device": device,
    }
    write_report(results, extras, meta, args.out)
    repeats = [id(r) for r in results.values()]  # the extras' reference rows are main rows again
    rows = {**results, **{m: r for g in extras.values() for m, r in g.items() if id(r) not in repeats}}
    if save_predictions(rows, work / "predictions"):
        console.print(f"Pooled out-of-fold picks in {work / 'predictions'} (figures: tools/report.py --compare)")
    console.print(f"Wrote {args.out.with_suffix('.md')}")
    for line in verdict(results):
        console.print(line)
    return args.out.with_suffix(".md")


if __name__ == "__main__":
    main()
