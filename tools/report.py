"""Write an evaluation report (Markdown + PNG figures) for predicted picks against ground truth.

    python tools/report.py --predictions PRED.csv --truth DATASET_ROOT --out report/
    python tools/report.py --predictions heatmap=a.csv --compare unet3d=b.csv blob=c.csv --truth ROOT --out report/

Runs default to those present in the prediction files (a run with truth but no prediction file row is not
silently counted as all-missed); pass --runs to choose them explicitly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryopoint.cli import ArgumentParser, entry_point, read_thresholds
from cryopoint.io import read_submission_csv
from cryopoint.io.layout import TomogramsByRun, read_truth
from cryopoint.viz.report import make_report


def _named(spec: str) -> tuple[str, Path]:
    name, _, path = spec.rpartition("=")
    return (name or Path(path).stem), Path(path)


@entry_point
def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--predictions",
        required=True,
        help="picks CSV (experiment, particle_type, x, y, z[, score]); NAME=PATH to label it",
    )
    ap.add_argument("--compare", nargs="*", default=[], help="more prediction CSVs to compare, NAME=PATH")
    ap.add_argument("--truth", required=True, type=Path, help="dataset root in the challenge/copick layout")
    ap.add_argument("--split", default="train")
    ap.add_argument("--runs", nargs="*", help="runs to evaluate (default: those in the predictions)")
    ap.add_argument("--thresholds", help="YAML of per-class thresholds to apply, or 'tune' (optimistic)")
    ap.add_argument("--no-tomograms", action="store_true", help="skip figures that need the tomograms")
    ap.add_argument("--out", required=True, type=Path, help="output folder for report.md and figures")
    args = ap.parse_args(argv)

    methods = {name: read_submission_csv(path) for name, path in map(_named, [args.predictions, *args.compare])}
    runs = args.runs or sorted(set().union(*(set(p["experiment"]) for p in methods.values())))
    truth = read_truth(args.truth, split=args.split, runs=runs)
    thresholds = args.thresholds
    if thresholds and thresholds != "tune":
        thresholds = read_thresholds(thresholds)
    tomograms = None
    if not args.no_tomograms:
        tomograms = TomogramsByRun(args.truth, runs, split=args.split)  # read only when a figure needs one
    path = make_report(methods, truth, args.out, tomograms=tomograms, thresholds=thresholds)
    print(f"Report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
