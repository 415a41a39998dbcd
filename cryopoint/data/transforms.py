"""Seeded augmentations that move a volume and its particle points together.

Geometry stays within the symmetries of a tomogram: flips along any axis, and rot90/transpose in the xy
plane only. Rotations that mix z with x or y are left out on purpose: the missing wedge elongates particles
along z, and a network should learn that anisotropy as it is, not a rotated copy that never occurs.
Intensity changes (scale, shift, Gaussian noise) act on the normalised volume (``normalize_volume`` units).
Appearance changes (blur/sharpening, contrast and gamma, coloured noise, band-pass, intensity curves, local
normalisation; :mod:`cryopoint.data.appearance`) are off by default and never move points.

Points are ``(N, 3)`` full-resolution voxel positions (z, y, x) of the volume, voxel centres at integer
indices, so a flip along an axis of size ``n`` maps ``p`` to ``n - 1 - p``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryopoint.config import DEFAULT_FLIP_AXES, AugmentConfig
from cryopoint.data.appearance import check_knobs, random_appearance

__all__ = ["flip", "rot90_xy", "transpose_xy", "resize", "random_zoom_factor", "random_augment"]


def _points(points_zyx: np.ndarray) -> np.ndarray:
    return np.array(points_zyx, dtype=np.float64, copy=True).reshape(-1, 3)


def resize(volume: np.ndarray, points_zyx: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``volume`` to ``size`` (linear, voxel areas aligned) and move its points with it.

    Voxel ``i`` of the output covers input positions around ``(i + 0.5) / zoom - 0.5`` per axis (``zoom =
    size / shape``), so a point ``p`` maps to ``(p + 0.5) * zoom - 0.5``: the volume's extent maps onto the
    output's, with no half-voxel slip. No anti-aliasing: meant for factors near 1 (zoom augmentation).

    >>> vol, pts = resize(np.zeros((4, 4, 4)), np.array([[1.5, 1.5, 1.5]]), (8, 8, 8))
    >>> vol.shape, pts[0].tolist()
    ((8, 8, 8), [3.5, 3.5, 3.5])
    """
    from scipy import ndimage

    size = tuple(int(n) for n in size)
    zoom = np.asarray(size, dtype=np.float64) / np.asarray(volume.shape, dtype=np.float64)
    out = ndimage.zoom(np.asarray(volume, dtype=np.float32), zoom, order=1, grid_mode=True, mode="nearest")
    if out.shape != size:  # ndimage rounds size * zoom; guard against a float slip
        raise RuntimeError(f"resize produced {out.shape}, expected {size}.")
    return out, (_points(points_zyx) + 0.5) * zoom - 0.5


def random_zoom_factor(rng: np.random.Generator, zoom: float) -> float:
    """A particle-size factor, log-uniform in ``[1 / (1 + zoom), 1 + zoom]`` (``zoom`` >= 0; 1.0 when 0).

    >>> 1 / 1.2 <= random_zoom_factor(np.random.default_rng(0), 0.2) <= 1.2
    True
    """
    if zoom < 0:
        raise ValueError(f"zoom must be >= 0; got {zoom}.")
    if zoom == 0:
        return 1.0
    top = float(np.log1p(zoom))
    return float(np.exp(rng.uniform(-top, top)))


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
    flip_axes: Sequence[int] = DEFAULT_FLIP_AXES,  # defaults: data.augment's (cryopoint.config.AugmentConfig)
    rot90: bool = AugmentConfig.rot90,
    transpose: bool = AugmentConfig.transpose,
    scale: float = AugmentConfig.scale,
    shift: float = AugmentConfig.shift,
    noise: float = AugmentConfig.noise,
    blur: float = AugmentConfig.blur,
    sharpen: float = AugmentConfig.sharpen,
    gamma: float = AugmentConfig.gamma,
    noise_color: float = AugmentConfig.noise_color,
    bandpass: float = AugmentConfig.bandpass,
    nonlinearity: float = AugmentConfig.nonlinearity,
    local_norm: float = AugmentConfig.local_norm,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random draw of every augmentation to a volume and its points.

    All decisions are drawn first, in a fixed order, so switching one option off does not change the
    others' draws. Geometry: each axis in ``flip_axes`` flipped with probability 1/2, a uniform
    number of xy quarter turns, an xy transpose with probability 1/2 (together: all eight symmetries of
    the square). Intensity: ``v * (1 + a) + b + sd * N(0, 1)`` with ``a ~ U(-scale, scale)``,
    ``b ~ U(-shift, shift)`` and ``sd ~ U(0, noise)``. Appearance (when any of ``blur`` ... ``local_norm``
    is above 0): :func:`cryopoint.data.appearance.random_appearance`, applied after the geometry and before
    the scale/shift/noise above (it re-standardises the crop, which would otherwise undo them); its draws
    come after all of the above, so with every appearance knob at 0 the output is bit for bit what it was
    before these knobs existed.

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
        blur: Largest Gaussian blur sigma (voxels; z and y/x drawn separately), on half of the draws.
        sharpen: Largest unsharp-mask gain, on the other half.
        gamma: Log-range of the signal contrast factor and of the sign-preserving gamma curve's exponents.
        noise_color: Largest sd (normalised units) of added white and/or correlated noise.
        bandpass: Probability (0-1) of a random difference-of-Gaussians band-pass.
        nonlinearity: Largest blend (0-1) of a random smooth increasing intensity curve.
        local_norm: Probability (0-1) of local mean/sd normalisation.

    Returns:
        ``(volume, points)``: a new C-contiguous float32 volume and a new ``(N, 3)`` float64 array.

    Raises:
        ValueError: an appearance knob below 0, or a probability above 1.
    """
    appearance = check_knobs(
        blur=blur,
        sharpen=sharpen,
        gamma=gamma,
        noise_color=noise_color,
        bandpass=bandpass,
        nonlinearity=nonlinearity,
        local_norm=local_norm,
    )
    use_appearance = any(v > 0 for v in appearance.values())
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
    # The white-noise field is drawn here, as before the appearance knobs existed (same stream). With
    # appearance on it is drawn even when noise is 0, so that the appearance draws, which come next, do not
    # depend on the noise knob either.
    field = rng.standard_normal(out.shape, dtype=np.float32) if noise > 0 or use_appearance else None
    if use_appearance:
        out = random_appearance(out, rng, **appearance)
    out *= np.float32(1.0 + gain * scale)
    out += np.float32(offset * shift)
    if noise > 0:
        out += field * np.float32(sd * noise)
    return out, points
