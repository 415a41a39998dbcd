"""``blob``: a classical, training-free particle detector (scale-normalised Laplacian of Gaussian).

The floor every learned model must clear, and what a user without labels or a GPU can run today
(``cryopoint.detect(tomogram, model="blob")``). For a solid ball of radius ``r`` the scale-normalised LoG
response ``-σ² ∇²G_σ * f`` at the ball's centre peaks at ``σ = r / √3`` (3-D), so each particle class gets
one LoG scale from its catalogue radius. Protein is darker than ice (negative contrast), so the normalised
volume is negated first: particles become bright blobs with a positive response.

Each voxel is given to the class whose scale responds most there (the other classes are zeroed at that
voxel), then peaks come from the same max-pool NMS as the networks
(:func:`cryopoint.post.nms.find_peaks`), and only the per-class score thresholds are tuned (with
:func:`cryopoint.post.thresholds.tune_thresholds`). Limits, by construction: it sees size and darkness only.
On ideal solid balls (``tests/test_blob.py``) every class size is recovered and labelled right even for
60 vs 65 Å at moderate noise. On the ``realistic`` simulator it is far weaker: apo-ferritin (a hollow
cage) is mostly missed, ribosomes (two subunits) are mostly labelled beta-galactosidase or thyroglobulin
because a smaller scale fits each subunit, classes of nearly equal radius (60/65 Å; 130/135/150 Å) are
told apart by little more than chance, and clutter of the right size (gold beads, unlabelled proteins)
is picked. See ``benchmarks/results/compare.md`` for its scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from cryopoint.coords import as_voxel_size
from cryopoint.particles import PARTICLES
from cryopoint.tomogram import check_volume

__all__ = ["blob_responses", "detect_blobs"]


def _bin(volume: np.ndarray, factor: int) -> np.ndarray:
    """Mean-pool ``(Z, Y, X)`` by ``factor`` per axis (edge-padded).

    Binned voxel ``j`` is centred on full-resolution voxel ``j * factor + (factor - 1) / 2``.
    """
    if factor == 1:
        return volume
    pad = [(0, (-n) % factor) for n in volume.shape]
    v = np.pad(volume, pad, mode="edge")
    z, y, x = (n // factor for n in v.shape)
    return v.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def blob_responses(
    volume: np.ndarray,
    voxel_size: float | Sequence[float],
    *,
    bin_factor: int = 2,
    normalize: bool = True,
    exclusive: bool = True,
) -> tuple[np.ndarray, int]:
    """Per-class scale-normalised LoG responses of dark blobs.

    Args:
        volume: ``(Z, Y, X)`` tomogram (raw values; see ``normalize``).
        voxel_size: Å per voxel, one value or ``(z, y, x)``.
        bin_factor: Mean-pool by this factor before filtering (2 keeps apo-ferritin's σ ≈ 1.7 binned voxels
            at 10 Å and makes the filters 8x cheaper).
        normalize: Apply :func:`cryopoint.data.normalize.normalize_volume` first (the networks' normalisation),
            so that response values, and therefore thresholds, mean the same on every tomogram.
        exclusive: Keep at each voxel only the best-responding class (others set to 0).

    Returns:
        ``(responses, stride)``: float32 ``(C, ceil(Z/b), ceil(Y/b), ceil(X/b))`` non-negative responses in
        catalogue order, and the stride ``b``. Response voxel ``j`` is centred on full-resolution voxel
        ``j * b + (b - 1) / 2`` (the centre of its pooling block).
    """
    volume = check_volume(np.asarray(volume), name="volume")
    vs = np.asarray(as_voxel_size(voxel_size))
    if bin_factor < 1:
        raise ValueError(f"bin_factor must be >= 1; got {bin_factor}.")
    if normalize:
        from cryopoint.data.normalize import normalize_volume

        volume = normalize_volume(volume)
    dark = -_bin(np.asarray(volume, dtype=np.float32), bin_factor)  # particles → bright
    step = vs * bin_factor  # Å per binned voxel
    responses = np.empty((len(PARTICLES), *dark.shape), dtype=np.float32)
    for p in PARTICLES:
        sigma = p.radius / np.sqrt(3.0) / step  # per-axis σ in binned voxels
        responses[p.label] = -float(np.prod(sigma) ** (2 / 3)) * ndimage.gaussian_laplace(dark, sigma)
    np.maximum(responses, 0.0, out=responses)
    if exclusive:
        best = responses.argmax(axis=0)
        responses *= np.arange(len(PARTICLES))[:, None, None, None] == best[None]
    return responses, bin_factor


def detect_blobs(
    volume: np.ndarray,
    voxel_size: float | Sequence[float],
    *,
    thresholds: Mapping[str, float] | None = None,
    min_score: float = 0.05,
    normalize: bool = True,
    bin_factor: int = 2,
    kernel_factor: float | None = None,
    top_k: int | None = None,
) -> pd.DataFrame:
    """Detect particles as dark blobs at each class's size; no training, no labels.

    Args:
        volume: ``(Z, Y, X)`` tomogram, protein dark (negative contrast, as reconstructions are).
        voxel_size: Å per voxel, one value or ``(z, y, x)``.
        thresholds: Per-class minimum score ``{particle name: float}`` (e.g. tuned with
            :func:`cryopoint.post.thresholds.tune_thresholds` on picks made with a low ``min_score``);
            classes not named keep everything above ``min_score``.
        min_score: Lowest response kept (responses are in units of the normalised volume's contrast).
        normalize: Normalise the volume first (see :func:`blob_responses`).
        bin_factor: Mean-pool factor before filtering.
        kernel_factor: NMS kernel factor passed to the peak finder (its default when None).
        top_k: Per-class cap on picks (the peak finder's default when None).

    Returns:
        Picks table: ``particle_type, z_vox, y_vox, x_vox`` (full-resolution voxels), ``x, y, z`` (Å), ``score``.

    >>> picks = detect_blobs(tomogram.data, tomogram.voxel_size)  # doctest: +SKIP
    """
    from cryopoint.post.nms import find_peaks

    responses, stride = blob_responses(volume, voxel_size, bin_factor=bin_factor, normalize=normalize)
    kwargs = {"min_score": min_score}
    if kernel_factor is not None:
        kwargs["kernel_factor"] = kernel_factor
    if top_k is not None:
        kwargs["top_k"] = top_k
    vs = as_voxel_size(voxel_size)
    picks = find_peaks(responses, voxel_size=vs, stride=stride, **kwargs)
    if thresholds:
        from cryopoint.post.thresholds import apply_thresholds

        picks = apply_thresholds(picks, dict(thresholds))
    return picks.reset_index(drop=True)
