"""Where a model's false positives come from at its own thresholds: signal-to-noise or clutter.

The shipped model ranks the particles of an ``easy`` tomogram well (thresholds tuned on it score ~0.92) but its
own thresholds keep dozens of false positives there. This benchmark separates the causes on small ``easy``
tomograms (the regression test's 64 x 256 x 256 and particle counts, several seeds):

* **SNR sweep**: the same tomograms at several signal-to-noise ratios (the ``randomized`` corpus draws
  0.15–20; 0.15–6 before 2026-12-03's fourth model);
* **no clutter**: at the preset's SNR without clutter objects, vesicles or gold beads (only particles on ice).

(A scene of ice alone is no control here: the Fourier path's Wiener look weighs each frequency shell by the
tomogram's own signal power, so without particles the same ice comes out far smoother.)

Per scene and model: weighted F-beta at the model's own thresholds and tuned on the scene (ranking), and the
false positives per class. A model whose false positives persist without clutter fires on ice or on the
particles' surroundings, not on look-alikes::

    python -m benchmarks.background_fp                                  # the shipped model
    python -m benchmarks.background_fp --model candidate=cand.pt        # beside the shipped one

Writes ``benchmarks/results/background_fp.md``, ``.json`` and ``.png`` (false positives against SNR).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from benchmarks.bench_common import machine, own_picks
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
#: The particle counts of the shipped model's ``easy`` regression test (tests/test_default_model.py).
COUNTS = {"apo-ferritin": 4, "beta-galactosidase": 3, "ribosome": 3, "thyroglobulin": 3, "virus-like-particle": 2}
NO_CLUTTER = {"clutter_per_particle": 0.0, "vesicles_per_volume": 0.0, "gold_per_volume": 0.0}
console = Console()


def scenes(snrs: list[float]) -> dict[str, dict]:
    """``{scene: simulator overrides of the easy preset}``: the SNR sweep, then no clutter."""
    out = {f"SNR {s:g}": {"snr": float(s)} for s in snrs}
    out["no clutter"] = dict(NO_CLUTTER)
    return out


def simulate(overrides: dict, shape, seed: int):
    """One ``easy`` tomogram with ``COUNTS`` and its truth, as the regression test makes it."""
    from cryopoint.synth import get_preset
    from cryopoint.synth.simulate import simulate_run

    params = get_preset("easy", counts=COUNTS, **overrides)
    vol, truth = simulate_run(tuple(shape), params, np.random.default_rng(seed))
    return vol, truth, params.voxel_size


def evaluate(detectors: dict, scene_overrides: dict[str, dict], shape, seeds: list[int]) -> dict:
    """``{scene: {model: cells}}``: own-threshold and tuned weighted F-beta, false positives per class, and
    false positives per µm³ (all classes) over the scene's tomograms."""
    from cryopoint.metric import score
    from cryopoint.post.adaptive import volume_um3
    from cryopoint.post.thresholds import tune_thresholds

    out: dict[str, dict] = {}
    with Progress(console=console) as progress:
        task = progress.add_task("tomograms", total=len(scene_overrides) * len(seeds))
        for scene, over in scene_overrides.items():
            truths, peaks, geometry = [], {m: [] for m in detectors}, {}
            for seed in seeds:
                vol, truth, voxel = simulate(over, shape, seed)
                run = f"{scene}/{seed}"
                truths.append(truth.assign(experiment=run))
                geometry[run] = (tuple(shape), voxel)
                for name, det in detectors.items():
                    peaks[name].append(det.detect(vol, voxel_size=voxel, thresholds=0.0).assign(experiment=run))
                progress.advance(task)
            truth = pd.concat(truths, ignore_index=True)
            um3 = sum(volume_um3(s, v) for s, v in geometry.values())
            out[scene] = {}
            for name, det in detectors.items():
                every = pd.concat(peaks[name], ignore_index=True)
                res = score(truth, own_picks(det, every, geometry))
                fp = {n: int(res.table.loc[n, "fp"]) for n in PARTICLE_NAMES}
                out[scene][name] = {
                    "own": float(res.score),
                    "tuned": float(tune_thresholds(truth, every).score_after),
                    "fp": fp,
                    "fn": {n: int(res.table.loc[n, "fn"]) for n in SCORED},
                    "fp_per_um3": sum(fp.values()) / um3,
                    "particles": len(truth),
                }
    return out


