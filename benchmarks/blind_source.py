"""Sources D to H: a model on tomograms from simulators written blind.

Sources A, B and C of ``benchmarks/generalization.py`` are settings of cryopoint's own simulator. Sources D to H
are five separate simulators (``benchmarks/blind_sim.py``, ``blind_sim_e.py``, ``blind_sim_f.py``,
``blind_sim_g.py``, ``blind_sim_h.py``), each written without sight of cryopoint's code or documents or of the others
(their headers say how), with its own particle models, clutter, imaging, CTF, noise, reconstruction and denoisers.
They write the CZII layout, so cryopoint reads them as a user's data. No cryopoint recipe trains on G or H: they are
for evaluation only. D, E and F may be trained on (measured stages did; D with fresh seeds only): the shipped file's
last stage trained on runs of E (seed 1) and its thresholds were tuned partly on E (seed 9), so for it D, F, G and H
are the generators it has never seen (docs/models.md). ``--source`` picks one (default D).

For a checkpoint (the shipped file by default) it reports, on ``--runs`` runs of 96 x 256 x 256:

* the weighted and per-class F-beta as ``detect`` picks by default (shipped thresholds, raised per tomogram by the
  noise-tail rule where the checkpoint has it on), with the checkpoint's thresholds alone, and with thresholds
  tuned on the scored runs themselves (ranking quality, an oracle);
* the LoG blob baseline beside it honestly: the blob's thresholds are tuned on the first half of the runs and both
  are scored on the second half, with a paired 90 % interval per class from resampling runs;
* with ``--full N``, N full-size 184 x 630 x 630 runs: seconds per tomogram and the same scores;
* with ``--baseline CKPT``, a second checkpoint on the same runs (small and full size): its default picks and
  ranking, and the difference as ``detect`` picks by default (``--model`` minus it) per class and weighted, with a
  paired 90 % interval from resampling runs: the comparison a shipping rule asks for.

::

    python -m benchmarks.blind_source                       # D: 48 runs + 3 full-size runs: ~25 min on 2 cores
    python -m benchmarks.blind_source --runs 16 --full 0    # a quick look
    python -m benchmarks.blind_source --source G --runs 48 --full 3   # source G
    python -m benchmarks.blind_source --source G --model cand.pt --baseline default   # a candidate, paired

The runs are generated once into the cryopoint cache (``blind_sim/<key>/``, ``blind_sim_e/<key>/`` ...
``blind_sim_h/<key>/``, keyed by the simulator's code, seed and shape; a stopped generation resumes). Writes
``benchmarks/results/blind_source.{md,json}`` for D, ``blind_source_E`` ... ``blind_source_H`` for the others. Seeds
used so far are listed in docs/models.md; a candidate trained on a blind source must be scored on other seeds than
its training runs'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import track

from benchmarks import blind_sim, blind_sim_e, blind_sim_f, blind_sim_g, blind_sim_h
from benchmarks.bench_common import bootstrap_fbeta_gap, machine, own_picks, per_run_counts, score_cells
from cryopoint.particles import PARTICLE_NAMES, get_particle

REPO = Path(__file__).resolve().parents[1]
SCORED = [n for n in PARTICLE_NAMES if get_particle(n).weight > 0]
WEIGHTS = [get_particle(n).weight for n in PARTICLE_NAMES]
SHAPE = (96, 256, 256)
FULL_SHAPE = (184, 630, 630)
console = Console()


#: source -> its simulator module (each written blind; see their headers)
SIMULATORS = {"D": blind_sim, "E": blind_sim_e, "F": blind_sim_f, "G": blind_sim_g, "H": blind_sim_h}


def run_names(first: int, runs: int, source: str = "D") -> list[str]:
    """The simulator's run names ``TS_<source>_<first>`` ... in order."""
    if source not in SIMULATORS:
        raise ValueError(f"unknown blind source {source!r}; choose one of {', '.join(SIMULATORS)}")
    return [f"TS_{source}_{k}" for k in range(first, first + runs)]


def _complete(root: Path, source: str, name: str) -> bool:
    """Whether run ``name`` of ``source`` is fully written under ``root`` (each simulator's own test)."""
    if source in ("D", "H"):
        return SIMULATORS[source].run_complete(str(root), name)
    picks = root / "train" / "overlay" / "ExperimentRuns" / name / "Picks"
    static = root / "train" / "static" / "ExperimentRuns" / name
    if source in ("F", "G"):
        return SIMULATORS[source].run_complete(str(static), str(picks.parent))
    zarr = static / "VoxelSpacing10.000" / "denoised.zarr"
    return zarr.is_dir() and picks.is_dir() and len(list(picks.iterdir())) == len(blind_sim_e.CLASSES)


