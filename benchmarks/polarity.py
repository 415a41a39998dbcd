"""How often the contrast-polarity check (:mod:`cryopoint.data.polarity`) is right, and what it costs.

Every tomogram is checked as it is (protein dark, as every generator here writes it) and inverted (protein
bright, as some pipelines write theirs). A verdict is right when it says ``dark`` for the first and ``bright``
for the second; ``unclear`` is a tomogram the check declines to judge (``detect`` then neither warns nor
inverts); a wrong verdict would make ``detect(polarity="auto")`` invert a good tomogram, or ``"check"`` warn
about one. Data: the 16-run test sets of sources A, B and C (``default_model --test-runs 16``), the 24
`randomized` runs of seed 8 (every knob of the training corpus drawn afresh) and 6 `realistic` runs, all from
our own simulator (what real data does is unmeasured here). Cost: the check on one full-size 184 x 630 x 630
tomogram against ``detect`` with the shipped model on the same tomogram, in the same run.

Small crops: the centre of every tomogram above cut to each of ``CROPS`` and checked as it is and inverted,
beside what a fixed ``MARGIN`` would have said, and the score of phase-randomised copies of each crop (the
same power spectrum without its structure: a volume with no preferred contrast). Their spread is what the
size-aware margin (:func:`cryopoint.data.polarity.verdict_margin`) has to clear.

::

    python -m benchmarks.polarity            # ~5 min on 2 cores
    python -m benchmarks.polarity --no-full  # without the full-size timing

Writes ``benchmarks/results/polarity.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from benchmarks.bench_common import machine, run_in_child
from benchmarks.generalization import BUDGETS, SOURCES, source_root

REPO = Path(__file__).resolve().parents[1]
console = Console()
#: Centre crops (z, y, x voxels) of every tomogram, checked for the small-volume section.
CROPS = ((48, 128, 128), (64, 128, 128), (96, 96, 96), (64, 192, 192))
#: Phase-randomised copies per crop.
SURROGATES = 2


def datasets(cache_dir: str | None) -> dict[str, Path]:
    from cryopoint.data.cache import ensure_synthetic_dataset

    b = BUDGETS["cpu"]
    out = {f"source {s}": source_root(s, b, cache_dir, fresh_runs=16) for s in SOURCES}
    out["randomized (seed 8)"] = ensure_synthetic_dataset(
        "randomized", runs=24, shape=b.shape, seed=8, cache_dir=cache_dir
    )
    out["realistic"] = ensure_synthetic_dataset("realistic", runs=6, shape=(96, 320, 320), seed=0, cache_dir=cache_dir)
    return out


def check_dataset(root: Path) -> dict:
    """Score and verdict of every run of ``root``, as it is and inverted, and the seconds per check."""
    from cryopoint.data.polarity import estimate_polarity
    from cryopoint.io import list_runs, read_tomogram, tomogram_path

    rows, seconds = [], []
    for run in track(list_runs(root), description=root.name, console=console):
        tomo = read_tomogram(tomogram_path(root, run))
        start = time.perf_counter()
        as_is = estimate_polarity(tomo.data, tomo.voxel_size)
        seconds.append(time.perf_counter() - start)
        inverted = estimate_polarity(-tomo.data, tomo.voxel_size)
        rows.append({"run": run, "score": as_is.score, "as_is": as_is.polarity, "inverted": inverted.polarity,
                     "inverted_score": inverted.score})  # fmt: skip
    return {"runs": rows, "seconds_per_check": float(np.mean(seconds)), "shape": list(tomo.shape)}


def phase_randomised(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``volume`` with the same amplitude spectrum and random phases: its power, none of its structure."""
    v = np.asarray(volume, dtype=np.float64)
    f = np.fft.rfftn(v - v.mean())
    # The phases of white noise's transform: random, with the symmetry a real volume's transform needs.
    noise = np.fft.rfftn(rng.standard_normal(v.shape))
    phases = noise / np.maximum(np.abs(noise), 1e-12)
    return np.fft.irfftn(np.abs(f) * phases, s=v.shape, axes=(0, 1, 2)).astype(np.float32)


