"""Write a PNG of orthogonal slices (xy, xz, yz) of a tomogram, with its true particles circled by class.

    python tools/show_tomogram.py data/synth --run TS_SYN0_1 --out tomo.png
    python tools/show_tomogram.py path/to/denoised.zarr --out tomo.png --center 92 315 315

DIR_OR_ZARR is a dataset root in the challenge layout (pick a run with --run; default: the first) or a single
.zarr/.mrc tomogram (no particles drawn unless --picks-root is given).
"""

import argparse
import sys
from pathlib import Path

from cryopoint.cli import ArgumentParser, entry_point
from cryopoint.io import list_runs, read_picks, read_tomogram, tomogram_path
from cryopoint.viz.slices import plot_orthoslices


@entry_point
def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("path", type=Path, help="dataset root or a .zarr/.mrc tomogram")
    p.add_argument("--run", help="run name (dataset root only; default: the first run)")
    p.add_argument("--split", default="train")
    p.add_argument("--picks-root", type=Path, help="dataset root holding the run's picks (single-file input)")
    p.add_argument("--center", type=int, nargs=3, metavar=("Z", "Y", "X"), help="slice indices (default: middle)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    is_root = args.path.is_dir() and args.path.suffix != ".zarr"
    run = args.run or (list_runs(args.path, args.split)[0] if is_root else None)
    tomo = read_tomogram(tomogram_path(args.path, run, split=args.split) if is_root else args.path)
    picks_root = args.path if is_root else args.picks_root
    picks = read_picks(picks_root, run or tomo.name, split=args.split) if picks_root else None
    plot_orthoslices(tomo.data, tomo.voxel_size, picks, center=args.center, title=run or tomo.name, out=args.out)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
