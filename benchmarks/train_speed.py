"""Training speed of heatmap25d: samples/s and peak memory of one forward + backward + AdamW step.

Encoders resnet18 and resnet34 (and the quickstart's tiny resnet10t as a reference point) at the default
training crop, on this machine's CPU (fp32) and, when CUDA is available, on the GPU (bf16 autocast, the
engine's setting). Each configuration runs in a fresh process, so the peak-memory figures do not see each
other. Writes ``benchmarks/results/train_speed.md`` and ``.json``::

    python -m benchmarks.train_speed                 # CPU (and GPU if present), 3 timed steps each
    python -m benchmarks.train_speed --steps 10 --models resnet18 resnet18:2

A model is ``ENCODER`` (slab 5, every depth position encoded) or ``ENCODER:2`` (``slab_step=2``, slab 4: the
encoder runs on every other depth position); the ratio column is against plain ``resnet18`` in the same run.

Default crop 32 x 128 x 128 (z, y, x), the crop of the configs' GPU recipe: 32 slices (320 Å at 10 Å) hold
a whole ribosome (diameter 30 voxels) in depth, 128 x 128 gives several particles plus context, and every
side is a multiple of the model's ``input_multiple`` (4, 32, 32), so no padding is timed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from cryopoint.io.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(spec: str, device: str, crop: tuple[int, int, int], batch: int, steps: int, threads: int) -> dict:
    """Time ``steps`` training steps after one warm-up step; runs in a child process (fresh memory counters)."""
    from cryopoint.engine.losses import get_loss
    from cryopoint.model import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder, _, step = spec.partition(":")
    slab_step = int(step or 1)
    slab = 5 if slab_step == 1 else 4
    model = build_model("heatmap25d", encoder=encoder, slab=slab, slab_step=slab_step, output_stride=2)
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = get_loss("mse")
    s = model.output_stride
    x = torch.randn(batch, 1, *crop, device=device)
    target = torch.rand(batch, model.num_classes, *(n // s for n in crop), device=device)
    cuda = device.startswith("cuda")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss_fn(logits, target, None).backward()
        opt.step()

    base = _rss_mib()
    step()  # warm-up: allocator, cudnn autotuning, AdamW state
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is KiB on Linux: the process peak, minus what the process held before the first step
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {
        "model": spec,
        "encoder": encoder,
        "slab": f"{slab} (step {slab_step})",
        "device": device,
        "precision": "bf16 autocast" if cuda else "fp32",
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch": batch,
        "steps": steps,
        "s_per_step": seconds / steps,
        "samples_per_s": batch * steps / seconds,
        "peak_mib": peak,
    }


def _markdown(rows: list[dict], args: argparse.Namespace, notes: list[str]) -> str:
    lines = [
        "# heatmap25d training speed",
        "",
        f"Forward + backward + AdamW step, crop {tuple(args.crop)} (z, y, x), output stride 2, default decoder, "
        f"MSE loss; {args.steps} timed steps after 1 warm-up step. Command: `{args.command}`.",
        "",
        *[f"- {n}" for n in notes],
        "",
        "| encoder | slab | device | precision | params (M) | batch | s/step | samples/s | vs resnet18 | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['encoder']} | {r['slab']} | {r['device']} | {r['precision']} | {r['params_m']:.1f} | {r['batch']} | "
            f"{r['s_per_step']:.2f} | {r['samples_per_s']:.2f} | {r['ratio']} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet34", "resnet18:2", "resnet10t"])
    ap.add_argument("--crop", type=int, nargs=3, default=(32, 128, 128))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--cpu-batch", type=int, default=2)
    ap.add_argument("--gpu-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", type=Path, default=RESULTS / "train_speed.md")
    args = ap.parse_args(argv)
    args.command = " ".join(["python -m benchmarks.train_speed", *(sys.argv[1:] if argv is None else argv)])
    console = Console(width=120)
    notes = [
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"{args.threads} torch threads (shared with other jobs on this machine: absolute CPU figures are noisy, "
        "compare the ratios)."
    ]
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        notes.append(f"GPU: {torch.cuda.get_device_name(0)}.")
    else:
        notes.append("GPU: CUDA is not available on this machine, so no GPU figures were measured.")
    rows = []
    ctx = mp.get_context("spawn")
    for device in devices:
        batch = args.gpu_batch if device == "cuda" else args.cpu_batch
        for spec in args.models:
            with console.status(f"{spec} on {device}: 1 warm-up + {args.steps} timed steps, batch {batch}"):
                with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                    job = pool.submit(measure, spec, device, tuple(args.crop), batch, args.steps, args.threads)
                    rows.append(job.result())
    for r in rows:
        ref = next((q for q in rows if q["device"] == r["device"] and q["model"] == "resnet18"), None)
        r["ratio"] = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref else "n/a"
    table = Table(title=f"heatmap25d training step, crop {tuple(args.crop)}")
    cols = (
        "encoder",
        "slab",
        "device",
        "precision",
        "params (M)",
        "batch",
        "s/step",
        "samples/s",
        "vs r18",
        "peak MiB",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("encoder", "slab", "device", "precision") else "right")
    for r in rows:
        table.add_row(
            r["encoder"], r["slab"], r["device"], r["precision"], f"{r['params_m']:.1f}", str(r["batch"]),
            f"{r['s_per_step']:.2f}", f"{r['samples_per_s']:.2f}", f"{r['ratio']}", f"{r['peak_mib']:.0f}",
        )  # fmt: skip
    console.print(table)
    for n in notes:
        console.print(n)
    atomic_write_text(args.out, _markdown(rows, args, notes))
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"crop": args.crop, "rows": rows}, indent=2) + "\n")
    console.print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
