"""The registry of architectures, resolved lazily (:mod:`cryopoint.lazy`) so a model's imports load only when built."""

from __future__ import annotations

import inspect

from torch import nn

from cryopoint.errors import ConfigError
from cryopoint.lazy import LazyRegistry

__all__ = ["ARCHITECTURES", "build_model"]

#: Architecture name (``model.arch``) -> its class, imported on first lookup.
ARCHITECTURES = LazyRegistry(
    "model.arch",
    {
        "heatmap25d": "cryopoint.model.heatmap25d:Heatmap25D",
        "unet3d": "cryopoint.model.unet3d:UNet3D",
    },
)


def build_model(arch: str, **kwargs) -> nn.Module:
    """Build an architecture by name with its keyword arguments (the fields of ``cfg.model``).

    >>> model = build_model("heatmap25d", encoder="test_resnet", slab=3)
    >>> model.target_kind, model.output_stride, model.num_classes
    ('heatmap', 2, 6)

    Args:
        arch: A key of :data:`ARCHITECTURES`.
        **kwargs: The architecture's own keyword arguments (see its class docstring).

    Raises:
        ConfigError: unknown ``arch`` (the message lists the options) or a keyword the architecture does not
            take (the message lists the ones it does).
    """
    cls = ARCHITECTURES.resolve(arch)
    accepted = [n for n, p in inspect.signature(cls).parameters.items() if p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"Model arch {arch!r} does not take {', '.join(unknown)}; its arguments are: {', '.join(accepted)}."
        )
    return cls(**kwargs)
