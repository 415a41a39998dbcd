"""One lazy-loading mechanism for the name registries (model architectures, training losses).

A :class:`LazyRegistry` maps names to ``"package.module:attribute"`` strings and imports the module only when
an entry is looked up, so importing a registry costs nothing and an entry's heavy dependencies (timm, a
segmentation loss) load only when that entry is used.

>>> from cryopoint.lazy import LazyRegistry
>>> reg = LazyRegistry("demo.key", {"sqrt": "math:sqrt"})
>>> reg["sqrt"](9.0), reg.target("sqrt"), sorted(reg)
(3.0, 'math:sqrt', ['sqrt'])
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from cryopoint.errors import ConfigError

__all__ = ["LazyRegistry"]


class LazyRegistry(Mapping[str, Any]):
    """Name -> object, each imported on first lookup from its ``"package.module:attribute"`` target.

    Args:
        key: The config key that picks an entry (``"model.arch"``, ``"train.loss"``), for error messages.
        targets: Name -> ``"package.module:attribute"``.
    """

    def __init__(self, key: str, targets: Mapping[str, str]) -> None:
        self.key = key
        self._targets = dict(targets)

    def target(self, name: str) -> str:
        """The ``"package.module:attribute"`` string of ``name`` (nothing is imported)."""
        return self._targets[name]

    def __getitem__(self, name: str) -> Any:
        """The object registered as ``name``, importing its module (KeyError for an unknown name).

        Raises:
            ConfigError: the module or attribute cannot be imported (the message names the target).
        """
        module, _, attribute = self._targets[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.key} {name!r} ({self._targets[name]}) is not available: {exc}") from exc

    def resolve(self, name: str) -> Any:
        """Like ``registry[name]``, but an unknown name raises a ConfigError that lists the options."""
        if name not in self._targets:
            raise ConfigError(f"Unknown {self.key} {name!r}; options: {', '.join(sorted(self._targets))}.")
        return self[name]

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"LazyRegistry({self.key!r}, {self._targets!r})"
