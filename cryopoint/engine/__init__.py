"""The training engine: loop, losses, EMA, schedules, validation, checkpoints, k-fold training and ensembles.

>>> from cryopoint.config import load_config  # doctest: +SKIP
>>> run_dir = train(load_config("configs/smoke.yaml"))  # doctest: +SKIP
>>> kfold_dir = train_kfold(load_config("configs/smoke.yaml", ["data.fold=all"]))  # doctest: +SKIP
"""

from cryopoint.engine.kfold import train_kfold
from cryopoint.engine.train import train

__all__ = ["train", "train_kfold"]