def _generate(root: Path, source: str, seed: int, k: int, shape: tuple[int, int, int]) -> None:
    """Run ``k`` of ``source`` at ``seed`` and ``shape``, written into ``root`` by the simulator itself."""
    if source == "D":
        blind_sim.generate_run(root, f"TS_D_{k}", seed, k, shape)
        return
    args = ["--out", str(root), "--runs", "1", "--seed", str(seed), "--first", str(k), "--shape", *map(str, shape)]
    # the simulators print a line per run (H to stderr); the bar says enough
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        SIMULATORS[source].main(args)


def dataset(
    seed: int, first: int, runs: int, shape: tuple[int, int, int], cache_dir: str | None = None, source: str = "D"
) -> Path:
    """A data root holding runs ``first .. first + runs - 1`` of a blind simulator (generated where missing).

    The folder is keyed by the simulator's code (any edit gives a new one), the seed and the shape; each run is
    deterministic in (seed, run index) and written atomically by the simulator, so a stopped call resumes.
    """
    from cryopoint.data.cache import default_cache_dir, source_digest

    names = run_names(first, runs, source)  # raises for an unknown source
    module = SIMULATORS[source]
    key = f"{source_digest([Path(module.__file__)])}_s{seed}_{'x'.join(map(str, shape))}"
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root = root / Path(module.__file__).stem / key
    todo = [k for k, n in zip(range(first, first + runs), names) if not _complete(root, source, n)]
    for k in track(todo, description=f"simulating {len(todo)} runs of source {source}", console=console):
        _generate(root, source, seed, k, tuple(shape))
    return root


def predict_timed(det, root: Path, names: list[str]) -> tuple[pd.DataFrame, list[float]]:
    """Every peak (thresholds 0) of the detector ``det`` on ``names``, with the seconds of each ``detect`` call."""
    import cryopoint
    from cryopoint.io import tomogram_path

    peaks, seconds = [], []
    for n in track(names, description="detecting", console=console):
        t0 = time.perf_counter()
        peaks.append(cryopoint.detect(tomogram_path(root, n), det, thresholds=0.0).assign(experiment=n))
        seconds.append(time.perf_counter() - t0)
    return pd.concat(peaks, ignore_index=True), seconds


