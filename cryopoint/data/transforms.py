"""Seeded augmentations that move a volume and its particle points together.

Geometry stays within the symmetries of a tomogram: flips along any axis, and rot90/transpose in the xy
plane only. Rotations that mix z with x or y are left out on purpose: the missing wedge elongates particles
along z, and a network should learn that anisotropy as it is, not a rotated copy that never occurs.
Intensity changes (scale, shift, Gaussian noise) act on the normalised volume (``normalize_volume`` units).

Points are ``(N, 3)`` full-resolution voxel positions (z, y, x) of the volume, voxel centres at integer
indices, so a flip along an axis of size ``n`` maps ``p`` to ``n - 1 - p``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["flip", "rot90_xy", "transpose_xy", "random_augment"]


def _points(points_zyx: np.ndarray) -> np.ndarray:
    return np.array(points_zyx, dtype=np.float64, copy=True).reshape(-1, 3)


def flip(volume: np.ndarray, points_zyx: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror ``volume (Z, Y, X)`` and its points along ``axis`` (0 = z, 1 = y, 2 = x)."""
    points = _points(points_zyx)
    points[:, axis] = volume.shape[axis] - 1 - points[:, axis]
    return np.flip(volume, axis=axis), points


def rot90_xy(volume: np.ndarray, points_zyx: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rotate ``volume (Z, Y, X)`` and its points by ``k`` quarter turns in the xy plane (``np.rot90`` sense)."""
    points = _points(points_zyx)
    for _ in range(k % 4):
        # np.rot90 over axes (1, 2): new[:, i, j] = old[:, j, X - 1 - i], i.e. y' = X - 1 - x and x' = y.
        points[:, 1], points[:, 2] = volume.shape[2] - 1 - points[:, 2], points[:, 1].copy()
        volume = np.rot90(volume, k=1, axes=(1, 2))
    return volume, points


def transpose_xy(volume: np.ndarray, points_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap the y and x axes of ``volume (Z, Y, X)`` and of its points."""
    points = _points(points_zyx)[:, [0, 2, 1]]
    return np.swapaxes(volume, 1, 2), points


def random_augment(
    volume: np.ndarray,
    points_zyx: np.ndarray,
    rng: np.random.Generator,
    *,
    flip_axes: Sequence[int] = (0, 1, 2),
    rot90: bool = True,
    transpose: bool = True,
    scale: float = 0.1,
    shift: float = 0.1,
    noise: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random draw of every augmentation to a volume and its points.

    All decisions are drawn first, in a fixed order, so switching one option off does not change the
    others' draws. Geometry: each axis in ``flip_axes`` flipped with probability 1/2, a uniform
    number of xy quarter turns, an xy transpose with probability 1/2 (together: all eight symmetries of
    the square). Intensity: ``v * (1 + a) + b + sd * N(0, 1)`` with ``a ~ U(-scale, scale)``,
    ``b ~ U(-shift, shift)`` and ``sd ~ U(0, noise)``.

    >>> rng = np.random.default_rng(0)
    >>> vol, pts = random_augment(np.zeros((4, 8, 8), np.float32), np.array([[1.0, 2.0, 3.0]]), rng)
    >>> vol.shape, pts.shape
    ((4, 8, 8), (1, 3))

    Args:
        volume: ``(Z, Y, X)`` normalised volume (not modified).
        points_zyx: ``(N, 3)`` positions in voxels of ``volume`` (points outside it are moved the same way).
        rng: The random generator (seed it per sample for reproducible crops).
        flip_axes: Axes that may be flipped (0 = z, 1 = y, 2 = x).
        rot90: Allow quarter turns in the xy plane.
        transpose: Allow swapping y and x.
        scale: Largest relative intensity scaling.
        shift: Largest intensity offset (normalised units).
        noise: Largest standard deviation of added Gaussian noise (normalised units).

    Returns:
        ``(volume, points)``: a new C-contiguous float32 volume and a new ``(N, 3)`` float64 array.
    """
    do_flip = rng.random(3) < 0.5
    quarter_turns = int(rng.integers(4))
    do_transpose = rng.random() < 0.5
    gain, offset, sd = rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0)
    points = _points(points_zyx)
    for axis in flip_axes:
        if do_flip[axis]:
            volume, points = flip(volume, points, axis)
    if rot90:
        volume, points = rot90_xy(volume, points, quarter_turns)
    if transpose and do_transpose:
        volume, points = transpose_xy(volume, points)
    out = np.array(volume, dtype=np.float32, order="C", copy=True)
    out *= np.float32(1.0 + gain * scale)
    out += np.float32(offset * shift)
    if noise > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sd * noise)
    return out, points
