"""cryopoint: find particles in cryo-electron tomograms.

>>> import cryopoint
>>> picks = cryopoint.detect("TS_5_4/VoxelSpacing10.000/denoised.zarr", "runs/quickstart/best.pt")  # doctest: +SKIP

``detect``, ``load``, ``Detector``, ``read_tomogram``, ``Config`` and ``load_config`` are imported on first use, so that
``import cryopoint.particles`` (or the CLI's ``--help``) does not pay for torch, scipy and zarr. The subpackages
(``cryopoint.synth``, ``cryopoint.io``, ``cryopoint.metric``, ``cryopoint.post``, ...) are attributes too, also
imported on first use.
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

#: Submodules reachable as ``cryopoint.<name>`` after a plain ``import cryopoint``.
_SUBMODULES = (
    "api", "baselines", "batch", "checkpoint", "cli", "config", "coords", "data", "engine", "errors", "infer", "io",
    "metric", "model", "particles", "post", "synth", "tomogram", "viz", "weights",
)  # fmt: skip
#: Modules of a subpackage that its own ``__init__`` does not import, imported with it (``cryopoint.post.nms``).
_WITH = {"post": ("nms", "thresholds")}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        for part in _WITH.get(name, ()):
            importlib.import_module(f"cryopoint.{name}.{part}")
        return importlib.import_module(f"cryopoint.{name}")  # the import also sets it as an attribute
    raise AttributeError(f"module 'cryopoint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
