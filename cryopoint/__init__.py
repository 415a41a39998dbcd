"""cryopoint: find particles in cryo-electron tomograms.

>>> import cryopoint
>>> picks = cryopoint.detect("TS_5_4/VoxelSpacing10.000/denoised.zarr", "runs/quickstart/best.pt")  # doctest: +SKIP

``detect``, ``load``, ``Detector``, ``read_tomogram``, ``Config`` and ``load_config`` are imported on first use, so that
``import cryopoint.particles`` (or the CLI's ``--help``) does not pay for torch, scipy and zarr.
"""

from cryopoint.tomogram import Tomogram

__version__ = "0.1.0"

__all__ = ["detect", "load", "Detector", "Tomogram", "read_tomogram", "Config", "load_config", "__version__"]

_LAZY = {
    "detect": "cryopoint.api",
    "load": "cryopoint.api",
    "Detector": "cryopoint.api",
    "read_tomogram": "cryopoint.io",
    "Config": "cryopoint.config",
    "load_config": "cryopoint.config",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cryopoint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
