"""Train a cryopoint model from a YAML config.

    python tools/train.py configs/quickstart.yaml
    python tools/train.py configs/heatmap_r34.yaml train.lr=3e-4 data.fold=2
    python tools/train.py configs/heatmap_r34.yaml --resume           # continue from the run's last.pt
    torchrun --nproc-per-node 4 tools/train.py configs/heatmap_r34.yaml  # DDP, one process per GPU
    python tools/train.py configs/heatmap_r34.yaml data.fold=all      # every fold, then runs/NAME/ensemble.pt

Everything happens in :func:`cryopoint.engine.train` (one fold) or :func:`cryopoint.engine.train_kfold`
(``data.fold=all``: the folds one after another, under torchrun each with DDP); this script only parses the
command line.
"""

import argparse
import sys

from cryopoint.cli import ArgumentParser, entry_point
from cryopoint.config import ALL_FOLDS, load_config
from cryopoint.engine import train, train_kfold


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 data.fold=2 (or all)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *(["train.resume=true"] if args.resume else [])]
    cfg = load_config(args.config, overrides)
    (train_kfold if cfg.data.fold == ALL_FOLDS else train)(cfg)


if __name__ == "__main__":
    sys.exit(main())