def evaluate(
    det, root: Path, peaks: pd.DataFrame, blobs: pd.DataFrame | None, truth: pd.DataFrame, names: list[str]
) -> dict:
    """Scores of ``peaks`` (every peak of the detector ``det`` on the runs ``names`` of ``root``): default picks,
    thresholds alone, ranking; and, with ``blobs``, the split-half comparison with the blob detector (blob thresholds
    from the first half)."""
    from benchmarks.generalization import run_geometry
    from cryopoint.post.thresholds import apply_thresholds, tune_thresholds

    geometry = run_geometry(root, names)
    default = own_picks(det, peaks, geometry)
    ranked = apply_thresholds(peaks, tune_thresholds(truth, peaks).thresholds)
    out = {
        "runs": len(names),
        "particles": {n: int((truth.particle_type == n).sum()) for n in PARTICLE_NAMES},
        "default": score_cells(default, truth),
        "thresholds_alone": score_cells(apply_thresholds(peaks, det.default_thresholds), truth),
        "ranking": score_cells(ranked, truth),
    }
    if blobs is not None and len(names) >= 4:
        tune, test = names[: len(names) // 2], names[len(names) // 2 :]
        blob_thr = tune_thresholds(truth[truth.experiment.isin(tune)], blobs[blobs.experiment.isin(tune)]).thresholds
        test_truth = truth[truth.experiment.isin(test)]
        net = default[default.experiment.isin(test)]
        blob = apply_thresholds(blobs[blobs.experiment.isin(test)], blob_thr)
        out["split_half"] = {
            "tune_runs": tune,
            "test_runs": test,
            "network_default": score_cells(net, test_truth),
            "blob": score_cells(blob, test_truth),
            "gap": paired_gap(per_run_counts(test_truth, net, test), per_run_counts(test_truth, blob, test)),
        }
    return out


def paired_gap(a, b) -> dict:
    """F-beta of picks ``a`` minus picks ``b`` per class and weighted, each with a paired 90 % interval from
    resampling runs; ``a`` and ``b`` are :func:`per_run_counts` arrays of the same runs."""
    per_class, weighted = bootstrap_fbeta_gap(a, b), bootstrap_fbeta_gap(a, b, weights=WEIGHTS)
    gap = {n: {k: float(per_class[k][i]) for k in ("gap", "lo", "hi")} for i, n in enumerate(PARTICLE_NAMES)}
    gap["weighted"] = {k: float(weighted[k]) for k in ("gap", "lo", "hi")}
    return gap


def against_baseline(
    det, peaks: pd.DataFrame, base, base_peaks: pd.DataFrame, root: Path, truth: pd.DataFrame, names: list[str]
) -> dict:
    """The detector ``det`` against a baseline detector ``base`` on the same runs: the baseline's scores (as
    :func:`evaluate` gives them, without the blob) and ``gap``, ``det`` minus ``base`` as ``detect`` picks by
    default, per class and weighted, with paired 90 % intervals from resampling runs."""
    from benchmarks.generalization import run_geometry

    geometry = run_geometry(root, names)
    mine, theirs = own_picks(det, peaks, geometry), own_picks(base, base_peaks, geometry)
    out = evaluate(base, root, base_peaks, None, truth, names)
    out["gap"] = paired_gap(per_run_counts(truth, mine, names), per_run_counts(truth, theirs, names))
    return out


def _row(label: str, cells: dict) -> str:
    per = " | ".join(f"{cells[n]:.3f} ({cells[n + ' recall']:.2f})" for n in SCORED)
    return f"| {label} | **{cells['score']:.3f}** | {per} |"


def _three_rows(res: dict, head: str, rule: str) -> list[str]:
    """The table of one set: default picks, thresholds alone, ranking."""
    labels = (
        ("default", "default"),
        ("thresholds alone", "thresholds_alone"),
        ("ranking (tuned on these runs)", "ranking"),
    )
    return [head, rule, *(_row(label, res[key]) for label, key in labels)]


def _gap_row(label: str, gap: dict) -> str:
    cells = [gap["weighted"], *(gap[n] for n in SCORED)]
    return f"| {label} | " + " | ".join(f"{c['gap']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]" for c in cells) + " |"


def _baseline_lines(result: dict, meta: dict, part: str, head: str, rule: str) -> list[str]:
    """The comparison with ``--baseline`` on one set (``small`` or ``full``); none without a baseline."""
    base = result.get("baseline", {}).get(part)
    if not base:
        return []
    return [
        "",
        f"Against the baseline `{meta['baseline']}` (sha256 `{meta['baseline_sha'][:12]}…`) on the same runs; "
        "difference this model minus the baseline, both as `detect` picks by default, with a paired 90 % interval "
        "from resampling runs.",
        "",
        head,
        rule,
        _row("this model, default picks", result[part]["default"]),
        _row("baseline, default picks", base["default"]),
        _row("baseline, ranking (tuned on these runs)", base["ranking"]),
        _gap_row("difference, default picks", base["gap"]),
    ]


def write_report(result: dict, meta: dict, out: Path) -> Path:
    """``out``.md: the tables; ``out``.json is written beside it by :func:`main`."""
    from cryopoint.io.atomic import atomic_write_text

    small = result["small"]
    head = "| picks | weighted | " + " | ".join(SCORED) + " |"
    rule = "|---" * (len(SCORED) + 2) + "|"
    counts = ", ".join(f"{n} {small['particles'][n]}" for n in SCORED)
    sim = Path(SIMULATORS[meta.get("source", "D")].__file__).name
    lines = [
        f"# Source {meta.get('source', 'D')}: a simulator written blind",
        "",
        f"`{meta['command']}`: {meta['when']}, {meta['machine']}, {meta['minutes']:.1f} min. Model `{meta['model']}`"
        f" (sha256 `{meta['model_sha'][:12]}…`). Simulator `benchmarks/{sim}` (digest `{meta['sim_digest']}`),"
        f" seed {meta['seed']}, runs {meta['first']}..{meta['first'] + meta['runs'] - 1} of "
        f"{' x '.join(map(str, meta['shape']))} voxels: {counts} scored particles.",
        "",
        "F-beta (β = 4) per class with recall in brackets. 'default' is what `detect` keeps; 'thresholds alone' the "
        "checkpoint's thresholds without the per-tomogram rule; 'ranking' thresholds tuned on these runs (an oracle).",
        "",
        *_three_rows(small, head, rule),
    ]
    if "split_half" in small:
        s = small["split_half"]
        gap = s["gap"]
        lines += [
            "",
            f"Against the LoG blob detector: blob thresholds tuned on runs {s['tune_runs'][0]}..{s['tune_runs'][-1]}, "
            f"both scored on runs {s['test_runs'][0]}..{s['test_runs'][-1]}; difference network minus blob with a "
            "paired 90 % interval from resampling runs.",
            "",
            head,
            rule,
            _row("network, default picks", s["network_default"]),
            _row("blob (LoG)", s["blob"]),
            _gap_row("difference", gap),
        ]
    lines += _baseline_lines(result, meta, "small", head, rule)
    if result.get("full"):
        f = result["full"]
        sec = f["seconds"]
        lines += [
            "",
            f"Full size: {len(sec)} runs of {' x '.join(map(str, meta['full_shape']))} voxels "
            f"(seed {meta['seed'] + 1}), "
            f"{', '.join(f'{s:.0f}' for s in sec)} s per tomogram through `detect` on this machine; "
            + ", ".join(f"{n} {f['particles'][n]}" for n in SCORED)
            + " scored particles.",
            "",
            *_three_rows(f, head, rule),
        ]
        lines += _baseline_lines(result, meta, "full", head, rule)
    lines += ["", f"Notes: {meta['notes']}" if meta.get("notes") else ""]
    path = out.with_suffix(".md")
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def _sha(det) -> str:
    """sha256 of the file a detector was loaded from ('' for one built in memory)."""
    from cryopoint.checkpoint import sha256

    return sha256(det.path) if det.path else ""


def main(argv: list[str] | None = None) -> Path:
    import shlex
    import sys

    import cryopoint
    from cryopoint.data.cache import source_digest
    from cryopoint.io import read_truth
    from cryopoint.io.atomic import atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="checkpoint to score (default: the shipped file)")
    p.add_argument("--runs", type=int, default=48, help="runs of --shape voxels")
    p.add_argument("--seed", type=int, default=2, help="simulator seed of the runs (the full-size runs use seed + 1)")
    p.add_argument("--first", type=int, default=101, help="index of the first run (TS_<source>_<first>)")
    p.add_argument("--full", type=int, default=3, help="full-size 184 x 630 x 630 runs (0: none)")
    p.add_argument("--shape", type=int, nargs=3, default=list(SHAPE), metavar=("Z", "Y", "X"), help="shape of the runs")
    p.add_argument("--full-shape", type=int, nargs=3, default=list(FULL_SHAPE), metavar=("Z", "Y", "X"))
    p.add_argument("--cache-dir", help="cache root (default: $CRYOPOINT_CACHE or ~/.cache/cryopoint)")
    p.add_argument("--notes", default="", help="a sentence for the report")
    p.add_argument("--source", choices=sorted(SIMULATORS), default="D", help="which blind simulator (default D)")
    p.add_argument(
        "--baseline",
        help="a second checkpoint scored on the same runs: the report adds the paired difference (--model minus it)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="report path, no suffix (default benchmarks/results/blind_source, _E to _H for the others)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        suffix = "" if args.source == "D" else f"_{args.source}"
        args.out = REPO / "benchmarks" / "results" / f"blind_source{suffix}"
    from benchmarks.generalization import blob_picks

    t0 = time.time()
    det = cryopoint.load(args.model)
    result = {}
    root = dataset(args.seed, args.first, args.runs, tuple(args.shape), args.cache_dir, args.source)
    console.print(f"source {args.source} runs in {root}")
    names = run_names(args.first, args.runs, args.source)
    truth = read_truth(root, runs=names)
    peaks, seconds = predict_timed(det, root, names)
    blobs = blob_picks(root, names)
    result["small"] = evaluate(det, root, peaks, blobs, truth, names)
    result["small"]["seconds"] = seconds
    base = cryopoint.load(args.baseline) if args.baseline else None
    if base is not None:
        base_peaks, _ = predict_timed(base, root, names)
        result["baseline"] = {"small": against_baseline(det, peaks, base, base_peaks, root, truth, names)}
    if args.full:
        full_root = dataset(
            args.seed + 1, args.first + 100, args.full, tuple(args.full_shape), args.cache_dir, args.source
        )
        full_names = run_names(args.first + 100, args.full, args.source)
        full_truth = read_truth(full_root, runs=full_names)
        full_peaks, full_seconds = predict_timed(det, full_root, full_names)
        result["full"] = evaluate(det, full_root, full_peaks, None, full_truth, full_names)
        result["full"]["seconds"] = full_seconds
        if base is not None:
            base_peaks, _ = predict_timed(base, full_root, full_names)
            result["baseline"]["full"] = against_baseline(
                det, full_peaks, base, base_peaks, full_root, full_truth, full_names
            )
    meta = {
        "command": shlex.join(["python", "-m", "benchmarks.blind_source", *(sys.argv[1:] if argv is None else argv)]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "minutes": (time.time() - t0) / 60,
        "model": args.model,
        "model_sha": _sha(det),
        "baseline": args.baseline,
        "baseline_sha": _sha(base) if base is not None else "",
        "source": args.source,
        "sim_digest": source_digest([Path(SIMULATORS[args.source].__file__)]),
        "seed": args.seed,
        "first": args.first,
        "runs": args.runs,
        "shape": list(args.shape),
        "full_shape": list(args.full_shape),
        "notes": args.notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = write_report(result, meta, args.out)
    atomic_write_text(
        args.out.with_suffix(".json"), json.dumps({"meta": meta, "result": result}, indent=1, default=float)
    )
    console.print(path.read_text())
    return path


if __name__ == "__main__":
    main()
