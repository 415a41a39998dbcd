"""Ensemble inference benchmark: seconds and peak memory of ``cryopoint.detect`` with a k-member ensemble (the
checkpoint a k-fold training writes) against one member, on the same tomogram, in one invocation.

Time and memory do not depend on what the networks learned, so the members are untrained networks of the config's
architecture (``model`` section; ``pretrained`` ignored), written as an ordinary checkpoint (one member) and as an
ensemble checkpoint (k members, :func:`cryopoint.engine.kfold.ensemble_payload`). The tomogram is Gaussian noise of
the given shape (peak finding then works on noise, a near worst case for the number of peaks). Each variant runs in
its own spawned process, whose peak resident memory (``VmHWM``: imports, models and the tomogram included) is its
own; on CUDA the peak allocated GPU memory is reported too. The config's inference settings throughout
(``infer.*``: window, overlap, batch, ``fast_cpu``, ``runtime``).

    python -m benchmarks.ensemble                                   # quickstart architecture, 4 members, full size
    python -m benchmarks.ensemble --config configs/heatmap_r34.yaml --members 5
    python -m benchmarks.ensemble --quick --out /tmp/ensemble       # a seconds-long check of the script itself
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.bench_common import machine, peak_rss_gb, run_in_child, timed_detect

RESULTS = Path(__file__).parent / "results"
VOXEL_SIZE = 10.012444
FULL_SHAPE = [184, 630, 630]
QUICK_SHAPE = [32, 96, 96]


def _write_checkpoints(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """``single.pt`` (one untrained member) and ``ensemble.pt`` (``args.members`` of them)."""
    from cryopoint.checkpoint import catalogue_payload, save_checkpoint
    from cryopoint.config import config_to_dict, load_config
    from cryopoint.engine.kfold import ensemble_payload
    from cryopoint.model import build_model

    cfg = load_config(args.config)
    if hasattr(cfg.model, "pretrained"):
        cfg.model.pretrained = ""  # untrained members: no encoder weights file needed
    members = []
    for seed in range(args.members):
        torch.manual_seed(seed)
        net = build_model(**config_to_dict(cfg)["model"])
        members.append({"model_state": net.state_dict(), "ema_state": None, "config": config_to_dict(cfg),
                        "particles": catalogue_payload(), "voxel_size": [VOXEL_SIZE] * 3, "step": 0})  # fmt: skip
    single = save_checkpoint(folder / "single.pt", members[0])
    sources = [Path(f"member{i}") for i in range(args.members)]
    ensemble = save_checkpoint(folder / "ensemble.pt", ensemble_payload(cfg, members, sources, {}))
    return {"single": single, "ensemble": ensemble}


def _run_variant(args: argparse.Namespace, checkpoint: Path, volume_path: Path, device: str, out: mp.Queue) -> None:
    """Child process: load the detector, detect in the tomogram, report time and memory."""
    from cryopoint.api import load
    from cryopoint.infer import resolve_runtime

    torch.set_num_threads(args.threads)
    detector = load(checkpoint)
    volume = np.load(volume_path, mmap_mode="r")
    params = sum(p.numel() for p in detector.model.parameters())
    run = timed_detect(volume, detector, VOXEL_SIZE, device, thresholds=0.0)
    out.put({
        "seconds": run["seconds"],
        "peak_host_gb": peak_rss_gb(),
        "peak_gpu_gb": run["peak_gpu_gb"],
        "windows": run["windows"],
        "parameters": int(params),
        "runtime": resolve_runtime(detector.config.infer.runtime, device),
        "picks": int(len(run["picks"])),
    })  # fmt: skip


def measure(args: argparse.Namespace, checkpoint: Path, volume_path: Path, device: str) -> dict:
    return run_in_child(_run_variant, args, checkpoint, volume_path, device)


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Ensemble inference benchmark (`benchmarks/ensemble.py`)",
        "",
        f"`cryopoint.detect` on one {' x '.join(map(str, args.shape))} tomogram (Gaussian noise, {VOXEL_SIZE} Å "
        f"voxels) with one network of `{args.config}`'s architecture and with an ensemble of {args.members} "
        f"(untrained: time and memory do not depend on the weights), the config's inference settings. {machine()}. "
        "Peak host memory = the variant process's peak resident set (VmHWM: imports, models and the tomogram).",
        "",
        "| device | model | parameters | windows | runtime | seconds / tomogram | x one member | peak host GB "
        "| peak GPU GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gpu = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        lines.append(
            f"| {r['device']} | {r['model']} | {r['parameters'] / 1e6:.2f} M | {r['windows']} | {r['runtime']} | "
            f"{r['seconds']:.1f} | {r['ratio']:.2f} | {r['peak_host_gb']:.2f} | {gpu} |"
        )
    lines += [
        "",
        "`x one member` is this row's time over the single network's on the same device, measured in the same "
        "invocation. The ensemble runs every member on each window and averages their probabilities "
        "(`cryopoint/model/ensemble.py`), so its time grows about linearly with the member count while the "
        "tomogram, the canvas and the peak finding are shared.",
        "",
        "No CUDA device on this machine: no GPU rows." if not torch.cuda.is_available() else "GPU: bf16 autocast.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml", help="config whose architecture to build")
    parser.add_argument("--members", type=int, default=4, help="ensemble size k (the folds of a k-fold training)")
    parser.add_argument("--shape", type=int, nargs=3, help=f"tomogram size (z, y, x) voxels (default {FULL_SHAPE})")
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SHAPE} tomogram: checks the script runs")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--out", type=Path, default=RESULTS / "ensemble")
    args = parser.parse_args(argv)
    if args.members < 2:
        parser.error("--members must be at least 2 (one member is the baseline every row is compared with)")
    args.shape = args.shape or (QUICK_SHAPE if args.quick else FULL_SHAPE)
    torch.set_num_threads(args.threads)  # as in each variant's process, so the machine line says what ran
    console = Console()

    rows = []
    with tempfile.TemporaryDirectory(prefix="cryopoint-ensemble-") as tmp:
        folder = Path(tmp)
        checkpoints = _write_checkpoints(args, folder)
        volume_path = folder / "volume.npy"
        np.save(volume_path, np.random.default_rng(0).standard_normal(args.shape, dtype=np.float32))
        devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
        for device in devices:
            for name, label in (("single", "one member"), ("ensemble", f"ensemble of {args.members}")):
                with console.status(f"{device}: {label}"):
                    row = {"device": device, "model": label, **measure(args, checkpoints[name], volume_path, device)}
                console.print(f"{device} | {label}: {row['seconds']:.1f} s, {row['peak_host_gb']:.2f} GB")
                rows.append(row)
    for r in rows:
        base = next(b for b in rows if b["device"] == r["device"] and b["model"] == "one member")
        r["ratio"] = r["seconds"] / base["seconds"]

    table = Table(title=f"cryopoint.detect on {' x '.join(map(str, args.shape))}: ensemble vs one member")
    for col in ("device", "model", "windows", "s / tomogram", "x one member", "peak host GB", "peak GPU GB"):
        table.add_column(col)
    for r in rows:
        gpu = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        table.add_row(r["device"], r["model"], str(r["windows"]), f"{r['seconds']:.1f}", f"{r['ratio']:.2f}",
                      f"{r['peak_host_gb']:.2f}", gpu)  # fmt: skip
    console.print(table)

    from cryopoint.io.atomic import atomic_write_text

    atomic_write_text(args.out.with_suffix(".md"), _markdown(rows, args))
    payload = {"config": args.config, "members": args.members, "shape": args.shape, "threads": args.threads,
               "voxel_size": VOXEL_SIZE, "rows": rows}  # fmt: skip
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(payload, indent=1, default=str))
    console.print(f"Wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return args.out.with_suffix(".md")


if __name__ == "__main__":
    main()
