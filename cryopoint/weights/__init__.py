"""The shipped default model: ``cryopoint.detect(tomogram)`` with no checkpoint uses it.

``default.pt`` is a cryopoint checkpoint stripped for shipping (weights in fp16, config, particle catalogue,
voxel size, thresholds; no optimizer state), loaded with ``weights_only=True`` like any other. Its model
card, with how it was trained, what it scores where, its sha256 and its limits, is ``docs/models.md``.
"""

from __future__ import annotations

from pathlib import Path

from cryopoint.errors import DataNotFoundError

__all__ = ["DEFAULT_NAME", "DEFAULT_PATH", "default_checkpoint", "resolve_checkpoint"]

#: The name that stands for the shipped model wherever a checkpoint path is accepted.
DEFAULT_NAME = "default"
#: Where the shipped default checkpoint lives inside the package.
DEFAULT_PATH = Path(__file__).resolve().parent / "default.pt"


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint.

    Raises:
        DataNotFoundError: the package was installed without its weights file.
    """
    if not DEFAULT_PATH.is_file():
        raise DataNotFoundError(
            f"The default model is missing from this installation ({DEFAULT_PATH}). Reinstall cryopoint from a full "
            "clone (`pip install -e .`), or pass a checkpoint you trained: `python tools/train.py CONFIG`."
        )
    return DEFAULT_PATH


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """``"default"`` → the shipped checkpoint; anything else is a path, returned as a ``Path``.

    >>> resolve_checkpoint("runs/quickstart/best.pt").name
    'best.pt'
    """
    if str(name_or_path) == DEFAULT_NAME:
        return default_checkpoint()
    return Path(name_or_path)
