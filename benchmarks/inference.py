"""Whole-tomogram inference benchmark: seconds, peak host memory and score of ``cryopoint.detect`` per variant.

One labelled full-size tomogram is simulated once (default: 184 x 630 x 630 voxels of the `randomized` preset, a
seed the shipped model never trained on); every variant then detects in it in its own spawned process, whose peak
resident memory (``VmHWM``: imports, model and tomogram included; not ``ru_maxrss``, which Linux carries over
from the parent across exec) is its own. All variants run in the same invocation, one after another, so the
ratios against the first ("plain") are fair on a shared machine. The checkpoint's thresholds throughout.

Variants with the reference windows (64 x 192 x 192, overlap 0.25: the validation windows of training, so the
thresholds were tuned with them): plain fp32 PyTorch (the network as trained, the reference every row is
compared with); ``fast_cpu`` (BatchNorm folded and channels_last, ``cryopoint.model.optimize``); that plus
``cpu_bf16`` (bfloat16 autocast); ONNX Runtime (``infer.runtime``, the ``cryopoint[onnx]`` extra; its one-off
export, cached per window shape, is timed apart). Then the faster settings with 96 x 320 x 320 windows at overlap
0 (2 x 2 x 2 windows on a 184 x 630 x 630 tomogram, 1.07x its voxels instead of 3.2x): scores stay those of the
reference only for a network whose scores do not depend on the window (``model.decoder_norm: batch``); and
96 x 224 x 224 windows (2 x 3 x 3, 1.18x the voxels) for less memory.

    python -m benchmarks.inference                         # the shipped model, every variant, CPU (~20 min on 2 cores)
    python -m benchmarks.inference --shape 96 320 320      # a quick look
    python -m benchmarks.inference --checkpoint runs/x/best.pt --out /tmp/inference
    python -m benchmarks.inference --seed 1001 1002 1003 --variants 0 6   # several tomograms: pooled score

With several ``--seed`` values each variant detects in every tomogram: time is the mean per tomogram, the score
is pooled, and the table adds the difference vs plain on each tomogram alone (how much one tomogram's luck moves).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.bench_common import machine, peak_rss_gb, run_in_child, timed_detect

RESULTS = Path(__file__).parent / "results"
PLAIN = {"roi": [64, 192, 192], "overlap": 0.25, "fast_cpu": False, "cpu_bf16": False, "runtime": "torch"}
BIG = {"roi": [96, 320, 320], "overlap": 0.0}
MID = {"roi": [96, 224, 224], "overlap": 0.0}  # 2 x 3 x 3 windows on 184 x 630 x 630: less memory than BIG
#: (name, infer overrides). PLAIN's windows are those of validation during training (thresholds tuned with them).
VARIANTS = [
    ("plain fp32 PyTorch, reference windows", PLAIN),
    ("fast_cpu (BatchNorm folded, channels_last)", {**PLAIN, "fast_cpu": True}),
    ("fast_cpu + cpu_bf16", {**PLAIN, "fast_cpu": True, "cpu_bf16": True}),
    ("onnxruntime (the shipped default where installed)", {**PLAIN, "runtime": "onnxruntime"}),
    ("onnxruntime, 96x320x320 windows, overlap 0", {**PLAIN, **BIG, "runtime": "onnxruntime"}),
    ("fast_cpu + cpu_bf16, 96x320x320, overlap 0", {**PLAIN, **BIG, "fast_cpu": True, "cpu_bf16": True}),
    ("fast_cpu (fp32), 96x320x320, overlap 0", {**PLAIN, **BIG, "fast_cpu": True}),
    ("onnxruntime, 96x224x224 windows, overlap 0", {**PLAIN, **MID, "runtime": "onnxruntime"}),
    ("fast_cpu (fp32), 96x224x224, overlap 0", {**PLAIN, **MID, "fast_cpu": True}),
    # Seam margin: 2 x 2 x 2 windows that overlap by more than BIG's 8 (z) and 10 (y, x) voxels.
    ("fast_cpu (fp32), 96x352x352, overlap 0", {**PLAIN, "roi": [96, 352, 352], "overlap": 0.0, "fast_cpu": True}),
    ("fast_cpu (fp32), 104x352x352, overlap 0", {**PLAIN, "roi": [104, 352, 352], "overlap": 0.0, "fast_cpu": True}),
    ("fast_cpu (fp32), 128x320x320, overlap 0", {**PLAIN, "roi": [128, 320, 320], "overlap": 0.0, "fast_cpu": True}),
    # Overlap at the reference window size: do the big windows lose score to their size or to having no overlap?
    (
        "fast_cpu + cpu_bf16, reference windows at overlap 0.125",
        {**PLAIN, "overlap": 0.125, "fast_cpu": True, "cpu_bf16": True},
    ),
    ("fast_cpu + cpu_bf16, 64x192x192, overlap 0", {**PLAIN, "overlap": 0.0, "fast_cpu": True, "cpu_bf16": True}),
    (
        "fast_cpu + cpu_bf16, 112x352x352, overlap 0",
        {**PLAIN, "roi": [112, 352, 352], "overlap": 0.0, "fast_cpu": True, "cpu_bf16": True},
    ),
]
GPU_VARIANTS = [
    ("cuda (bf16 autocast always), reference windows", PLAIN),
    ("cuda (bf16 autocast always), 96x320x320, overlap 0 (the shipped windows)", {**PLAIN, **BIG}),
]


def _simulate(args: argparse.Namespace, folder: Path) -> dict:
    """One labelled tomogram per seed, saved as ``volume_SEED.npy`` and ``truth_SEED.csv``."""
    from cryopoint.synth import get_preset, simulate_run

    params = get_preset(args.preset)
    particles = {}
    for seed in args.seed:
        volume, truth = simulate_run(tuple(args.shape), params, np.random.default_rng(seed))
        np.save(folder / f"volume_{seed}.npy", volume.astype(np.float32))
        truth.to_csv(folder / f"truth_{seed}.csv", index=False)
        particles[seed] = int(len(truth))
    return {"voxel_size": float(params.voxel_size), "particles": sum(particles.values()), "per_seed": particles}


def _run_variant(args: argparse.Namespace, folder: Path, overrides: dict, device: str, out: mp.Queue) -> None:
    """Child process: load the detector, detect in each simulated tomogram, report time (mean per tomogram), peak
    memory and score (pooled over the tomograms, and per tomogram)."""
    from cryopoint.api import load
    from cryopoint.metric import score

    torch.set_num_threads(args.threads)
    detector = load(args.checkpoint)
    infer = dataclasses.replace(detector.config.infer, **{k: v for k, v in overrides.items() if v is not None})
    detector.config.infer = infer
    volume = np.load(folder / f"volume_{args.seed[0]}.npy", mmap_mode="r")
    before = peak_rss_gb()
    export_seconds = 0.0
    if infer.runtime != "torch" and device == "cpu":  # export once (cached) before timing, as a user's 2nd call
        from cryopoint.infer import predict_heatmaps
        from cryopoint.tomogram import Tomogram

        start = time.perf_counter()
        roi = [min(r, n) for r, n in zip(infer.roi, volume.shape)]
        with torch.inference_mode():
            predict_heatmaps(detector.model, Tomogram(np.zeros(roi, np.float32), args.voxel_size), roi=roi,
                             normalized=True, runtime=infer.runtime)  # fmt: skip
        export_seconds = time.perf_counter() - start
    runs, truths, picks = [], [], []
    for seed in args.seed:
        volume = np.load(folder / f"volume_{seed}.npy", mmap_mode="r")
        runs.append(timed_detect(volume, detector, args.voxel_size, device))
        picks.append(runs[-1]["picks"].assign(experiment=f"seed{seed}"))
        truths.append(pd.read_csv(folder / f"truth_{seed}.csv").assign(experiment=f"seed{seed}"))
    run = runs[0]
    result = score(pd.concat(truths, ignore_index=True), pd.concat(picks, ignore_index=True))
    per_seed = [score(t, p).score for t, p in zip(truths, picks)]
    out.put({
        "seconds": float(np.mean([r["seconds"] for r in runs])),
        "export_seconds": export_seconds,
        "peak_host_gb": peak_rss_gb(),
        "before_gb": before,
        "peak_gpu_gb": run["peak_gpu_gb"],
        "windows": run["windows"],
        "roi": [int(r) for r in infer.roi],
        "overlap": float(infer.overlap),
        "picks": int(sum(len(p) for p in picks)),
        "score": float(result.score),
        "per_seed": [float(x) for x in per_seed],
    })  # fmt: skip


def measure(args: argparse.Namespace, folder: Path, overrides: dict, device: str) -> dict:
    return run_in_child(_run_variant, args, folder, overrides, device)


def _count(seeds: list[int]) -> str:
    return {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five"}.get(len(seeds), str(len(seeds)))


def _markdown(rows: list[dict], args: argparse.Namespace, sim: dict) -> str:
    lines = [
        "# Inference benchmark (`benchmarks/inference.py`)",
        "",
        f"{_count(args.seed)} simulated `{args.preset}` tomogram{'s' if len(args.seed) > 1 else ''} (seed "
        f"{', '.join(map(str, args.seed))}; {' x '.join(map(str, args.shape))} voxels of {sim['voxel_size']:.2f} Å, "
        f"{sim['particles']} particles), checkpoint `{args.checkpoint}` with its own "
        f"thresholds. {machine()}. Peak host memory = the variant process's peak resident set (VmHWM: imports, "
        "model and the tomogram included).",
        "",
        "| device | variant | windows (roi z, y, x; overlap) | seconds / tomogram | x plain | peak host GB "
        "| peak GPU GB | picks | weighted F-beta | Δ vs plain"
        + (" | Δ per tomogram |" if len(args.seed) > 1 else " |"),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if len(args.seed) > 1 else ""),
    ]
    for r in rows:
        gpu = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        roi = " x ".join(map(str, r["roi"]))
        lines.append(
            f"| {r['device']} | {r['variant']} | {r['windows']} ({roi}; {r['overlap']:g}) | {r['seconds']:.1f}"
            + (f" (+{r['export_seconds']:.0f} to export, once)" if r["export_seconds"] else "")
            + " | "
            f"{r['speedup']:.2f} | {r['peak_host_gb']:.2f} | {gpu} | {r['picks']} | {r['score']:.3f} | "
            f"{r['score'] - r['plain_score']:+.3f} |"
            + (
                " " + " / ".join(f"{a - b:+.3f}" for a, b in zip(r["per_seed"], r["plain_per_seed"])) + " |"
                if len(args.seed) > 1
                else ""
            )
        )
    lines += [
        "",
        "`x plain` is the plain variant's time over this variant's, measured in the same invocation. The score is "
        "the challenge's weighted F-beta (β = 4) against the simulation's truth at the checkpoint's shipped "
        f"thresholds, pooled over the {_count(args.seed).lower()} tomogram{'s' if len(args.seed) > 1 else ''} "
        f"({sim['particles']} particles: compare variants with each other rather than read the absolute value as the "
        "model's accuracy; that is in `default_model.md`)"
        + (
            "; `Δ per tomogram` is the same difference on each tomogram alone, in seed order: its spread shows how "
            "much of a pooled Δ one tomogram's luck can make."
            if len(args.seed) > 1
            else "."
        ),
        "",
        "No CUDA device on this machine: no GPU rows." if not torch.cuda.is_available() else "GPU: bf16 autocast.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[184, 630, 630], help="tomogram size (z, y, x) voxels")
    parser.add_argument("--checkpoint", default="default", help="checkpoint to run (default: the shipped model)")
    parser.add_argument("--preset", default="randomized", help="synthetic preset of the labelled tomogram")
    parser.add_argument(
        "--seed", type=int, nargs="+", default=[1000], help="simulation seeds, one tomogram each (unseen in training)"
    )
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--variants", type=int, nargs="*", help="indices of VARIANTS to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "inference")
    args = parser.parse_args(argv)
    console = Console()

    rows = []
    with tempfile.TemporaryDirectory(prefix="cryopoint-inference-") as tmp:
        folder = Path(tmp)
        with console.status(f"Simulating {len(args.seed)} x {' x '.join(map(str, args.shape))} `{args.preset}`"):
            sim = _simulate(args, folder)
        args.voxel_size = sim["voxel_size"]
        plan = [("cpu", n, o) for i, (n, o) in enumerate(VARIANTS) if args.variants is None or i in args.variants]
        if torch.cuda.is_available():
            plan += [("cuda", n, o) for n, o in GPU_VARIANTS]
        for device, name, overrides in plan:
            with console.status(f"{device}: {name}"):
                row = {"device": device, "variant": name, **measure(args, folder, overrides, device)}
            console.print(f"{device} | {name}: {row['seconds']:.1f} s, {row['peak_host_gb']:.2f} GB, "
                          f"F-beta {row['score']:.3f}")  # fmt: skip
            rows.append(row)
    for r in rows:
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
        r["plain_score"] = rows[0]["score"]
        r["plain_per_seed"] = rows[0]["per_seed"]

    table = Table(title=f"cryopoint.detect on {' x '.join(map(str, args.shape))} ({args.checkpoint})")
    for col in ("device", "variant", "windows", "s / tomogram", "x plain", "peak host GB", "F-beta", "Δ"):
        table.add_column(col)
    for r in rows:
        delta = f"{r['score'] - r['plain_score']:+.3f}"
        table.add_row(r["device"], r["variant"], str(r["windows"]), f"{r['seconds']:.1f}", f"{r['speedup']:.2f}",
                      f"{r['peak_host_gb']:.2f}", f"{r['score']:.3f}", delta)  # fmt: skip
    console.print(table)

    from cryopoint.io.atomic import atomic_write_text

    atomic_write_text(args.out.with_suffix(".md"), _markdown(rows, args, sim))
    payload = {"shape": args.shape, "checkpoint": args.checkpoint, "preset": args.preset, "seed": args.seed,
               "threads": args.threads, "simulation": sim, "rows": rows}  # fmt: skip
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(payload, indent=1, default=str))
    console.print(f"Wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return args.out.with_suffix(".md")


if __name__ == "__main__":
    main()