def write_report(result: dict, meta: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryopoint.io.atomic import atomic_path, atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "result": result}, indent=2))
    models = meta["models"]
    short = {"apo-ferritin": "apo", "beta-amylase": "b-amy", "beta-galactosidase": "b-gal", "ribosome": "ribo",
             "thyroglobulin": "thyro", "virus-like-particle": "VLP"}  # fmt: skip
    lines = [
        "# False positives at a model's own thresholds: signal-to-noise or clutter",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, {meta['minutes']:.1f} min.",
        "",
        f"Every scene: {len(meta['seeds'])} `easy` tomograms of {tuple(meta['shape'])} voxels at 10 Å (seeds "
        f"{', '.join(map(str, meta['seeds']))}; the regression test's particle counts, "
        f"{sum(COUNTS.values())} scored particles each). Thresholds: each model's own "
        "(what `cryopoint.detect` keeps); *tuned*: tuned on the scene itself (ranking quality, optimistic). "
        "FP: false positives summed over the scene's tomograms; FP/µm³: all classes. With this few particles "
        "a class's F-beta moves by several points per particle: read the FP counts, not small score changes.",
        "",
        "| scene | model | own | tuned | " + " | ".join(f"FP {short[n]}" for n in PARTICLE_NAMES) + " | FP/µm³ |",
        "|---|---|---|---|" + "---|" * len(PARTICLE_NAMES) + "---|",
    ]
    for scene, by in result.items():
        for m in models:
            c = by[m]
            fps = " | ".join(str(c["fp"][n]) for n in PARTICLE_NAMES)
            lines.append(f"| {scene} | {m} | {c['own']:.3f} | {c['tuned']:.3f} | {fps} | {c['fp_per_um3']:.0f} |")
    lines += ["", f"![false positives against SNR]({out.with_suffix('.png').name})", ""]
    lines += [f"- **{m}**: `{p}`" for m, p in models.items()]
    md = out.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines) + "\n")

    sweep = [(s, float(s.split()[1])) for s in result if s.startswith("SNR ")]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in models:
        ax.plot([x for _, x in sweep], [result[s][m]["fp_per_um3"] for s, _ in sweep], "o-", label=m)
        if "no clutter" in result:
            ax.axhline(result["no clutter"][m]["fp_per_um3"], ls="--", lw=1, color=ax.lines[-1].get_color(),
                       label=f"{m}, no clutter (SNR 8)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("SNR of the easy tomograms (randomized corpus: 0.15–20)")
    ax.set_ylabel("false positives per µm³, own thresholds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return md


def main(argv: list[str] | None = None) -> Path:
    import cryopoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME=PATH", help="a model beside the shipped one (repeatable)"
    )
    parser.add_argument("--snr", type=float, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 2030])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "background_fp")
    args = parser.parse_args(argv)
    models = {"shipped": "default"}
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        models[name or Path(path).stem] = path
    begin = time.perf_counter()
    detectors = {name: cryopoint.load(path) for name, path in models.items()}
    result = evaluate(detectors, scenes(args.snr), args.shape, args.seeds)
    meta = {
        "command": "python -m benchmarks.background_fp " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "minutes": (time.perf_counter() - begin) / 60,
        "models": models,
        "seeds": list(args.seeds),
        "shape": list(args.shape),
    }
    md = write_report(result, meta, args.out)
    console.print(md.read_text())
    return md


if __name__ == "__main__":
    main()
