"""GPU inference speed of the r34 recipe on a full 184 x 630 x 630 tomogram (CUDA only).

    python -m benchmarks.gpu_inference            # writes benchmarks/results/gpu_inference.md

Times, per variant, the sliding-window heatmaps (bf16 autocast) and the CUDA max-pool NMS, after one warm-up
run; reports seconds per tomogram, peak GPU memory and peak host RSS. Weights are random (speed does not depend on
them). The CPU numbers for the quickstart model are in benchmarks/inference.py.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from cryopoint.config import load_config
from cryopoint.infer import predict_heatmaps
from cryopoint.io.atomic import atomic_write_text
from cryopoint.model import build_model
from cryopoint.post.nms import find_peaks
from cryopoint.tomogram import Tomogram

RESULTS = Path(__file__).parent / "results"


def _time(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up (cuDNN autotuning, allocator)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/heatmap_r34.yaml")
    ap.add_argument("--shape", type=int, nargs=3, default=(184, 630, 630))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu_inference.md")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("No CUDA device: this benchmark measures the GPU path only (see benchmarks/inference.py).")
    cfg = load_config(args.config)
    model = build_model(**asdict(cfg.model)).cuda().eval()
    vs = 10.012444
    tomo = Tomogram(np.random.default_rng(0).standard_normal(args.shape).astype(np.float32), vs)
    roi = tuple(cfg.infer.roi)
    variants = {
        f"default (roi {roi}, batch {cfg.infer.batch_size})": dict(batch_size=cfg.infer.batch_size),
        "batch 8": dict(batch_size=8),
        "batch 8, no blending": dict(batch_size=8, blend="constant"),
        "batch 8, flip TTA": dict(batch_size=8, tta=True),
    }
    rows = []
    for name, kw in variants.items():
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            t_heat, (heat, stride) = _time(
                lambda kw=kw: predict_heatmaps(model, tomo, roi=roi, overlap=cfg.infer.overlap, device="cuda", **kw),
                args.repeat,
            )
            heat_gpu = torch.from_numpy(heat).cuda()
            t_nms, peaks = _time(
                lambda h=heat_gpu, s=stride: find_peaks(h, voxel_size=vs, stride=s, min_score=0.05), args.repeat
            )
        rows.append((name, t_heat, t_nms, torch.cuda.max_memory_allocated() / 2**30))
    host_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu = torch.cuda.get_device_name(0)
    table = Table(title=f"{cfg.model.encoder} heatmap25d on {gpu}, tomogram {tuple(args.shape)}")
    for col in ("variant", "heatmaps s", "NMS s", "total s / tomogram", "peak GPU GB"):
        table.add_column(col)
    md = [
        f"# GPU inference: {cfg.model.encoder} heatmap25d, full tomogram {tuple(args.shape)}",
        "",
        f"Device: {gpu}; torch {torch.__version__}; bf16 autocast; median of {args.repeat} after a warm-up; random "
        f"weights; peak host RSS {host_gb:.2f} GB. Command: `python -m benchmarks.gpu_inference`.",
        "",
        "| variant | heatmaps (s) | NMS on GPU (s) | total s / tomogram | peak GPU GB |",
        "|---|---|---|---|---|",
    ]
    for name, th, tn, mem in rows:
        table.add_row(name, f"{th:.2f}", f"{tn:.4f}", f"{th + tn:.2f}", f"{mem:.2f}")
        md.append(f"| {name} | {th:.2f} | {tn:.4f} | {th + tn:.2f} | {mem:.2f} |")
    Console().print(table)
    atomic_write_text(args.out, "\n".join(md) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
