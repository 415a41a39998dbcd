"""Detect particles in many tomograms: a challenge/copick dataset split, or a list of .zarr/.mrc files.

    python tools/detect.py --model runs/quickstart/best.pt --root data/czii --split test --out preds/
    python tools/detect.py --model blob --files a.zarr b.mrc --voxel-size 10.012 --out preds/ --formats raw star5
    python tools/detect.py --copick-config project.json --out preds/ --formats submission copick

Per-run results land in OUT/runs/ as each tomogram finishes; a rerun skips finished runs (--overwrite redoes
them; a rerun with another model or other settings is refused unless --overwrite). The exit code is 1 if any
run failed (the others still finish and are written), 2 for a bad command line or input (nothing is run). Under
`torchrun --nnodes N --nproc-per-node G tools/detect.py ...` the runs are shared out across the processes
(cryopoint/batch_distributed.py) and rank 0 writes the combined files.
"""

import argparse
import os
import sys
from pathlib import Path

from cryopoint.batch import FORMATS, BatchOptions, run_batch, runs_from_files, runs_from_root
from cryopoint.cli import ArgumentParser, entry_point, read_thresholds
from cryopoint.data.polarity import POLARITIES
from cryopoint.io.copick import copick_tomogram_paths


@entry_point
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        default=os.environ.get("CRYOPOINT_MODEL") or "default",
        help="checkpoint, 'default' (the shipped model; the default unless $CRYOPOINT_MODEL is set) or 'blob'",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", type=Path, help="dataset root in the challenge/copick layout")
    src.add_argument("--files", type=Path, nargs="+", help=".zarr stores or MRC files")
    src.add_argument(
        "--copick-config",
        type=Path,
        help="copick project config (JSON): tomograms read from it, --formats copick picks written into it "
        "through copick (pip install 'cryopoint[copick]')",
    )
    p.add_argument("--split", default="test", help="split folder under --root (default: test)")
    p.add_argument("--runs", nargs="+", default=[], help="only these runs of the split")
    p.add_argument("--kind", default="denoised", help="reconstruction: denoised, wbp, ctfdeconvolved, ...")
    p.add_argument("--voxel-spacing", type=float, help="copick voxel spacing to read (default: the run's only one)")
    p.add_argument("--out", type=Path, required=True, help="output folder (per-run results and combined files)")
    p.add_argument("--formats", nargs="+", default=["submission", "raw"], choices=FORMATS)
    p.add_argument(
        "--overlay-root",
        type=Path,
        help="copick overlay root (the overlay_root of a copick config): picks go to "
        "OVERLAY_ROOT/ExperimentRuns/<run>/Picks/cryopoint_0_<object>.json (default: OUT/overlay)",
    )
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--threshold", type=float, help="one score threshold for every class (default: the model's)")
    cut.add_argument("--thresholds", type=Path, help="per-class thresholds YAML (tools/tune_thresholds.py --out)")
    cut.add_argument(
        "--adaptive",
        type=float,
        metavar="ALPHA",
        help="per tomogram, keep at most ALPHA x the peaks per volume the model's thresholds keep on its reference "
        "data (label-free, for data unlike the training data; 0 = off; default: the model's setting)",
    )
    p.add_argument(
        "--noise-tail",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per tomogram and class, raise the model's threshold to where peaks stand above the tomogram's own "
        "background tail (label-free; default: the model's setting)",
    )
    p.add_argument(
        "--devices",
        nargs="+",
        default=[],
        help="e.g. cuda:0 cuda:1 (default: every GPU, else cpu); under torchrun one per process on a machine",
    )
    p.add_argument("--tta", action="store_true", default=None, help="flip test-time augmentation (4x slower)")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default: the model's config)")
    p.add_argument("--roi", type=int, nargs=3, help="window z y x voxels (default: the model's; smaller = less memory)")
    p.add_argument("--voxel-size", type=float, help="Å per voxel, for files without one in their header")
    p.add_argument(
        "--polarity",
        choices=POLARITIES,
        default="check",
        help="protein darker than the ice ('dark', the convention) or inverted ('bright'); 'check' (default) "
        "warns when a tomogram looks inverted, 'auto' also inverts it where the model agrees",
    )
    p.add_argument("--overwrite", action="store_true", help="redo runs that already finished")
    args = p.parse_args(argv)
    if args.noise_tail and (args.threshold is not None or args.thresholds):
        p.error("--noise-tail raises the model's own thresholds; it does not apply with --threshold/--thresholds")
    if args.copick_config and args.overlay_root:
        p.error("--overlay-root is for --root/--files; with --copick-config, picks go into the copick project")
    if args.copick_config:
        inputs = copick_tomogram_paths(args.copick_config, args.runs, args.kind, args.voxel_spacing)
    elif args.files:
        inputs = runs_from_files(args.files)
    else:
        inputs = runs_from_root(args.root, args.split, args.runs, args.kind)
    opts = BatchOptions(
        model=str(args.model),
        out_dir=args.out,
        formats=tuple(args.formats),
        overlay_root=args.overlay_root,
        copick_config=args.copick_config,
        split=args.split,
        thresholds=read_thresholds(args.thresholds) if args.thresholds else args.threshold,
        adaptive_alpha=args.adaptive,
        noise_tail=args.noise_tail,
        devices=tuple(args.devices),
        tta=args.tta,
        batch_size=args.batch_size,
        roi=tuple(args.roi) if args.roi else None,
        voxel_size=args.voxel_size,
        overwrite=args.overwrite,
        polarity=args.polarity,
    )
    summary = run_batch(inputs, opts)
    return int((summary["status"] == "failed").any())


if __name__ == "__main__":
    sys.exit(main())
