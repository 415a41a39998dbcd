"""Where training crops come from: class-balanced positive crops, uniform background crops, border handling.

Sampling rule (one draw per crop, all from the caller's ``numpy.random.Generator``):

1. With probability ``positive_fraction`` the crop is *positive* (when the runs hold any particle):
   a. choose a class among the classes present in the runs, uniformly (or by ``class_weights``), so rare
      classes get the same share as common ones;
   b. choose one particle of that class uniformly, pooled over all runs;
   c. place it at a uniform random voxel of the crop, at least ``edge_margin x crop size`` from its faces.
2. Else, with probability ``hard_negative_fraction`` (when decoys were given,
   :mod:`cryopoint.engine.hard_negatives`), the crop is a *hard negative*: one decoy chosen uniformly, pooled
   over all runs, placed like a positive particle.
3. Otherwise the crop is *uniform*: a run with probability proportional to its voxel count, then a start
   uniform over all positions where the crop fits inside the volume.

With no decoys (the default) the draws are exactly those of the two-way rule, so results reproduce.

Borders: crop starts are **clamped** so that the crop lies inside the volume (a particle placed near a face
stays inside the crop, just off its chosen spot). Only along an axis where the volume is smaller than the
crop is the crop centred on the volume and padded with ``pad_value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cryopoint.errors import ConfigError
from cryopoint.particles import NUM_CLASSES, PARTICLE_NAMES

__all__ = ["CropSpec", "CropSampler", "clamp_start", "extract_crop", "points_near_crop"]


@dataclass(frozen=True)
class CropSpec:
    """One sampled crop.

    Attributes:
        run: Index of the run in the sampler's list.
        start: First voxel of the crop, ``(z, y, x)`` full-resolution voxels (negative only where padded).
        positive: Whether the crop was centred near a particle.
        label: The class chosen for a positive crop; ``-1`` otherwise.
        hard_negative: Whether the crop was centred near a decoy (a mined particle-like non-particle).
    """

    run: int
    start: tuple[int, int, int]
    positive: bool
    label: int
    hard_negative: bool = False


class CropSampler:
    """Draws :class:`CropSpec` s by the rule in the module docstring.

    Args:
        shapes: Volume shape ``(Z, Y, X)`` of every run.
        points: Per run, ``(N, 3)`` particle centres in full-resolution voxels ``(z, y, x)``.
        labels: Per run, ``(N,)`` catalogue labels.
        crop_size: ``(D, H, W)`` in voxels.
        positive_fraction: Probability that a crop is centred near a particle, in ``[0, 1]``.
        class_weights: Optional relative weight per catalogue class (length ``NUM_CLASSES``) for step 1a;
            classes absent from the runs are skipped. ``None`` = uniform over the present classes.
        edge_margin: Fraction of the crop size kept free between a positive crop's particle (or a hard
            negative's decoy) and its faces (before clamping), in ``[0, 0.5)``.
        decoys: Optional, per run, ``(K, 3)`` decoy centres in voxels ``(z, y, x)``
            (:func:`cryopoint.engine.hard_negatives.mine_decoys`).
        hard_negative_fraction: Probability that a crop is centred on a decoy; ``positive_fraction +
            hard_negative_fraction <= 1``. Ignored (no draws) when there are no decoys.
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[int]],
        points: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        crop_size: Sequence[int],
        *,
        positive_fraction: float = 0.5,
        class_weights: Sequence[float] | None = None,
        edge_margin: float = 0.125,
        decoys: Sequence[np.ndarray] | None = None,
        hard_negative_fraction: float = 0.0,
    ) -> None:
        if not shapes:
            raise ConfigError("No runs to sample crops from; give at least one training run.")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ConfigError(f"positive_fraction must be in [0, 1]; got {positive_fraction}.")
        if not 0.0 <= edge_margin < 0.5:
            raise ConfigError(f"edge_margin must be in [0, 0.5); got {edge_margin}.")
        if not 0.0 <= hard_negative_fraction <= 1.0 - positive_fraction + 1e-12:
            raise ConfigError(
                f"hard_negative_fraction must be in [0, 1 - positive_fraction] = [0, {1 - positive_fraction:g}] "
                f"(the rest are uniform crops); got {hard_negative_fraction}."
            )
        if decoys is not None and len(decoys) != len(shapes):
            raise ConfigError(f"decoys must hold one array per run ({len(shapes)}); got {len(decoys)}.")
        self.crop_size = np.array([int(s) for s in crop_size])
        if self.crop_size.shape != (3,) or np.any(self.crop_size < 1):
            raise ConfigError(f"crop_size must be three positive integers (D, H, W); got {tuple(crop_size)}.")
        self.shapes = np.array([[int(s) for s in shape] for shape in shapes])
        self.positive_fraction = float(positive_fraction)
        self.margin = np.floor(edge_margin * self.crop_size).astype(int)

        # Every particle of the dataset, as (run index, z, y, x), grouped by class.
        run_ids = np.concatenate([np.full(len(p), k) for k, p in enumerate(points)]).astype(int)
        all_points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in points])
        all_labels = np.concatenate([np.asarray(lab).reshape(-1) for lab in labels]).astype(int)
        self._by_class = {
            c: (run_ids[all_labels == c], all_points[all_labels == c]) for c in np.unique(all_labels).tolist()
        }
        weights = np.ones(NUM_CLASSES) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
        if weights.shape != (NUM_CLASSES,) or np.any(weights < 0):
            raise ConfigError(
                f"class_weights needs {NUM_CLASSES} non-negative values, in catalogue order "
                f"({', '.join(PARTICLE_NAMES)}); got {class_weights}."
            )
        self.classes = np.array([c for c in sorted(self._by_class) if weights[c] > 0], dtype=int)
        self.class_probs = weights[self.classes] / weights[self.classes].sum() if len(self.classes) else np.ones(0)
        voxels = self.shapes.prod(axis=1).astype(np.float64)
        self.run_probs = voxels / voxels.sum()
        # Every decoy as (run index, z, y, x); none kept (so no draws) unless decoys and a fraction > 0 are given.
        self.hard_negative_fraction = float(hard_negative_fraction) if decoys is not None else 0.0
        used = [np.asarray(d, dtype=np.float64).reshape(-1, 3) for d in decoys] if self.hard_negative_fraction else []
        self._decoy_runs = np.concatenate([np.zeros(0, int), *[np.full(len(d), k) for k, d in enumerate(used)]])
        self._decoys = np.concatenate([np.zeros((0, 3)), *used])

    def sample(self, rng: np.random.Generator) -> CropSpec:
        """Draw one crop; all randomness comes from ``rng``."""
        has_pos, has_neg = len(self.classes) > 0, len(self._decoys) > 0
        u = rng.random() if has_pos or has_neg else 1.0
        pos_share = self.positive_fraction if has_pos else 0.0
        positive = u < pos_share
        hard = not positive and has_neg and u < pos_share + self.hard_negative_fraction
        label = -1
        if positive or hard:
            if positive:
                label = int(rng.choice(self.classes, p=self.class_probs))
                run_ids, pts = self._by_class[label]
            else:
                run_ids, pts = self._decoy_runs, self._decoys
            k = int(rng.integers(len(pts)))
            run = int(run_ids[k])
            shape = self.shapes[run]
            centre = np.clip(np.rint(pts[k]).astype(int), 0, shape - 1)
            # The particle (or decoy) lands at crop voxel `where`, at least `margin` voxels from every face.
            where = rng.integers(self.margin, self.crop_size - self.margin)
            start = centre - where
        else:
            run = int(rng.choice(len(self.shapes), p=self.run_probs))
            shape = self.shapes[run]
            start = rng.integers(0, np.maximum(shape - self.crop_size, 0) + 1)
        return CropSpec(run, clamp_start(start, shape, self.crop_size), bool(positive), label, bool(hard))


