"""Write an evaluation report (Markdown + PNG figures) for predicted picks against ground truth.

    python tools/report.py --predictions PRED.csv --truth DATASET_ROOT --out report/
    python tools/report.py --predictions heatmap=a.csv --compare unet3d=b.csv blob=c.csv --truth ROOT --out report/

Runs default to those present in the prediction files (a run with truth but no prediction file row is not
silently counted as all-missed); pass --runs to choose them explicitly.

Every input is checked before anything is written: predictions that look like voxel indices are refused, and
so are points outside their tomogram (the figures cannot show them; with --no-tomograms they are counted in a
warning instead). The folder is built next to --out and renamed into place when complete, so a failure leaves
no half-written report; an existing report folder is replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryopoint.cli import ArgumentParser, entry_point, read_thresholds
from cryopoint.errors import OutputExistsError, PointsOutsideVolumeError
from cryopoint.io import read_submission_csv
from cryopoint.io.atomic import atomic_dir, refuse_inputs
from cryopoint.io.layout import TomogramsByRun, read_truth, tomogram_geometries
from cryopoint.io.picks import check_picks_frame
from cryopoint.viz.report import make_report


def _named(spec: str) -> tuple[str, Path]:
    name, _, path = spec.rpartition("=")
    return (name or Path(path).stem), Path(path)


def _check_out(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse an --out that is an input (or holds one), a file, or a folder that is not a replaceable report."""
    refuse_inputs(out, inputs)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file; the report is a folder. Choose another --out.")
    if any(out.iterdir()) and not (out / "report.md").is_file():
        raise OutputExistsError(
            f"--out {out} is a folder that holds no report.md; replacing it could lose other files. "
            "Choose a new or empty folder."
        )
    if not overwrite:
        raise OutputExistsError(f"--out {out} already exists; pass --overwrite to replace the report in it.")


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
    ap.add_argument("--overwrite", action="store_true", help="replace an existing report folder at --out")
    args = ap.parse_args(argv)

    named = dict(map(_named, [args.predictions, *args.compare]))
    inputs = [args.truth, *named.values(), *([Path(args.thresholds)] if args.thresholds not in (None, "tune") else [])]
    _check_out(args.out, args.overwrite, inputs)
    methods = {name: read_submission_csv(path) for name, path in named.items()}
    runs = args.runs or sorted(set().union(*(set(p["experiment"]) for p in methods.values())))
    truth = read_truth(args.truth, split=args.split, runs=runs)
    thresholds = args.thresholds
    if thresholds and thresholds != "tune":
        thresholds = read_thresholds(thresholds)
    geometry = tomogram_geometries(args.truth, runs, split=args.split, missing="skip" if args.no_tomograms else "raise")
    for name, preds in methods.items():
        try:
            check_picks_frame(preds, truth, geometry, outside="warn" if args.no_tomograms else "raise")
        except PointsOutsideVolumeError as err:
            raise PointsOutsideVolumeError(
                f"{name}: {err} The report's figures cannot show them: fix the inputs, or pass --no-tomograms "
                "to score them without figures."
            ) from None
    tomograms = None
    if not args.no_tomograms:
        tomograms = TomogramsByRun(args.truth, runs, split=args.split)  # read only when a figure needs one
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:  # a failure leaves no half-written folder
        make_report(methods, truth, tmp, tomograms=tomograms, thresholds=thresholds)
    path = args.out / "report.md"
    print(f"Report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