def centre_crop(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The ``shape`` centre of ``volume`` (each side at most the volume's)."""
    starts = [(n - min(c, n)) // 2 for n, c in zip(volume.shape, shape)]
    return volume[tuple(slice(a, a + min(c, n)) for a, c, n in zip(starts, shape, volume.shape))]


def check_crops(root: Path, crops=CROPS, surrogates: int = SURROGATES, seed: int = 0) -> dict:
    """Per crop shape: the verdicts on the centre crop of every run of ``root``, as it is and inverted, with the
    size-aware margin and with the fixed ``MARGIN``, and the scores of ``surrogates`` phase-randomised copies."""
    from cryopoint.data.polarity import MARGIN, estimate_polarity, polarity_score
    from cryopoint.io import list_runs, read_tomogram, tomogram_path

    def fixed(score: float) -> str:
        return "dark" if score > MARGIN else "bright" if score < -MARGIN else "unclear"

    rng = np.random.default_rng(seed)
    out = {"x".join(map(str, c)): {"runs": [], "null": []} for c in crops}
    for run in track(list_runs(root), description=f"{root.name} crops", console=console):
        tomo = read_tomogram(tomogram_path(root, run))
        for c in crops:
            crop = np.asarray(centre_crop(tomo.data, c), dtype=np.float32)
            as_is, inverted = estimate_polarity(crop, tomo.voxel_size), estimate_polarity(-crop, tomo.voxel_size)
            cell = out["x".join(map(str, c))]
            cell["runs"].append({"run": run, "score": as_is.score, "margin": _finite(as_is.margin),
                                 "as_is": as_is.polarity, "inverted": inverted.polarity,
                                 "fixed_as_is": fixed(as_is.score), "fixed_inverted": fixed(-as_is.score)})  # fmt: skip
            cell["shape"], cell["voxel_size"] = list(crop.shape), float(np.mean(tomo.voxel_size))
            cell["null"] += [polarity_score(phase_randomised(crop, rng), tomo.voxel_size) for _ in range(surrogates)]
    return out


def _finite(margin: float) -> float | None:
    """A margin for JSON: None where the volume is too small to judge (infinite margin)."""
    return float(margin) if np.isfinite(margin) else None


def summarise_crops(crops: dict) -> dict:
    """Per crop shape, pooled over datasets: counts of each verdict, both margins, and the surrogates' spread."""
    from cryopoint.data.polarity import blob_sites, verdict_margin

    out = {}
    for per_set in crops.values():
        for key, cell in per_set.items():
            o = out.setdefault(key, {"runs": [], "null": [], "shape": cell["shape"], "vs": cell["voxel_size"]})
            o["runs"] += cell["runs"]
            o["null"] += cell["null"]
    table = {}
    for key, o in out.items():
        runs, null = o["runs"], np.abs(np.asarray(o["null"]))
        margin = _finite(verdict_margin(o["shape"], o["vs"]))
        count = lambda col, v, runs=runs: sum(r[col] == v for r in runs)  # noqa: E731
        table[key] = {
            "n": len(runs),
            "sites": blob_sites(o["shape"], o["vs"]),
            "margin": margin,
            "as_is": {v: count("as_is", v) for v in ("dark", "unclear", "bright")},
            "inverted": {v: count("inverted", v) for v in ("bright", "unclear", "dark")},
            "fixed_wrong": count("fixed_as_is", "bright") + count("fixed_inverted", "dark"),
            "fixed_unclear": count("fixed_as_is", "unclear"),
            "null_beyond": int(np.sum(null > margin)) if margin is not None else 0,
            "null_n": int(len(null)),
            "null_sd": float(np.sqrt(np.mean(null**2))) if len(null) else float("nan"),
            "null_max": float(null.max()) if len(null) else float("nan"),
        }
    return table


def crop_lines(table: dict) -> list[str]:
    from cryopoint.data.polarity import MARGIN

    lines = [
        "## Small crops",
        "",
        "The centre of every tomogram above, cut to each size, as it is and inverted. Margin: the size-aware one "
        f"the check uses (`verdict_margin`; not judged: too small) against a fixed ±{MARGIN}. Null: phase-"
        "randomised copies of the same crops (their power spectrum, none of their structure), RMS and largest |score|.",
        "",
        "| crop (voxels) | blob sites | crops | margin | as is: dark / unclear / bright | inverted: bright / unclear / "
        f"dark | wrong at ±{MARGIN} (unclear) | null RMS / max | null beyond the margin |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, t in table.items():
        a, v = t["as_is"], t["inverted"]
        margin = "not judged" if t["margin"] is None else f"±{t['margin']:.3f}"
        lines.append(
            f"| {key.replace('x', ' x ')} | {t['sites']:.0f} | {t['n']} | {margin} | {a['dark']} / "
            f"{a['unclear']} / {a['bright']} | {v['bright']} / {v['unclear']} / {v['dark']} | {t['fixed_wrong']} "
            f"({t['fixed_unclear']}) | {t['null_sd']:.3f} / {t['null_max']:.3f} | {t['null_beyond']} of {t['null_n']} |"
        )
    wrong = sum(t["as_is"]["bright"] + t["inverted"]["dark"] for t in table.values())
    fixed = sum(t["fixed_wrong"] for t in table.values())
    total = 2 * sum(t["n"] for t in table.values())
    lines += [
        "",
        f"Wrong verdicts on crops: {wrong} of {total} checks with the size-aware margin, {fixed} with a fixed "
        f"±{MARGIN}. A crop the check does not judge is left as it is; `polarity='auto'` warns when a volume is "
        "too small to judge at all. The margin is set by the crops, not by the null's extremes: a volume with no "
        "structure at all (the phase-randomised copies) still gets a verdict now and then (last column), so a "
        "verdict on a small volume is evidence, not proof.",
    ]
    return lines


def _full_size(queue) -> None:
    """Child process: one full-size `realistic` tomogram: the check's seconds, and detect's with the shipped model."""
    import cryopoint
    from cryopoint.data.polarity import estimate_polarity
    from cryopoint.synth import get_preset, simulate_run

    params = get_preset("realistic")
    vol, _ = simulate_run((184, 630, 630), params, np.random.default_rng(0))
    start = time.perf_counter()
    verdict = estimate_polarity(vol, params.voxel_size)
    check = time.perf_counter() - start
    model = cryopoint.load("default")
    start = time.perf_counter()
    cryopoint.detect(vol, model, voxel_size=params.voxel_size, device="cpu", polarity="dark")
    queue.put({"check_s": check, "detect_s": time.perf_counter() - start, "verdict": verdict.polarity,
               "score": verdict.score})  # fmt: skip


def summarise(result: dict) -> dict:
    out = {}
    for name, d in result.items():
        runs = d["runs"]
        scores = np.array([r["score"] for r in runs])
        out[name] = {
            "n": len(runs),
            "as_is": {v: sum(r["as_is"] == v for r in runs) for v in ("dark", "unclear", "bright")},
            "inverted": {v: sum(r["inverted"] == v for r in runs) for v in ("bright", "unclear", "dark")},
            "min": float(scores.min()),
            "median": float(np.median(scores)),
            "seconds_per_check": d["seconds_per_check"],
            "shape": d["shape"],
        }
    return out


def write_figure(result: dict, path: Path, crops: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryopoint.data.polarity import MARGIN

    names = list(result)
    if crops:
        fig, (ax, cx) = plt.subplots(1, 2, figsize=(14, 0.7 * len(names) + 2.2), width_ratios=(1.1, 1))
        _crop_panel(cx, crops)
    else:
        fig, ax = plt.subplots(figsize=(8, 0.7 * len(names) + 1.6))
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        s = np.array([r["score"] for r in result[name]["runs"]])
        jitter = rng.uniform(-0.15, 0.15, len(s))
        ax.scatter(s, i + jitter, s=14, color="tab:blue", label="as simulated (protein dark)" if i == 0 else None)
        ax.scatter(-s, i + jitter, s=14, color="tab:orange", label="inverted (protein bright)" if i == 0 else None)
    ax.axvspan(-MARGIN, MARGIN, color="0.85", zorder=0, label=f"unclear (|score| ≤ {MARGIN})")
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("polarity score (positive: protein dark)")
    ax.set_title("Contrast-polarity check, one dot per tomogram")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _crop_panel(ax, crops: dict) -> None:
    """Score of every crop (judged: blue; too small or too thin to judge: purple) and of its phase-randomised
    copies (grey) against the crop's blob sites, with the size-aware margin."""
    from cryopoint.data.polarity import MIN_SITES, blob_sites, margin_for_sites, verdict_margin

    rng = np.random.default_rng(1)
    sites_seen, labelled = [], set()
    for per_set in crops.values():
        for cell in per_set.values():
            sites = blob_sites(cell["shape"], cell["voxel_size"])
            sites_seen.append(sites)
            real = np.array([r["score"] for r in cell["runs"]])
            judged = np.isfinite(verdict_margin(cell["shape"], cell["voxel_size"]))
            wobble = lambda n, sites=sites: sites * np.exp(rng.uniform(-0.06, 0.06, n))  # noqa: E731
            label = "crop, judged" if judged else "crop, not judged (too small or thin)"
            ax.scatter(
                wobble(len(cell["null"])), cell["null"], s=6, color="0.6", zorder=1,
                label=None if "null" in labelled else "phase-randomised copy",
            )  # fmt: skip
            ax.scatter(
                wobble(len(real)), real, s=8, zorder=2, color="tab:blue" if judged else "tab:purple",
                label=None if label in labelled else label,
            )  # fmt: skip
            labelled |= {"null", label}
    grid = np.geomspace(min(min(sites_seen) * 0.7, MIN_SITES * 0.8), max(sites_seen) * 1.4, 200)
    margin = np.array([margin_for_sites(g) for g in grid])
    margin[~np.isfinite(margin)] = np.nan
    ax.plot(grid, margin, color="k", lw=1, label="size-aware margin (volumes deep enough)")
    ax.plot(grid, -margin, color="k", lw=1)
    ax.axvspan(grid[0], MIN_SITES, color="0.85", zorder=0, label="too few sites to judge")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("blob sites in the crop (log)")
    ax.set_ylabel("polarity score (positive: protein dark)")
    ax.set_title("Centre crops of the tomograms on the left")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)


def write_report(summary: dict, full: dict | None, meta: dict, out: Path, crops: dict | None = None) -> Path:
    from cryopoint.data.polarity import MARGIN
    from cryopoint.io.atomic import atomic_write_text

    lines = [
        "# Contrast-polarity check",
        "",
        f"`{meta['command'].strip()}` — {meta['date']}, {meta['machine']}. Verdict margin ±{MARGIN}. Every "
        "tomogram checked as simulated (protein dark) and inverted; all from cryopoint's own simulator.",
        "",
        "| data | tomograms | shape | as is: dark / unclear / bright | inverted: bright / unclear / dark | "
        "score min | score median | s per check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        a, v = s["as_is"], s["inverted"]
        lines.append(
            f"| {name} | {s['n']} | {' x '.join(map(str, s['shape']))} | {a['dark']} / {a['unclear']} / {a['bright']} "
            f"| {v['bright']} / {v['unclear']} / {v['dark']} | {s['min']:+.3f} | {s['median']:+.3f} "
            f"| {s['seconds_per_check']:.2f} |"
        )
    total = sum(s["n"] for s in summary.values())
    wrong = sum(s["as_is"]["bright"] + s["inverted"]["dark"] for s in summary.values())
    unclear = sum(s["as_is"]["unclear"] for s in summary.values())
    lines += [
        "",
        f"Wrong verdicts: {wrong} of {2 * total} checks; unclear: {unclear} of {total} tomograms (both ways: the "
        "score is odd under inversion). A wrong verdict is what would mislead `detect`; an unclear one leaves the "
        "tomogram as it is, silently.",
    ]
    if full:
        share = full["check_s"] / full["detect_s"]
        lines += [
            "",
            f"Full size (184 x 630 x 630, `realistic`): the check {full['check_s']:.1f} s, `detect` with the shipped "
            f"model {full['detect_s']:.1f} s on the same tomogram (the check adds {share:.1%}); "
            f"verdict `{full['verdict']}` ({full['score']:+.3f}).",
        ]
    lines += [
        "",
        "Caveat: every tomogram here comes from one simulator (several generation paths, particle models and "
        "looks). Real reconstructions add structure the simulator lacks (thick carbon, ice contamination, "
        "dense organelles); all of it is dark in correctly oriented data, which should help the check, but that "
        "is not measured here.",
        "",
        "![scores](polarity.png)",
    ]
    if crops:
        lines += ["", *crop_lines(summarise_crops(crops))]
    path = out.with_suffix(".md")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-full", action="store_true", help="skip the full-size timing")
    p.add_argument("--cache-dir")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "polarity")
    args = p.parse_args(argv)
    from cryopoint.io.atomic import atomic_path, atomic_write_text

    roots = datasets(args.cache_dir)
    result = {name: check_dataset(root) for name, root in roots.items()}
    crops = {name: check_crops(root) for name, root in roots.items()}
    full = None if args.no_full else run_in_child(_full_size)
    summary = summarise(result)
    meta = {
        "command": "python -m benchmarks.polarity " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine("cpu"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        args.out.with_suffix(".json"),
        json.dumps(
            {
                "meta": meta,
                "summary": summary,
                "full": full,
                "runs": result,
                "crops": crops,
                "crop_summary": summarise_crops(crops),
            }  # fmt: skip
        ),
    )
    with atomic_path(args.out.with_suffix(".png")) as tmp:
        write_figure(result, tmp, crops)
    path = write_report(summary, full, meta, args.out, crops)
    console.print(path.read_text())
    return path


if __name__ == "__main__":
    main()
