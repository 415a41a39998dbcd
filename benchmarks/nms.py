"""Benchmark the peak finder against a scipy maximum_filter reference and dense torch max_pool3d.

Builds realistic heatmaps (Gaussian blobs at the training runs' particle densities, weaker false blobs,
low background noise) of shape (6, 184, 630, 630), then times, per method, the peaks of all 6 classes with
the per-class windows of ``cryopoint.post.nms.kernel_size``: cryopoint's ``local_maxima`` (CPU), the
scipy ``maximum_filter`` reference, dense ``torch.nn.functional.max_pool3d`` (on a crop and extrapolated
when the full volume would take minutes) and, when CUDA is available (or with ``--torch-device``), the
device path (the torch sparse cascade) beside a dense separable max-pool on the same device. Peak sets are
compared with the reference. Writes ``benchmarks/results/nms.md``.

    python -m benchmarks.nms                       # full size, ~1 min of CPU
    python -m benchmarks.nms --shape 64 160 160    # quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from benchmarks.bench_common import PeakRSS
from cryopoint.io.atomic import atomic_write_text
from cryopoint.particles import PARTICLES
from cryopoint.post.nms import (
    _dense_local_maxima_torch,
    find_peaks,
    kernel_size,
    local_maxima,
    local_maxima_torch,
    reference_local_maxima,
)

VOXEL = 10.012444
# mean particles per (184, 630, 630) training run, per class (task.md's totals / 7), and false blobs
COUNTS = (54, 12, 16, 47, 36, 16)


def make_heatmaps(shape, seed=0, noise=0.02) -> np.ndarray:
    """(6, Z, Y, X) float32 heatmaps: blobs of sigma 0.4 x radius, peak 0.3-1, plus uniform noise."""
    rng = np.random.default_rng(seed)
    scale = np.prod(shape) / (184 * 630 * 630)
    heat = (rng.random((len(PARTICLES), *shape), dtype=np.float32) * noise).astype(np.float32)
    for c, p in enumerate(PARTICLES):
        sigma = 0.4 * p.radius / VOXEL
        n = max(1, round(COUNTS[c] * scale * 1.5))  # 1.5x: a third are weaker false positives
        r = int(np.ceil(3 * sigma))
        for centre, amp in zip(rng.uniform(0, 1, (n, 3)) * np.array(shape), rng.uniform(0.3, 1.0, n)):
            lo = np.maximum(np.floor(centre).astype(int) - r, 0)
            hi = np.minimum(np.floor(centre).astype(int) + r + 1, shape)
            zz, yy, xx = (np.arange(a, b) - x for a, b, x in zip(lo, hi, centre))
            blob = amp * np.exp(
                -(zz[:, None, None] ** 2 + yy[None, :, None] ** 2 + xx[None, None, :] ** 2) / (2 * sigma**2)
            )
            view = heat[c, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            np.maximum(view, blob.astype(np.float32), out=view)
    return heat


def run(method, heat, kernels, min_score, repeat=1):
    """Time ``method(volume, kernel, min_score)`` over all classes (median of ``repeat`` runs).

    Returns:
        (seconds, MiB above the start in the first run, list of per-class peak sets).
    """
    times, mibs = [], []
    for _ in range(repeat):
        with PeakRSS(interval=0.002) as mem:
            t0 = time.perf_counter()
            peaks = [method(heat[c], k, min_score) for c, k in enumerate(kernels)]
            peaks = [p.cpu().numpy() if isinstance(p, torch.Tensor) else p for p in peaks]  # waits for the device
            times.append(time.perf_counter() - t0)
        mibs.append(mem.mib)
    return float(np.median(times)), mibs[0], [set(map(tuple, p.tolist())) for p in peaks]


def time_find_peaks(heat, min_score, repeat):
    """Median seconds of the end-to-end ``find_peaks`` (picks table included) and its per-class voxel sets."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = find_peaks(heat, voxel_size=VOXEL, min_score=min_score, top_k=None)
        times.append(time.perf_counter() - t0)
    sets = [
        set(
            map(
                tuple, table.loc[table.particle_type == p.name, ["z_vox", "y_vox", "x_vox"]].astype(int).values.tolist()
            )
        )
        for p in PARTICLES
    ]
    return float(np.median(times)), sets


def _mib(m: float) -> str:
    return "n/a" if np.isnan(m) else f"{m:.0f}"


