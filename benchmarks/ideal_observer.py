"""Are the particles still there? Each particle's signal-to-noise ratio in source F, from F's own replay.

When a model finds no particle of a class in some runs of a source, either those runs no longer carry the particles
(the imaging destroyed them) or the model does not see them. Source F's simulator
(:mod:`benchmarks.blind_sim_f`) is deterministic in (seed, run) and draws each tilt's noise *before* scaling it by
the run's noise level, so a replay with that level's sign flipped draws the same numbers, keeps every filter (its
Wiener filter sees the same noise power) and gives ``R+ = signal + noise`` and ``R- = signal - noise`` before F's
final normalisation. Hence ``signal = (R+ + R-) / 2`` and ``noise = (R+ - R-) / 2`` exactly; the replay is checked
against the tomogram the benchmarks score.

Both are whitened by the noise's own 3D power spectrum (smoothed), and a particle's **d'** is the norm of the whitened
signal inside a sphere of the particle's radius (less the sphere's mean) over the whitened noise's standard
deviation: the signal-to-noise ratio of a matched filter that knows the particle's exact appearance in that run
(missing wedge, transfer, misalignment blur, its neighbours) and where it is. It leaves out clutter (F draws its
distractors independently of the imaging) and F's optional soft clipping (a monotone squash of the brightest
voxels); so it bounds what any detector could do against noise, not against look-alikes.

Beside each particle: whether a model's default picks (as ``cryopoint.detect`` keeps them) and its every peak put a
pick of the class within the metric's distance (half the radius). The report compares the d' of the particles the
model finds with those in the runs where it finds none of a class (``--class``, default apo-ferritin).

    python -m benchmarks.ideal_observer --seeds 10 11 --runs 48     # F seeds 10 and 11, runs N01..N48

Writes ``benchmarks/results/ideal_observer_F.{md,json,png}`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import track
from scipy import ndimage

from cryopoint.io.atomic import atomic_path, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
console = Console()
#: Classes reported (beta-amylase carries no weight in the score).
CLASSES = ("apo-ferritin", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle")
SHORT = {"apo-ferritin": "apo", "beta-galactosidase": "b-gal", "ribosome": "ribo", "thyroglobulin": "thyro",
         "virus-like-particle": "VLP"}  # fmt: skip
#: The noise power spectrum is smoothed over this many frequency samples per axis before whitening.
PSD_SMOOTH = 5
#: Frequencies whose noise power is below this fraction of the largest are held at it when whitening.
PSD_FLOOR = 1e-8
#: d' bins of the recall table and figure.
BINS = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, np.inf)


def replay_split(seed: int, index: int, shape: tuple[int, int, int]) -> dict:
    """Source F's run ``index`` at ``seed`` replayed twice with the noise's sign flipped.

    Returns ``volume`` (the tomogram as F writes it), ``signal`` and ``noise`` (cropped and oriented as the volume,
    in F's units before its final normalisation), ``picks`` (per class, voxel centres z, y, x), ``knobs`` (the run's
    imaging draws), ``layout`` and ``slab`` (every object F placed and its ice slab, :func:`scene_layout`) and
    ``fidelity``: the correlation of the volume with the signal plus noise taken through F's own
    normalisation and soft clipping (1 when the replay is exact)."""
    from benchmarks import blind_sim_f as f

    stash = {}
    original, original_scene = f.image_and_reconstruct, f.build_scene

    def scene(*args, **kwargs):
        stash["scene"] = original_scene(*args, **kwargs)
        return stash["scene"]

    def both(V, p, rng, thick):
        twin = np.random.Generator(type(rng.bit_generator)())
        twin.bit_generator.state = rng.bit_generator.state
        minus, _ = original(V, dict(p, noise_mult=-p["noise_mult"]), twin, thick)
        plus, snr = original(V, p, rng, thick)  # the run's own stream, so everything after it draws as usual
        stash.update(plus=plus, minus=minus, knobs=p)
        return plus, snr

    f.image_and_reconstruct, f.build_scene = both, scene
    try:
        volume, picks, _ = f.simulate(seed, index, tuple(shape))
    finally:
        f.image_and_reconstruct, f.build_scene = original, original_scene
    out = {"volume": volume, "picks": picks, "knobs": {k: v for k, v in stash["knobs"].items() if k != "angles"}}
    out["layout"], out["slab"] = scene_layout(stash["scene"])
    D, H, W = shape
    for name, arr in (
        ("signal", (stash["plus"] + stash["minus"]) / 2),
        ("noise", (stash["plus"] - stash["minus"]) / 2),
    ):
        if out["knobs"]["axis_x"]:
            arr = arr.transpose(0, 2, 1)
        y0, x0 = (arr.shape[1] - H) // 2, (arr.shape[2] - W) // 2
        out[name] = np.ascontiguousarray(arr[:, y0 : y0 + H, x0 : x0 + W], dtype=np.float64)
    total = out["signal"] + out["noise"]
    z = (total - total.mean()) / (total.std() + 1e-20)
    if out["knobs"]["softclip"] > 0:
        c = out["knobs"]["softclip"]
        z = c * np.tanh(z / c)
    out["fidelity"] = float(np.corrcoef(z.ravel(), volume.astype(np.float64).ravel())[0, 1])
    return out


class SceneSlab:
    """Source F's ice slab in the volume's frame, as :func:`benchmarks.fp_sources.false_positive_sources` reads one:
    ``surfaces(x, y)`` gives the bottom and top ``z`` (Å) at ``x, y`` (Å)."""

    def __init__(self, bottom: np.ndarray, top: np.ndarray, y0: int, x0: int, voxel_a: float):
        self.bottom, self.top, self.y0, self.x0, self.voxel_a = bottom, top, y0, x0, voxel_a

    def surfaces(self, x: float, y: float) -> tuple[float, float]:
        yi = int(np.clip(int(y / self.voxel_a) + self.y0, 0, self.bottom.shape[0] - 1))
        xi = int(np.clip(int(x / self.voxel_a) + self.x0, 0, self.bottom.shape[1] - 1))
        return float(self.bottom[yi, xi]) * self.voxel_a, float(self.top[yi, xi]) * self.voxel_a


def scene_layout(scene) -> tuple[pd.DataFrame, SceneSlab]:
    """Every object of a source F scene in the volume's frame (Å, x y z), as
    :func:`benchmarks.fp_sources.false_positive_sources` reads a layout: the labelled particles (``kind``
    ``particle``), the unlabelled objects F's occupancy records (distractor proteins, aggregates, gold, filament
    segments: ``blob``, with their collision radius) and vesicles (``vesicle``); and the ice slab."""
    from benchmarks.blind_sim_f import PX

    y0, x0 = scene.crop[0], scene.crop[2]
    label = {tuple(c): name for name, cs in scene.labels.items() for c in cs}
    rows = []
    for c, r in zip(scene.occ.c[: scene.occ.n], scene.occ.r[: scene.occ.n]):
        name = label.get(tuple(c))
        rows.append(("particle" if name else "blob", name or "", r * PX, (c[2] - x0) * PX, (c[1] - y0) * PX, c[0] * PX))
    for c, r, _ in scene.occ.shells:
        rows.append(("vesicle", "", r * PX, (c[2] - x0) * PX, (c[1] - y0) * PX, c[0] * PX))
    layout = pd.DataFrame(rows, columns=["kind", "particle_type", "radius", "x", "y", "z"])
    return layout, SceneSlab(scene.bot, scene.top, y0, x0, PX)


def whitener(noise: np.ndarray, smooth: int = PSD_SMOOTH, floor: float = PSD_FLOOR) -> np.ndarray:
    """``1 / sqrt(P)`` on the ``rfftn`` grid, ``P`` the noise's power spectrum smoothed over ``smooth`` samples per
    axis (wrapping where the grid wraps) and held at ``floor`` times its largest value from below."""
    power = np.abs(np.fft.rfftn(noise - noise.mean())) ** 2
    power = ndimage.uniform_filter(power, size=smooth, mode=("wrap", "wrap", "nearest"))
    power = np.maximum(power, floor * power.max())
    return 1.0 / np.sqrt(power)


def whiten(volume: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``volume`` filtered by the :func:`whitener` ``w``."""
    return np.fft.irfftn(np.fft.rfftn(volume) * w, s=volume.shape, axes=(0, 1, 2))


