"""Write a synthetic cryo-ET dataset in the challenge layout (OME-Zarr v2 tomograms + copick picks JSON).

    python tools/make_synthetic.py --out data/synth --runs 4 --shape 184 630 630 --seed 0 --preset realistic
    python tools/make_synthetic.py --out data/synth --runs 2 --split test --set snr=0.3 tilt_max=45
    python tools/make_synthetic.py --out data/rand --preset randomized --set "keep=[shape_model]" shape_model=analytic

Runs land in OUT/<split>/static/ExperimentRuns/<run>/VoxelSpacing10.000/denoised.zarr and their ground truth in
OUT/<split>/overlay/ExperimentRuns/<run>/Picks/<particle>.json.
"""

import argparse
import sys
from pathlib import Path

from cryopoint.cli import ArgumentParser, entry_point
from cryopoint.synth import PRESETS, generate_dataset
from cryopoint.synth.params import parse_overrides


@entry_point
def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="dataset root")
    p.add_argument("--runs", type=int, default=4, help="number of runs (default 4)")
    p.add_argument("--shape", type=int, nargs=3, default=(184, 630, 630), metavar=("Z", "Y", "X"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=sorted(PRESETS), default="realistic")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="SynthParams overrides, e.g. snr=0.3 keep=[shape_model]",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="runs simulated at once, one process each (default 1; each holds one run's volumes in memory)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing runs of the same names")
    args = p.parse_args(argv)
    overrides = parse_overrides(args.set)
    names = generate_dataset(
        args.out,
        runs=args.runs,
        shape=tuple(args.shape),
        seed=args.seed,
        preset=args.preset,
        split=args.split,
        overwrite=args.overwrite,
        processes=args.processes,
        **overrides,
    )
    print(f"Wrote {len(names)} {args.preset} run(s) to {args.out / args.split}: {', '.join(names)}")


if __name__ == "__main__":
    sys.exit(main())
