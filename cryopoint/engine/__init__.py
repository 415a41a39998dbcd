"""The training engine: loop, losses, EMA, schedules, validation, checkpoints.

>>> from cryopoint.config import load_config  # doctest: +SKIP
>>> run_dir = train(load_config("configs/smoke.yaml"))  # doctest: +SKIP
"""

from cryopoint.engine.train import train

__all__ = ["train"]
