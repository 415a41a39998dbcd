"""Strip a trained checkpoint for shipping: the weights ``cryopoint.load`` uses, in fp16, with config, catalogue,
voxel size and thresholds (no optimizer state); prints its size and sha256 for the model card.

    python tools/export_model.py runs/default/best.pt --out cryopoint/weights/default.pt --overwrite
    python tools/export_model.py best.pt --out shipped.pt --set infer.roi=[96,320,320] --set infer.overlap=0

``--set`` changes the inference settings the file ships with (``infer.*``, ``post.*``), never the weights. An
ensemble checkpoint of a k-fold training (``runs/NAME/ensemble.pt``) stays an ensemble, every member in fp16.
"""

import sys
from pathlib import Path

from cryopoint.checkpoint import export_checkpoint, sha256
from cryopoint.cli import ArgumentParser, entry_point


@entry_point
def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a cryopoint checkpoint (best.pt or ensemble.pt)")
    p.add_argument("--out", type=Path, required=True, help="where to write the shipped file")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16, half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="infer.*/post.* setting to ship")
    args = p.parse_args(argv)
    out = export_checkpoint(
        args.checkpoint, args.out, half=not args.fp32, overwrite=args.overwrite, overrides=tuple(args.set)
    )
    print(f"Wrote {out}: {out.stat().st_size / 2**20:.2f} MiB, sha256 {sha256(out)}")


if __name__ == "__main__":
    sys.exit(main())
