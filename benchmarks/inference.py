"""Whole-tomogram inference benchmark: seconds per tomogram and peak host memory of ``cryopoint.detect``.

Each variant runs in its own spawned process so that its peak resident memory (``ru_maxrss``, imports
included) is its own. Variants, all in the same run so that ratios are fair:

* default: Gaussian-blended overlapping windows (the config's ``infer`` roi and overlap), ``--batch-size`` per pass;
* no blending: windows tiled without overlap (``overlap=0``, constant weights), same batch;
* no batching: the default windows, one per forward pass.

Without ``--checkpoint`` the model is a randomly initialised network of the config's architecture: speed and
memory do not depend on the weights (the heatmap bias prior keeps random-weight peaks as sparse as trained ones).

    python benchmarks/inference.py                      # 184 x 630 x 630, configs/quickstart.yaml, CPU
    python benchmarks/inference.py --shape 64 256 256   # a quick look
    python benchmarks/inference.py --roi 64 192 192 --append   # add rows with smaller windows to the same table
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

VARIANTS = {
    "gaussian blend, batched (default)": {},
    "no blending (tiled, overlap 0)": {"overlap": 0.0, "blend": "constant"},
    "no batching (batch 1)": {"batch_size": 1},
}
DEFAULT_BATCH = 2
RESULTS = Path(__file__).parent / "results"


def _detector(args: argparse.Namespace, variant: dict):
    from cryopoint.api import Detector, load
    from cryopoint.checkpoint import catalogue_payload
    from cryopoint.model import build_model

    if args.checkpoint:
        detector = load(args.checkpoint)
    else:
        cfg = args.resolved_config  # resolved once in the parent: every variant sees the same settings
        model = build_model(**cfg["model"]).eval()
        detector = Detector(model, cfg, catalogue_payload(), (args.voxel_size,) * 3)
    infer = dict(detector.config.get("infer") or {})
    infer.update({k: v for k, v in variant.items() if k == "blend"})
    detector.config = {**detector.config, "infer": infer}
    return detector


def _run_variant(args: argparse.Namespace, variant: dict, device: str, out: mp.Queue) -> None:
    """Child process: build the model, detect in one random tomogram, report time and memory."""
    from cryopoint.api import detect

    torch.set_num_threads(args.threads)
    detector = _detector(args, variant)
    volume = np.random.default_rng(0).standard_normal(args.shape, dtype=np.float32)
    windows = []
    kwargs = {"batch_size": args.batch_size, **{k: v for k, v in variant.items() if k in ("overlap", "batch_size")}}
    if args.roi:
        kwargs["roi"] = tuple(args.roi)
    if device.startswith("cuda"):
        detect(volume[:32, :256, :256], detector, voxel_size=args.voxel_size, device=device)  # warm-up (cuDNN)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    picks = detect(volume, detector, voxel_size=args.voxel_size, device=device, thresholds=0.0,
                   progress=lambda done, total: windows.append(total), **kwargs)  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out.put({
        "seconds": seconds,
        "peak_host_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # Linux: KiB
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "windows": windows[-1] if windows else 0,
        "roi": list(args.roi or detector.roi),
        "peaks": len(picks),
    })  # fmt: skip


def measure(args: argparse.Namespace, variant: dict, device: str) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_run_variant, args=(args, variant, device, out))
    proc.start()
    result = out.get()
    proc.join()
    return result


def _markdown(rows: list[dict], args: argparse.Namespace, model_note: str, gpu_note: str) -> str:
    lines = [
        "# Inference benchmark (`benchmarks/inference.py`)",
        "",
        f"Tomogram {' x '.join(map(str, args.shape))} voxels (random float32), {model_note}; "
        f"batched = {args.batch_size} windows per forward pass.",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} torch thread(s). Peak host memory = the process's maximum resident set, imports included.",
        "",
        "| device | variant | windows (roi z, y, x) | seconds / tomogram | x default | peak host GB | peak GPU GB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gpu = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        roi = " x ".join(map(str, r["roi"]))
        lines.append(f"| {r['device']} | {r['variant']} | {r['windows']} ({roi}) | {r['seconds']:.1f} | "
                     f"{r['ratio']:.2f} | {r['peak_host_gb']:.2f} | {gpu} |")  # fmt: skip
    lines += [
        "",
        "`x default` compares variants of the same window size, measured in the same invocation. Host memory is "
        "dominated by one batch of window activations (a 2.5D model runs roi_z images of roi_y x roi_x per "
        "window), so `batch_size` and `roi` (`detect(roi=...)`, `tools/detect.py --roi`) are the memory knobs.",
        "",
        gpu_note,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[184, 630, 630], help="tomogram size (z, y, x) voxels")
    parser.add_argument("--config", default="configs/quickstart.yaml", help="architecture and infer settings")
    parser.add_argument("--checkpoint", help="a trained checkpoint instead of a random model of --config")
    parser.add_argument("--voxel-size", type=float, default=10.012444)
    parser.add_argument("--roi", type=int, nargs=3, help="window size z y x (default: the config's infer.roi)")
    parser.add_argument("--append", action="store_true", help="keep the rows already in --out's JSON")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="windows per pass when batched")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--out", type=Path, default=RESULTS / "inference")
    args = parser.parse_args()
    from cryopoint.config import config_to_dict, load_config

    args.resolved_config = None if args.checkpoint else config_to_dict(load_config(args.config))

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    previous = args.out.with_suffix(".json")
    rows = json.loads(previous.read_text())["rows"] if args.append and previous.is_file() else []
    for device in devices:
        for name, variant in VARIANTS.items():
            result = {"device": device, "variant": name, **measure(args, variant, device)}
            rows.append(result)
        base = rows[-len(VARIANTS)]["seconds"]
        for r in rows[-len(VARIANTS) :]:
            r["ratio"] = r["seconds"] / base
    if args.checkpoint:
        model_note = f"trained checkpoint {args.checkpoint}"
    else:
        model_note = f"randomly initialised model of {args.config} (speed and memory do not depend on the weights)"
    gpu_note = (
        "GPU rows measured with bf16 autocast."
        if torch.cuda.is_available()
        else "No CUDA device on this machine: no GPU numbers (rerun this script on a GPU machine to add them)."
    )
    table = Table(title=f"cryopoint.detect on {' x '.join(map(str, args.shape))}: {model_note}")
    for col in ("device", "variant", "roi", "windows", "s / tomogram", "x default", "peak host GB", "peak GPU GB"):
        table.add_column(col)
    for r in rows:
        gpu = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        table.add_row(r["device"], r["variant"], " x ".join(map(str, r["roi"])), str(r["windows"]),
                      f"{r['seconds']:.1f}", f"{r['ratio']:.2f}", f"{r['peak_host_gb']:.2f}", gpu)  # fmt: skip
    console = Console()
    console.print(table)
    console.print(gpu_note)

    from cryopoint.io.atomic import atomic_write_text

    atomic_write_text(args.out.with_suffix(".md"), _markdown(rows, args, model_note, gpu_note))
    payload = {"shape": args.shape, "model": model_note, "threads": args.threads, "rows": rows}
    # Ratios are within one invocation (same machine load); appended rows keep their own baseline.
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(payload, indent=1, default=str))
    console.print(f"Wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