def sphere_norms(volume: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Per centre (fractional voxel, z y x): the norm of ``volume`` over the voxels within ``radius`` voxels of it,
    less their mean (voxels outside the volume left out)."""
    out = np.zeros(len(centres))
    r = int(np.ceil(radius))
    for i, c in enumerate(np.asarray(centres, dtype=np.float64)):
        lo = np.maximum(np.floor(c).astype(int) - r, 0)
        hi = np.minimum(np.floor(c).astype(int) + r + 2, volume.shape)
        box = volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        g = np.meshgrid(*(np.arange(a, b) - ci for a, b, ci in zip(lo, hi, c)), indexing="ij")
        inside = box[g[0] ** 2 + g[1] ** 2 + g[2] ** 2 <= radius * radius]
        out[i] = np.sqrt(((inside - inside.mean()) ** 2).sum()) if inside.size else 0.0
    return out


def particle_dprime(signal: np.ndarray, noise: np.ndarray, picks: dict, voxel_a: float) -> pd.DataFrame:
    """One row per labelled particle of :data:`CLASSES`: ``particle_type``, ``z``, ``y``, ``x`` (voxels) and
    ``dprime`` (see the module docstring)."""
    from cryopoint.particles import get_particle

    w = whitener(noise)
    sw, nw = whiten(signal, w), whiten(noise, w)
    sigma = float(nw.std())
    rows = []
    for cls in CLASSES:
        cen = np.asarray(picks.get(cls, []), dtype=np.float64).reshape(-1, 3)
        d = sphere_norms(sw, cen, get_particle(cls).radius / voxel_a) / sigma
        rows += [(cls, *c, v) for c, v in zip(cen, d)]
    return pd.DataFrame(rows, columns=["particle_type", "z", "y", "x", "dprime"])


def hits(truth_xyz: np.ndarray, picks_xyz: np.ndarray, radius: float) -> np.ndarray:
    """Per true particle (Å, x y z): is there a pick within half ``radius`` (the metric's distance)?"""
    from scipy.spatial import cKDTree

    if len(picks_xyz) == 0 or len(truth_xyz) == 0:
        return np.zeros(len(truth_xyz), dtype=bool)
    dist, _ = cKDTree(picks_xyz).query(truth_xyz, k=1)
    return dist <= 0.5 * radius


def mark_found(table: pd.DataFrame, picks: pd.DataFrame, column: str, voxel_a: float) -> pd.DataFrame:
    """``table`` (rows of one run, voxel centres) with ``column``: found by ``picks`` (that run's, Å)."""
    from cryopoint.particles import get_particle

    table = table.copy()
    table[column] = False
    for cls, rows in table.groupby("particle_type"):
        mine = picks[picks.particle_type == cls][["x", "y", "z"]].to_numpy(dtype=np.float64)
        xyz = rows[["x", "y", "z"]].to_numpy(dtype=np.float64) * voxel_a
        table.loc[rows.index, column] = hits(xyz, mine, get_particle(cls).radius)
    return table


def reading(d_found: np.ndarray, d_zero: np.ndarray) -> dict:
    """The pre-registered reading (docs/preregistrations.md, session 61): the median d' of the particles in the runs
    where the model finds none, against the 25th and 5th percentiles of the d' of those it finds elsewhere."""
    if len(d_found) == 0 or len(d_zero) == 0:
        raise ValueError("the reading needs particles the model finds and particles in runs where it finds none")
    p25, p5, med = float(np.percentile(d_found, 25)), float(np.percentile(d_found, 5)), float(np.median(d_zero))
    if med >= p25:
        verdict = "the particles are there; the network misses them"
    elif med <= p5:
        verdict = "the imaging lost them"
    else:
        verdict = "partly both"
    return {"median_zero": med, "p25_found": p25, "p5_found": p5, "verdict": verdict}


def recall_by_bin(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Recall (``column``'s mean) and counts per class and d' bin (:data:`BINS`)."""
    b = pd.cut(table.dprime, BINS, right=False)
    g = table.groupby(["particle_type", b], observed=True)[column]
    return pd.DataFrame({"recall": g.mean(), "n": g.size()})


def plot(table: pd.DataFrame, cls: str, path: Path, title: str) -> Path:
    """Left: d' of ``cls`` found / missed by default picks outside the zero runs, and in them. Right: recall by d'
    bin per class (default picks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    mine = table[table.particle_type == cls]
    groups = {
        "found (other runs)": mine[~mine.zero_run & mine.default],
        "missed (other runs)": mine[~mine.zero_run & ~mine.default],
        "in runs with none found": mine[mine.zero_run],
    }
    edges = np.geomspace(max(0.3, float(mine.dprime.min()) * 0.9), float(mine.dprime.max()) * 1.1, 30)
    for label, g in groups.items():
        a.hist(g.dprime, bins=edges, histtype="step", lw=1.6, label=f"{label} ({len(g)})")
    a.set_xscale("log")
    a.set_xlabel("d' (matched-filter SNR, known appearance and place)")
    a.set_ylabel("particles")
    a.set_title(f"{SHORT[cls]}: default picks", fontsize=10)
    a.legend(fontsize=8)
    centres = np.sqrt(np.array(BINS[:-2]) * np.array(BINS[1:-1])).tolist() + [BINS[-2] * 1.3]
    centres[0] = BINS[1] / 2
    rec = recall_by_bin(table, "default")
    for c in CLASSES:
        if c in rec.index.get_level_values(0):
            r = rec.loc[c]
            xs = [centres[list(BINS).index(iv.left)] for iv in r.index]
            b.plot(xs, r.recall, marker="o", label=SHORT[c])
    b.set_xscale("log")
    b.set_ylim(-0.05, 1.05)
    b.set_xlabel("d'")
    b.set_ylabel("recall, default picks")
    b.set_title("recall by d' bin", fontsize=10)
    b.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def score_set(det, seed: int, first: int, runs: int, shape, cache_dir) -> tuple[pd.DataFrame, dict, dict, dict]:
    """On one F set: per-particle d' and found flags, the runs where the default picks recall no particle of each
    class, each run's replay fidelity and knobs, and what the false positives land on (per class and
    :data:`benchmarks.fp_sources.CATEGORIES`, summed over runs) for the default picks and at thresholds tuned on the
    set (``{"default": ..., "ranking": ...}``)."""
    from benchmarks.bench_common import own_picks
    from benchmarks.blind_sim_f import PX
    from benchmarks.blind_source import dataset, predict_timed, run_names
    from benchmarks.fp_sources import false_positive_sources
    from benchmarks.generalization import run_geometry
    from benchmarks.per_run import CLASSES as PR_CLASSES
    from benchmarks.per_run import recall_counts
    from cryopoint.io import read_tomogram, read_truth, tomogram_path
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    root = dataset(seed, first, runs, tuple(shape), cache_dir, "F")
    names = run_names(first, runs, "F")
    truth = read_truth(root, runs=names)
    peaks, _ = predict_timed(det, root, names)
    default = own_picks(det, peaks, run_geometry(root, names))
    picked = {"default": default, "ranking": apply_thresholds(peaks, tune_thresholds(truth, peaks).thresholds)}
    fp = {key: 0 for key in picked}
    tp, n_true = recall_counts(truth, default, names)
    zero = {c: [n for i, n in enumerate(names) if n_true[i, j] > 0 and tp[i, j] == 0] for j, c in enumerate(PR_CLASSES)}
    parts, runs_info = [], {}
    for k, name in track(
        list(zip(range(first, first + runs), names)), description=f"F seed {seed}: replays", console=console
    ):
        rep = replay_split(seed, k, tuple(shape))
        stored = read_tomogram(tomogram_path(root, name)).data
        match = float(np.corrcoef(stored.astype(np.float64).ravel(), rep["volume"].astype(np.float64).ravel())[0, 1])
        t = particle_dprime(rep["signal"], rep["noise"], rep["picks"], PX)
        t = mark_found(t, default[default.experiment == name], "default", PX)
        t = mark_found(t, peaks[peaks.experiment == name], "every_peak", PX)
        t["run"], t["seed"] = name, seed
        t["zero_run"] = [name in zero[c] for c in t.particle_type]
        parts.append(t)
        for key, chosen in picked.items():
            fp[key] = fp[key] + false_positive_sources(chosen[chosen.experiment == name], rep["layout"], rep["slab"])
        knobs = {key: (v.item() if isinstance(v, np.generic) else v) for key, v in rep["knobs"].items()}
        runs_info[name] = {"fidelity": rep["fidelity"], "stored_match": match, "knobs": knobs}
    return pd.concat(parts, ignore_index=True), zero, runs_info, fp


def _quartiles(x) -> str:
    return " / ".join(f"{np.percentile(x, p):.1f}" for p in (5, 25, 50, 75))


def write_report(
    table: pd.DataFrame, zero: dict, runs_info: dict, cls: str, meta: dict, out: Path, fp: dict | None = None
) -> Path:
    """``out.md`` and ``out.json`` (atomically); ``fp``: :func:`score_set`'s false-positive sources, where known."""
    mine = table[table.particle_type == cls]
    found = mine[~mine.zero_run & mine.default].dprime.to_numpy()
    inzero = mine[mine.zero_run].dprime.to_numpy()
    read = reading(found, inzero)
    fid = np.array([v["fidelity"] for v in runs_info.values()])
    stored = np.array([v["stored_match"] for v in runs_info.values()])
    q = _quartiles
    lines = [
        f"# Are the particles still there? An ideal observer on source F (seeds {', '.join(map(str, meta['seeds']))})",
        "",
        f"`{meta['command']}`: {meta['when']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}` "
        f"(sha256 `{meta['model_sha'][:12]}…`), {len(runs_info)} runs.",
        "",
        "d' = a matched filter's signal-to-noise ratio for a particle whose exact appearance and place it knows, from "
        "F's replay split into signal and noise (module docstring). Found: a pick of the class within half its radius.",
        "",
        "Replay check (1 = exact): the replay's signal plus noise through F's normalisation correlates with F's output "
        f"at 1 - {1 - fid.min():.1e} or more, and F's output with the stored tomogram at 1 - {1 - stored.min():.1e} or "
        "more.",
        "",
        f"## {cls}: the reading set in advance",
        "",
        "| particles | n | d' 5th / 25th / median / 75th percentile |",
        "|---|---|---|",
        f"| found by the default picks, runs outside Z | {len(found)} | {q(found)} |",
        f"| missed by the default picks, runs outside Z | {int((~mine.zero_run & ~mine.default).sum())} | "
        f"{q(mine[~mine.zero_run & ~mine.default].dprime)} |",
        f"| in Z (runs where the default picks find none) | {len(inzero)} | {q(inzero)} |",
        "",
        f"Z: {len(zero[cls])} runs ({', '.join(zero[cls])}). Median d' in Z "
        f"{read['median_zero']:.2f}; found elsewhere: 25th percentile {read['p25_found']:.2f}, 5th "
        f"{read['p5_found']:.2f}. **Reading: {read['verdict']}.**",
        "",
        "## Recall by d' bin, every class",
        "",
        "Recall with the default picks, and (in brackets) with every peak kept; n particles.",
        "",
        "| d' bin | " + " | ".join(SHORT[c] for c in CLASSES) + " |",
        "|---" * (1 + len(CLASSES)) + "|",
    ]
    rd, re_ = recall_by_bin(table, "default"), recall_by_bin(table, "every_peak")
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        cells = []
        for c in CLASSES:
            here = rd.loc[c].index if c in rd.index.get_level_values(0) else []
            key = next((iv for iv in here if iv.left == lo), None)
            if key is None:
                cells.append("")
            else:
                a, b, n = rd.loc[(c, key), "recall"], re_.loc[(c, key), "recall"], int(rd.loc[(c, key), "n"])
                cells.append(f"{a:.2f} ({b:.2f}), n {n}")
        lines.append(f"| [{lo:g}, {hi:g}) | " + " | ".join(cells) + " |")
    per_run = mine.groupby("run").agg(d=("dprime", "median"), recall=("default", "mean"), n=("dprime", "size"))
    knobs = pd.DataFrame({r: v["knobs"] for r, v in runs_info.items()}).T.reindex(per_run.index)
    lines += [
        "",
        f"## {cls}, run by run",
        "",
        "Correlation across runs of the run's median d' with the numeric knobs F drew (strongest first), and with the "
        "default picks' recall:",
        "",
    ]
    corr = {}
    for k in knobs.columns:
        col = pd.to_numeric(knobs[k], errors="coerce")
        if col.notna().all() and col.nunique() > 2:
            corr[k] = float(np.corrcoef(col.astype(float), np.log(per_run.d))[0, 1])
    corr_d = sorted(corr.items(), key=lambda kv: -abs(kv[1]))
    lines.append("| | r with log median d' |")
    lines.append("|---|---|")
    lines.append(f"| default picks' recall | {np.corrcoef(per_run.recall, np.log(per_run.d))[0, 1]:+.2f} |")
    lines += [f"| {k} | {v:+.2f} |" for k, v in corr_d[:6]]
    if fp is not None:
        lines += [
            "",
            "## What the false positives land on",
            "",
            "The model's false positives (the metric's, duplicates included) by what F placed there "
            "(`benchmarks.fp_sources` categories; F's distractor proteins, aggregates, gold and filament segments "
            "are its unlabelled objects, a look-alike is one whose radius is within 25 % of the class's). At "
            "thresholds tuned on these runs (ranking), and in brackets at the default picks.",
            "",
            "| class | " + " | ".join(fp["ranking"].columns) + " |",
            "|---" * (1 + len(fp["ranking"].columns)) + "|",
        ]
        for c in CLASSES:
            cells = [f"{int(fp['ranking'].loc[c, k])} ({int(fp['default'].loc[c, k])})" for k in fp["ranking"].columns]
            lines.append(f"| {SHORT[c]} | " + " | ".join(cells) + " |")
    if meta.get("figure"):
        lines += ["", f"![d' and recall]({Path(meta['figure']).name})"]
    if meta.get("notes"):
        lines += ["", f"Notes: {meta['notes']}"]
    lines.append("")
    md = atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    data = {
        "meta": meta,
        "reading": read,
        "zero_runs": zero,
        "runs": runs_info,
        "particles": json.loads(table.to_json(orient="records")),
    }
    if fp is not None:
        data["false_positive_sources"] = {key: json.loads(v.to_json(orient="index")) for key, v in fp.items()}
    atomic_write_text(out.with_suffix(".json"), json.dumps(data, indent=1, default=str))
    return md


def main(argv: list[str] | None = None) -> Path:
    import platform

    import torch

    import cryopoint
    from benchmarks.blind_source import _sha

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="checkpoint beside the observer (default: the shipped file)")
    p.add_argument("--seeds", type=int, nargs="+", default=[10], help="F seeds; runs 100 seed + 1 ... (F's convention)")
    p.add_argument("--runs", type=int, default=48)
    p.add_argument("--shape", type=int, nargs=3, default=[96, 256, 256], metavar=("Z", "Y", "X"))
    p.add_argument("--class", dest="cls", default="apo-ferritin", choices=CLASSES, help="class the reading is on")
    p.add_argument("--cache-dir", help="cache root (default: $CRYOPOINT_CACHE or ~/.cache/cryopoint)")
    p.add_argument("--notes", default="", help="a sentence for the report")
    p.add_argument("--out", type=Path, help="report path, no suffix (default benchmarks/results/ideal_observer_F)")
    args = p.parse_args(argv)
    out = args.out or REPO / "benchmarks" / "results" / "ideal_observer_F"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    det = cryopoint.load(args.model)
    tables, zero, info, fp = [], {c: [] for c in CLASSES}, {}, {"default": 0, "ranking": 0}
    for seed in args.seeds:
        t, z, i, f = score_set(det, seed, 100 * seed + 1, args.runs, args.shape, args.cache_dir)
        tables.append(t)
        info.update(i)
        fp = {key: fp[key] + f[key] for key in fp}
        for c in CLASSES:
            zero[c] += z[c]
    table = pd.concat(tables, ignore_index=True)
    figure = plot(table, args.cls, out.with_suffix(".png"), f"source F, seeds {', '.join(map(str, args.seeds))}")
    meta = {
        "command": "python -m benchmarks.ideal_observer " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "minutes": (time.time() - t0) / 60,
        "model": str(args.model),
        "model_sha": _sha(det),
        "seeds": args.seeds,
        "figure": str(figure),
        "notes": args.notes,
    }
    path = write_report(table, zero, info, args.cls, meta, out, fp)
    print(path.read_text())
    return path


if __name__ == "__main__":
    main()
