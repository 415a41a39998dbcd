"""Hard negatives: particle-like blobs that are *not* labelled particles, mined from the tomogram itself.

Why: a detector trained on class-balanced positive crops and uniform background crops rarely sees the
few dense, round, particle-sized objects that are not particles (gold fiducials, ice and carbon debris,
unlabelled proteins): they fill a tiny fraction of a tomogram's volume. Models then learn "dark and round"
rather than the particles, and fire on those objects with full confidence for every class (the failure
gallery of ``benchmarks/results/compare.md``: the top false positives of every class are gold beads, on
two simulators).

How, without knowing the generator: the training-free LoG blob detector
(:func:`cryopoint.baselines.blob.detect_blobs`) ranks every dark blob of particle size; blobs near a
labelled particle are dropped, the rest are *decoys*. Nothing here uses the simulator's own knowledge of
where it put beads or clutter, so the same mining runs on real tomograms with copick labels. Training
then centres a share of its crops on decoys (``data.hard_negative_fraction``,
:class:`cryopoint.data.sampling.CropSampler`); their targets are drawn as for any crop, so a labelled
particle beside a decoy still gets its Gaussian. Mining lives with the engine, which builds the training data
(:func:`cryopoint.engine.data.load_data`): the data layer stays below the detectors and takes decoys as given.

A decoy may be an unlabelled true particle (incomplete labels); crops on it teach what uniform background
crops containing it already teach, only more often. Keep the fraction modest on sparsely labelled data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryopoint.coords import as_voxel_size
from cryopoint.particles import PARTICLES, get_particle

__all__ = ["mine_decoys"]

_RADII = np.array([p.radius for p in sorted(PARTICLES, key=lambda p: p.label)])


def mine_decoys(
    volume: np.ndarray,
    voxel_size: float | Sequence[float],
    points_zyx: np.ndarray,
    labels: np.ndarray,
    *,
    count: int = 32,
    exclusion: float = 1.0,
    normalize: bool = False,
    bin_factor: int = 2,
) -> np.ndarray:
    """The ``count`` strongest particle-sized dark blobs that lie away from every labelled particle.

    Args:
        volume: ``(Z, Y, X)`` tomogram; already normalised unless ``normalize`` (training volumes are).
        voxel_size: Å per voxel, one value or ``(z, y, x)``.
        points_zyx: ``(N, 3)`` labelled particle centres, voxels ``(z, y, x)``.
        labels: ``(N,)`` catalogue labels of those particles.
        count: Most decoys returned.
        exclusion: A blob whose centre lies within ``exclusion x`` the larger of (the particle's radius,
            the blob's class radius) of a labelled particle is that particle, not a decoy.
        normalize: Normalise the volume first (raw tomograms).
        bin_factor: LoG binning (see :func:`cryopoint.baselines.blob.blob_responses`).

    Returns:
        ``(K, 3)`` float64 decoy centres in voxels ``(z, y, x)``, strongest first, ``K <= count``; decoys
        are at least their class radius apart (the weaker of two overlapping blobs is dropped).

    >>> decoys = mine_decoys(run.volume, run.voxel_size, run.points_zyx, run.labels)  # doctest: +SKIP
    """
    from cryopoint.baselines.blob import detect_blobs

    if count < 0 or exclusion < 0:
        raise ValueError(f"count and exclusion must be >= 0; got {count} and {exclusion}.")
    vs = np.asarray(as_voxel_size(voxel_size))
    if count == 0:
        return np.zeros((0, 3))
    blobs = detect_blobs(volume, tuple(vs), normalize=normalize, bin_factor=bin_factor, min_score=0.0)
    if not len(blobs):
        return np.zeros((0, 3))
    blobs = blobs.sort_values("score", ascending=False, kind="stable")
    centres = blobs[["z_vox", "y_vox", "x_vox"]].to_numpy(dtype=np.float64)
    blob_r = np.array([get_particle(n).radius for n in blobs["particle_type"]])  # Å

    points = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    if len(points):
        point_r = _RADII[np.asarray(labels, dtype=int).reshape(-1)]
        # Distances in Å between every blob and every labelled particle (blobs x particles).
        dist = np.linalg.norm((centres[:, None, :] - points[None, :, :]) * vs, axis=-1)
        near = dist < exclusion * np.maximum(blob_r[:, None], point_r[None, :])
        keep = ~near.any(axis=1)
        centres, blob_r = centres[keep], blob_r[keep]

    chosen: list[int] = []
    for i in range(len(centres)):  # greedy: strongest first, skip blobs overlapping a chosen one
        if chosen:
            d = np.linalg.norm((centres[chosen] - centres[i]) * vs, axis=1)
            if np.any(d < np.maximum(blob_r[chosen], blob_r[i])):
                continue
        chosen.append(i)
        if len(chosen) == count:
            break
    return centres[chosen].reshape(-1, 3)
