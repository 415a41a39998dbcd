"""Shared figure plumbing: one colour per particle class and atomic PNG saving (Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cryopoint.io.atomic import atomic_path  # noqa: E402
from cryopoint.particles import PARTICLE_NAMES  # noqa: E402

__all__ = ["CLASS_COLORS", "class_color", "save_png", "plt"]

# Colour-blind-safe (Okabe-Ito) colours in catalogue label order.
CLASS_COLORS: dict[str, str] = dict(
    zip(PARTICLE_NAMES, ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00"))
)


def class_color(name: str) -> str:
    """Colour of a particle class (grey for anything outside the catalogue)."""
    return CLASS_COLORS.get(name, "#999999")


def save_png(fig: Figure, out: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG atomically and close it; returns the path."""
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(out)