def torch_dense(volume, kernel, min_score):
    """CenterNet-style dense NMS: one 3D max_pool3d with the full window."""
    x = torch.from_numpy(volume)[None, None]
    mx = F.max_pool3d(x, kernel_size=tuple(kernel), stride=1, padding=tuple(k // 2 for k in kernel))
    return torch.nonzero((x == mx) & (x >= min_score))[:, 2:].numpy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(184, 630, 630))
    ap.add_argument("--min-score", type=float, default=0.05)
    ap.add_argument("--crop-fraction", type=int, default=16, help="dense torch runs on 1/N of the voxels")
    ap.add_argument("--repeat", type=int, default=3, help="median of N runs for the fast methods (scipy: 1)")
    ap.add_argument("--torch-device", help="also time the torch path on this device (default: cuda when available)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "nms.md")
    args = ap.parse_args(argv)
    console = Console()
    with console.status("building heatmaps"):
        heat = make_heatmaps(tuple(args.shape))
    kernels = [kernel_size(p.radius, VOXEL) for p in PARTICLES]
    rows = []

    def add(name, seconds, mib, sets, reference, note=""):
        verdict = "identical" if sets == reference else "DIFFERENT"
        rows.append((name, seconds, mib, t_ref / seconds, verdict + note))

    t_ref, m_ref, ref = run(reference_local_maxima, heat, kernels, args.min_score)
    rows.append(("scipy maximum_filter reference (CPU)", t_ref, m_ref, 1.0, "reference"))
    add("cryopoint local_maxima (CPU)", *run(local_maxima, heat, kernels, args.min_score, args.repeat), ref)
    with PeakRSS(interval=0.002) as mem:
        t_fp, fp_sets = time_find_peaks(heat, args.min_score, args.repeat)
    add("cryopoint find_peaks (CPU, picks table)", t_fp, mem.mib, fp_sets, ref)
    zc = max(1, args.shape[0] // args.crop_fraction)
    crop = np.ascontiguousarray(heat[:, :zc])
    t_d, m_d, dense = run(torch_dense, crop, kernels, args.min_score)
    ref_crop = run(reference_local_maxima, crop, kernels, args.min_score)[2]
    scale = args.shape[0] / zc
    add(
        f"torch max_pool3d dense (CPU), {zc}/{args.shape[0]} slices x{scale:.1f}",
        t_d * scale,
        m_d,
        dense,
        ref_crop,
        " (crop)",
    )
    device = args.torch_device or ("cuda" if torch.cuda.is_available() else None)
    if device:
        dev_heat = torch.from_numpy(heat).to(device)
        run(local_maxima_torch, dev_heat, kernels, args.min_score)  # warm-up: kernels, allocator
        run(_dense_local_maxima_torch, dev_heat[:, :8], kernels, args.min_score)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t_g, m_g, g_sets = run(local_maxima_torch, dev_heat, kernels, args.min_score, args.repeat)
        if device.startswith("cuda"):
            m_g = (torch.cuda.max_memory_allocated() - dev_heat.nbytes) / 2**20
        add(f"cryopoint local_maxima_torch ({device}, sparse cascade)", t_g, m_g, g_sets, ref)
        # The dense separable max-pool (the device path before the cascade, now its fallback) in the same run.
        dense_repeat = args.repeat if dev_heat.is_cuda else 1  # ~1 min per run on a 2-core CPU
        t_s, m_s, s_sets = run(_dense_local_maxima_torch, dev_heat, kernels, args.min_score, dense_repeat)
        if device.startswith("cuda"):
            m_s = (torch.cuda.max_memory_allocated() - dev_heat.nbytes) / 2**20
        add(f"separable max_pool, dense ({device})", t_s, m_s, s_sets, ref, f"; cascade {t_s / t_g:.1f}x faster")
        if dev_heat.device.type != "cpu":  # CPU tensors take the numpy path timed above
            t_gf, gf_sets = time_find_peaks(dev_heat, args.min_score, args.repeat)
            add(f"cryopoint find_peaks ({device}, picks table)", t_gf, float("nan"), gf_sets, ref)
    n_peaks = sum(len(p) for p in ref)
    cuda_note = (
        f"CUDA: {torch.cuda.get_device_name()}; its memory column is the peak CUDA allocation above the heatmaps."
        if torch.cuda.is_available()
        else "CUDA: not available on this machine; the script measures the CUDA path when it is."
    )
    table = Table(title=f"3D NMS, heatmaps (6, {', '.join(map(str, args.shape))}), {n_peaks} reference peaks")
    for col in ("method", "time (s)", "peak memory (MiB)", "speed-up vs scipy", "peak sets"):
        table.add_column(col, justify="left" if col in ("method", "peak sets") else "right")
    for name, t, m, s, a in rows:
        table.add_row(name, f"{t:.4f}", _mib(m), f"{s:.3g}x", a)
    console.print(table)
    console.print(cuda_note)
    lines = [
        "# 3D NMS benchmark (`python -m benchmarks.nms`)",
        "",
        f"Heatmaps (6, {', '.join(map(str, args.shape))}) float32, min_score {args.min_score}, windows "
        f"{[k[0] for k in kernels]} (kernel_factor 0.5); {n_peaks} reference peaks. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores visible, torch threads {torch.get_num_threads()}. "
        "Memory: peak RSS above the start of each method.",
        "",
        "| method | time (s) | peak memory (MiB) | speed-up vs scipy | peak sets |",
        "|---|---:|---:|---:|---|",
        *(f"| {n} | {t:.4f} | {_mib(m)} | {s:.3g}x | {a} |" for n, t, m, s, a in rows),
        "",
        f"Fast methods: median of {args.repeat} runs; scipy and dense torch: one run. The dense torch time is "
        "measured on the first slices and scaled to the full depth (it takes minutes otherwise); its peak set is "
        "compared with the reference on that crop. Timings share the CPU with other jobs: compare ratios "
        "within this table, not across runs.",
        cuda_note,
        "",
    ]
    atomic_write_text(args.out, "\n".join(lines))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
