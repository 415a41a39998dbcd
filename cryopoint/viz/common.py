"""Shared figure plumbing: one colour per particle class and atomic PNG saving (Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cryopoint.io.atomic import atomic_path  # noqa: E402
from cryopoint.particles import PARTICLE_NAMES  # noqa: E402

__all__ = ["CLASS_COLORS", "class_color", "display_limits", "save_png", "plt"]

# One colour per class in catalogue label order, used by every figure; chosen to stay distinct on grey slices.
CLASS_COLORS: dict[str, str] = dict(
    zip(PARTICLE_NAMES, ("#e6194b", "#f58231", "#ffe119", "#3cb44b", "#42d4f4", "#911eb4"))
)


def class_color(name: str) -> str:
    """Colour of a particle class (grey for anything outside the catalogue)."""
    return CLASS_COLORS.get(name, "#999999")


def display_limits(image: np.ndarray, *, max_samples: int = 1_000_000) -> tuple[float, float]:
    """Grey-scale window for showing a tomogram slice or volume: its 1st-99th percentiles (on a regular
    subsample of at most ``max_samples`` voxels, so whole volumes stay cheap)."""
    flat = np.asarray(image).ravel()
    lo, hi = np.percentile(flat[:: max(1, flat.size // max_samples)], [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1e-12)


def save_png(fig: Figure, out: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG atomically and close it; returns the path."""
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(out)
