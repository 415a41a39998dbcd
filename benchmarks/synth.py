"""Synthetic tomogram generator: time and peak memory per tomogram, against an FFT baseline in the same run.

    python -m benchmarks.synth                # full size (184, 630, 630) both presets, small test volume, 1 written run
    python -m benchmarks.synth --threads 2    # FFT threads (the target is 2 cores)

Each case runs in a fresh process so that its peak RSS is its own. The baseline is one forward + one inverse
real FFT of a full-size float32 volume (the simulator does three FFTs), so the ratio column says how many
"FFT round trips" a tomogram costs. Writes ``benchmarks/results/synth.md`` and ``synth.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cryopoint.io.atomic import atomic_write_text

FULL = (184, 630, 630)
SMALL = (32, 64, 64)


#: Extra simulator settings of the generalisation benchmark's sources (benchmarks/generalization.py), by name.
B_ALL_KINDS = {
    "imaging": "realspace",
    "shape_model": "assembly",
    "denoiser": "tv",
    "kinds": ("wbp", "ctfdeconvolved", "denoised"),
}


def _overrides(source: str) -> dict:
    if source == "-":
        return {}
    if source == "B, 3 kinds":
        return dict(B_ALL_KINDS)
    from generalization import SOURCES

    return dict(SOURCES[source][0])


def _case(kind: str, preset: str, shape: tuple[int, int, int], threads: int, queue, source: str = "-") -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import numpy as np
    import scipy.fft

    from cryopoint.synth import generate_dataset, get_preset, simulate_run

    start = time.perf_counter()
    extra = ""
    if kind == "fft":
        vol = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        start = time.perf_counter()
        scipy.fft.irfftn(scipy.fft.rfftn(vol, workers=threads), s=shape, workers=threads)
    elif kind == "simulate":
        _, picks = simulate_run(
            shape, get_preset(preset, **_overrides(source)), np.random.default_rng(0), workers=threads
        )
        synth = picks.attrs["synth"]
        extra = f"{len(picks)} particles; {synth['imaging']}, {synth['shape_model']}, denoiser {synth['denoiser']}"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            generate_dataset(tmp, runs=1, shape=shape, seed=0, preset=preset, workers=threads, **_overrides(source))
        extra = "zarr v2, levels 0-2, picks JSON, every kind"
    seconds = time.perf_counter() - start
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, extra))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth.md")
    args = ap.parse_args()
    cases = [
        ("fft", "-", FULL, "rfftn + irfftn baseline", "-"),
        ("simulate", "realistic", FULL, "simulate_run", "-"),
        ("simulate", "easy", FULL, "simulate_run", "-"),
        ("write", "realistic", FULL, "generate_dataset, 1 run", "-"),
        ("simulate", "realistic", SMALL, "simulate_run", "-"),
        ("write", "realistic", FULL, "generate_dataset, 1 run", "A"),
        ("write", "realistic", FULL, "generate_dataset, 1 run", "B"),
        ("write", "realistic", FULL, "generate_dataset, 1 run", "B, 3 kinds"),
        ("write", "realistic", FULL, "generate_dataset, 1 run", "C"),
        ("write", "randomized", FULL, "generate_dataset, 1 run", "-"),
    ]
    ctx = mp.get_context("spawn")
    rows = []
    console = Console()
    for kind, preset, shape, label, source in cases:
        queue = ctx.Queue()
        proc = ctx.Process(target=_case, args=(kind, preset, shape, args.threads, queue, source))
        proc.start()
        seconds, rss, extra = queue.get()
        proc.join()
        rows.append(
            {
                "case": label,
                "preset": preset,
                "source": source,
                "shape": list(shape),
                "seconds": seconds,
                "peak_rss_mib": rss,
                "notes": extra,
            }
        )
        console.print(f"{label} {preset} {source} {shape}: {seconds:.2f} s, {rss:.0f} MiB")
    base = rows[0]["seconds"]
    table = Table(title=f"Synthetic tomograms ({args.threads} FFT threads)")
    for col in ("case", "preset", "source", "shape", "time (s)", "x FFT round trip", "peak RSS (MiB)", "notes"):
        table.add_column(col, justify="right" if col[0] in "tx p" else "left")
    lines = [
        "# Synthetic generator benchmark (`python -m benchmarks.synth`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores visible, {args.threads} FFT threads. Each case in "
        "a fresh process (peak RSS = the whole process, Python and imports included). Targets: full size <= 60 s and "
        "<= 6 GB; 32 x 64 x 64 well under a second.",
        "",
        "Sources A, B, C: the generalisation benchmark's (`benchmarks/generalization.py`); B, 3 kinds also writes "
        "`wbp` and `ctfdeconvolved`. A `randomized` run draws its own path and look (seed 0 here).",
        "",
        "| case | preset | source | shape | time (s) | x FFT round trip | peak RSS (MiB) | notes |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        shape = " x ".join(map(str, r["shape"]))
        cells = [
            r["case"],
            r["preset"],
            r["source"],
            shape,
            f"{r['seconds']:.3f}",
            f"{r['seconds'] / base:.1f}",
            f"{r['peak_rss_mib']:.0f}",
            r["notes"],
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(rows, indent=2) + "\n")
    console.print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
