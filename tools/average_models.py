"""Average the weights of checkpoints of one network (a model soup of one training lineage) into one checkpoint.

    python tools/average_models.py stage4.pt stage5.pt --out average.pt
    python tools/detect.py --model average.pt --root DATA --split train --runs VAL_RUNS --out val --formats raw
    python tools/tune_thresholds.py --predictions val/peaks.csv --truth DATA --rule lean --tolerance 0.05 \\
        --checkpoint average.pt --save-as average_tuned.pt --out thresholds.yaml

Every weight and BatchNorm statistic is the plain mean; config, catalogue and voxel size come from the last
checkpoint. Thresholds are not averaged: tune the average's own on held-out runs (above), as every other model's.
It costs nothing at inference (one network), unlike an ensemble. Only checkpoints of one lineage (one started
from the other, or both from a common parent) average into a working network.
"""

import sys
from pathlib import Path

from cryopoint.checkpoint import average_checkpoints, sha256
from cryopoint.cli import ArgumentParser, entry_point


@entry_point
def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="two or more checkpoints of one network")
    p.add_argument("--out", type=Path, required=True, help="where to write the average")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    out = average_checkpoints(args.checkpoints, args.out, overwrite=args.overwrite)
    print(f"Wrote {out}: the average of {len(args.checkpoints)} checkpoints, sha256 {sha256(out)}.")
    print("Its thresholds are not tuned yet: tune them on held-out runs (tools/tune_thresholds.py --checkpoint).")


if __name__ == "__main__":
    sys.exit(main())