def clamp_start(start: np.ndarray, shape: np.ndarray, size: np.ndarray) -> tuple[int, int, int]:
    """Clamp a crop start so the crop lies inside the volume; centre it where the volume is too small."""
    fits = shape >= size
    clamped = np.where(fits, np.clip(start, 0, np.maximum(shape - size, 0)), -((size - shape) // 2))
    return tuple(int(v) for v in clamped)  # type: ignore[return-value]


def extract_crop(
    volume: np.ndarray, start: Sequence[int], size: Sequence[int], *, pad_value: float = 0.0
) -> np.ndarray:
    """Copy the box ``volume[start : start + size]`` into a new float32 array, padding what lies outside.

    Reads only the needed voxels, so it is cheap on a memory-mapped volume.

    Args:
        volume: ``(Z, Y, X)`` array (may be a ``np.memmap``).
        start: First voxel ``(z, y, x)``; may be negative.
        size: ``(D, H, W)``.
        pad_value: Value of voxels outside the volume.

    Returns:
        ``(D, H, W)`` float32 array.

    >>> extract_crop(np.ones((2, 2, 2)), (-1, 0, 0), (3, 2, 2))[:, 0, 0]
    array([0., 1., 1.], dtype=float32)
    """
    size = tuple(int(s) for s in size)
    out = np.full(size, pad_value, dtype=np.float32)
    src, dst = [], []
    for a, n, dim in zip(start, size, volume.shape):
        lo, hi = max(int(a), 0), min(int(a) + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(a), hi - int(a)))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def points_near_crop(
    points_zyx: np.ndarray, labels: np.ndarray, start: Sequence[int], size: Sequence[int], halo: float
) -> tuple[np.ndarray, np.ndarray]:
    """Particles inside a crop or within ``halo`` voxels of it, in crop coordinates.

    Points just outside matter: the tails of their Gaussians (or their balls) reach into the crop.

    Args:
        points_zyx: ``(N, 3)`` full-resolution voxels ``(z, y, x)`` in volume coordinates.
        labels: ``(N,)`` catalogue labels.
        start: The crop's first voxel ``(z, y, x)``.
        size: ``(D, H, W)``.
        halo: Extra distance in voxels on every side.

    Returns:
        ``(points (M, 3) float64 relative to start, labels (M,))``.
    """
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3) - np.asarray(start, dtype=np.float64)
    size_arr = np.asarray(size, dtype=np.float64)
    keep = np.all((pts >= -halo) & (pts <= size_arr - 1 + halo), axis=1)
    return pts[keep], np.asarray(labels).reshape(-1)[keep]
