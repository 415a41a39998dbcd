"""Peak extraction from per-class heatmaps: exact 3D max-pool NMS, fast on sparse heatmaps.

**Peak definition** (every backend returns exactly this set). For a class volume ``h`` (Z, Y, X) and an
odd window ``(kz, ky, kx)``, voxel ``v`` is a peak iff

* ``h[v] >= min_score``, and
* ``h[v] >= h[u]`` for every voxel ``u`` of the box of size ``(kz, ky, kx)`` centred on ``v`` that lies
  inside the volume (borders are padded with ``-inf``; nothing outside the volume competes).

Ties are kept: every voxel of a flat-topped maximum is a peak (identical in all backends; rare with
float heatmaps). This is ``maximum_filter(h, size=k, mode="constant", cval=-inf) == h`` masked by
``h >= min_score``, see :func:`reference_local_maxima`. Heatmaps holding NaN raise ``InvalidVolumeError``.

**Window size.** Per class, half-width ``p = max(1, floor(kernel_factor x radius / (voxel_size x stride)
+ 0.5))`` heatmap voxels per axis and ``k = 2p + 1`` (always odd, so the window has a centre). The default
``kernel_factor = 0.5`` makes the half-width the match distance: apo-ferritin (60 Å) at 10 Å and stride 1
gives ``k = 7``, the ribosome (150 Å) ``k = 17``.

**Stride mapping.** A heatmap with output stride ``s`` has voxel ``i`` centred on full-resolution voxel
``i x s + (s - 1) / 2`` (the centre of the ``s`` full-resolution voxels it pools), by
:func:`cryopoint.coords.stride_to_full`; target drawing uses the inverse, ``full_to_stride``. Full-resolution
voxels map to Å with ``cryopoint.coords`` (``Å = index x voxel_size``).

**Backends.** :func:`find_peaks` is the one entry point; per class, :func:`_class_peaks` is the one place
that picks a backend, by the input's type and device:

========================================  ======================================  ==================================
input                                     sparse cascade                          dense fallback (same answer)
========================================  ======================================  ==================================
numpy array, or torch tensor on the CPU   :func:`local_maxima` (numpy)            :func:`reference_local_maxima`
torch tensor on another device (CUDA)     :func:`local_maxima_torch`              :func:`_dense_local_maxima_torch`
========================================  ======================================  ==================================

The sparse cascade: only voxels ``>= min_score`` can be peaks, and heatmaps are mostly near zero, so the
candidates are found in one pass and tested sparsely: first against their 6 face neighbours (which removes
almost every voxel of a smooth blob), then the few survivors against their whole window (clipping a
neighbour's index to the volume keeps it inside the same window, so the test is exact). The numpy code tests
the window shell by shell; the torch code tests it in one chunked gather, with a fixed number of host syncs,
so only the peak list leaves the GPU. Either hands over to its dense filter by one rule
(:func:`_too_many_candidates`, :func:`_too_many_tests`, constants ``DENSE_FRACTION`` and ``DENSE_WORK``):
noise-like heatmaps, where the sparse tests would cost more. CPU tensors take the numpy code because it is
the faster of the two on a CPU (both are timed in ``benchmarks/results/nms.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.ndimage import maximum_filter

from cryopoint.config import PostConfig
from cryopoint.coords import as_voxel_size, stride_to_full, voxel_to_angstrom
from cryopoint.errors import ConfigError, InvalidVolumeError
from cryopoint.particles import PARTICLE_NAMES, get_particle

# The backends (local_maxima, local_maxima_torch, their dense fallbacks) are importable for tests and
# benchmarks/nms.py, but callers go through find_peaks, which picks one (see the module docstring).
__all__ = ["find_peaks", "kernel_size", "reference_local_maxima", "refine_subvoxel", "PEAK_COLUMNS"]

#: Columns of the table :func:`find_peaks` returns (a picks table without ``experiment``).
PEAK_COLUMNS = ("particle_type", "z_vox", "y_vox", "x_vox", "x", "y", "z", "score")
_NAN_MESSAGE = "Heatmap contains NaN values; check the model output (NaN input or diverged weights)."

# When a sparse cascade hands over to its dense filter. Both are cost heuristics: every path returns the same
# peaks, so they only move time. Chosen values, not the optimum of a sweep; benchmarks/results/nms.md times
# the sparse path on full-size realistic heatmaps, and tests/test_nms.py pins which path noise and smooth
# blobs take (test_dense_fallback_is_taken_for_noise_not_for_blobs).

#: Candidate share (voxels ``>= min_score`` / all voxels) above which the dense filter is used at once.
#: A trained model's heatmaps sit far below it (sparse peaks whose tails drop under ``min_score`` within a
#: few voxels); noise-like volumes (about half their voxels above a mid threshold) are far above it, and
#: their sparse gathers would cost more than one dense pass.
DENSE_FRACTION = 0.05
#: Neighbour tests still to run, per voxel of the volume, above which the dense filter is used instead. A
#: dense filter costs a few passes over every voxel (separable: one 1D max per axis, whatever the window), while
#: each sparse test is a random-access gather; with more than a couple of those per voxel left, dense is cheaper.
DENSE_WORK = 2.0
#: Neighbour gathers per block of the window tests: bounds the temporaries (4 Mi x 3 int64 neighbour indices,
#: ~100 MB) whatever the number of survivors.
_GATHER_CHUNK = 1 << 22
#: Voxels compared per block when listing candidates: the reused 1 MiB boolean mask stays in the CPU cache.
_CANDIDATE_CHUNK = 1 << 20


def _too_many_candidates(candidates: int, voxels: int) -> bool:
    """Whether a cascade with ``candidates`` of ``voxels`` should not start (``DENSE_FRACTION``)."""
    return candidates > DENSE_FRACTION * voxels


def _too_many_tests(tests: int, voxels: int) -> bool:
    """Whether ``tests`` neighbour tests left cost more than a dense filter over ``voxels`` (``DENSE_WORK``)."""
    return tests > DENSE_WORK * voxels


def kernel_size(radius: float, voxel_size, stride: int = 1, kernel_factor: float = 0.5) -> tuple[int, int, int]:
    """NMS window ``(kz, ky, kx)`` in heatmap voxels for a particle of ``radius`` Å (always odd, >= 3).

    >>> kernel_size(60.0, 10.012444)
    (7, 7, 7)
    """
    vs = np.asarray(as_voxel_size(voxel_size)) * stride
    half = np.maximum(1, np.floor(kernel_factor * radius / vs + 0.5)).astype(int)
    return tuple(int(2 * h + 1) for h in half)


def reference_local_maxima(volume: np.ndarray, kernel: Sequence[int], min_score: float) -> np.ndarray:
    """The peak definition written with ``scipy.ndimage.maximum_filter`` (dense, slow): the oracle.

    Returns:
        ``(N, 3)`` int64 peak indices ``(z, y, x)`` in C order.
    """
    mx = maximum_filter(volume, size=tuple(kernel), mode="constant", cval=-np.inf)
    return np.argwhere((volume == mx) & (volume >= min_score)).astype(np.int64)


def _check_kernel(kernel: Sequence[int]) -> np.ndarray:
    k = np.asarray(kernel)
    if k.shape != (3,) or np.any(k < 1) or np.any(k % 2 == 0):
        raise ConfigError(f"NMS window must be three odd positive sizes (kz, ky, kx); got {tuple(kernel)}.")
    return k.astype(np.int64)


def _shell_offsets(half: np.ndarray, r: int) -> np.ndarray:
    """Offsets ``(M, 3)`` of the window with Chebyshev norm exactly ``r`` (per-axis limit ``half``)."""
    axes = [np.arange(-min(h, r), min(h, r) + 1) for h in half]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return grid[np.abs(grid).max(1) == r]


def _candidates(flat: np.ndarray, min_score: float, chunk: int = _CANDIDATE_CHUNK) -> np.ndarray:
    """Flat indices of the voxels ``>= min_score``, in cache-sized chunks through one reused mask buffer.

    ``not (v < min_score)`` also selects NaN voxels, so NaN is caught here without a separate pass.
    """
    buf = np.empty(min(chunk, flat.size), dtype=bool)
    parts = []
    for start in range(0, flat.size, chunk):
        part = flat[start : start + chunk]
        mask = buf[: part.size]
        np.less(part, min_score, out=mask)
        np.logical_not(mask, out=mask)
        parts.append(np.flatnonzero(mask) + start)
    idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if idx.size and np.isnan(flat[idx]).any():
        raise InvalidVolumeError(_NAN_MESSAGE)
    return idx


def local_maxima(volume: np.ndarray, kernel: Sequence[int], min_score: float) -> np.ndarray:
    """Peaks of one class volume on the CPU: the numpy backend of :func:`find_peaks` (module docstring).

    The sparse cascade; hands over to :func:`reference_local_maxima` where that is cheaper.

    Args:
        volume: ``(Z, Y, X)`` float array.
        kernel: Odd window ``(kz, ky, kx)`` in voxels.
        min_score: Smallest value a peak may have.

    Returns:
        ``(N, 3)`` int64 peak indices ``(z, y, x)`` in C order; equal to :func:`reference_local_maxima`.

    Raises:
        InvalidVolumeError: the volume holds NaN.
        ConfigError: the window sizes are not three odd positive integers.
    """
    half = _check_kernel(kernel) // 2
    shape = np.asarray(volume.shape, dtype=np.int64)
    flat = np.ascontiguousarray(volume).reshape(-1)
    idx = _candidates(flat, min_score)
    if _too_many_candidates(idx.size, flat.size):
        return reference_local_maxima(volume, kernel, min_score)
    vals = flat[idx]
    coords = np.stack(np.unravel_index(idx, volume.shape), 1).astype(np.int64)
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    for axis in range(3):  # face neighbours: cheap, and removes nearly all voxels of a smooth blob
        if half[axis] == 0:
            continue
        for step in (-1, 1):
            inside = (coords[:, axis] + step >= 0) & (coords[:, axis] + step < shape[axis])
            nb = np.where(inside, idx + step * strides[axis], idx)
            keep = flat[nb] <= vals
            idx, vals, coords = idx[keep], vals[keep], coords[keep]
    remaining = int(np.prod(2 * half + 1)) - 1  # window offsets still to test
    for r in range(1, int(half.max()) + 1):  # whole window, shell by shell, on the few survivors
        if _too_many_tests(idx.size * remaining, flat.size):  # noise-like heatmap: the dense filter is cheaper
            return reference_local_maxima(volume, kernel, min_score)
        off = _shell_offsets(half, r)
        remaining -= len(off)
        keep = np.ones(idx.size, dtype=bool)
        chunk = max(1, _GATHER_CHUNK // len(off))
        for s in range(0, idx.size, chunk):
            nb = np.clip(coords[s : s + chunk, None, :] + off[None], 0, shape - 1) @ strides
            keep[s : s + chunk] = (flat[nb] <= vals[s : s + chunk, None]).all(1)
        idx, vals, coords = idx[keep], vals[keep], coords[keep]
    return coords


def local_maxima_torch(volume: torch.Tensor, kernel: Sequence[int], min_score: float) -> torch.Tensor:
    """Peaks of one class volume on the tensor's device: the torch backend of :func:`find_peaks` (CUDA).

    The algorithm of :func:`local_maxima`, shaped for a GPU: candidates ``>= min_score`` (one pass), all 6
    face-neighbour tests, then every survivor's whole window in one chunked gather. Nothing but the peak
    list leaves the device, and there are four host syncs per class whatever the window (the CPU code tests
    shell by shell, which pays off only where each filter is cheap). Volumes where the sparse tests would
    cost more than a dense filter (the rule of :func:`_too_many_candidates` / :func:`_too_many_tests`) take
    :func:`_dense_local_maxima_torch` (same answer).

    Args:
        volume: ``(Z, Y, X)`` float tensor (any device).
        kernel: Odd window ``(kz, ky, kx)`` in voxels.
        min_score: Smallest value a peak may have.

    Returns:
        ``(N, 3)`` int64 tensor of peak indices ``(z, y, x)`` in C order, on the same device.

    Raises:
        InvalidVolumeError: the volume holds NaN.
        ConfigError: the window sizes are not three odd positive integers.
    """
    half = _check_kernel(kernel) // 2
    if volume.ndim != 3:
        raise InvalidVolumeError(f"local_maxima_torch needs a (Z, Y, X) volume; got shape {tuple(volume.shape)}.")
    dev, (nz, ny, nx) = volume.device, volume.shape
    flat = volume.contiguous().reshape(-1)
    idx = torch.nonzero(~(flat < min_score)).squeeze(1)  # `not <` keeps NaN voxels: checked below
    vals = flat[idx]
    has_nan = vals.isnan().any()  # read with a later sync; NaN fails every `<=` test meanwhile
    if _too_many_candidates(idx.numel(), flat.numel()):
        _raise_on_nan(has_nan)
        return _dense_local_maxima_torch(volume, kernel, min_score)
    shape = torch.tensor([nz, ny, nx], device=dev)
    strides = torch.tensor([ny * nx, nx, 1], device=dev)
    coords = torch.stack((idx // (ny * nx), idx // nx % ny, idx % nx), 1)
    keep = torch.ones_like(idx, dtype=torch.bool)
    for axis in np.flatnonzero(half):  # face neighbours: removes nearly every voxel of a smooth blob
        for step in (-1, 1):
            moved = coords[:, axis] + step
            nb = torch.where((moved >= 0) & (moved < shape[axis]), idx + step * strides[axis], idx)
            keep &= flat[nb] <= vals
    vals, coords = _select(keep, vals, coords)
    _raise_on_nan(has_nan)
    if not half.any():  # a one-voxel window: every candidate is a peak
        return coords
    off = np.concatenate([_shell_offsets(half, r) for r in range(1, half.max() + 1)])  # the window minus its centre
    if _too_many_tests(len(coords) * len(off), flat.numel()):  # noise-like heatmap: the dense pool is cheaper
        return _dense_local_maxima_torch(volume, kernel, min_score)
    off = torch.from_numpy(off).to(dev)
    keep = torch.empty(len(coords), dtype=torch.bool, device=dev)
    chunk = max(1, _GATHER_CHUNK // len(off))
    for s in range(0, len(coords), chunk):  # clipping keeps a neighbour inside the same window: exact
        nb = torch.minimum((coords[s : s + chunk, None, :] + off).clamp_min(0), shape - 1)
        keep[s : s + chunk] = (flat[(nb * strides).sum(-1)] <= vals[s : s + chunk, None]).all(1)
    return _select(keep, coords)[0]


def _raise_on_nan(has_nan: torch.Tensor) -> None:
    if bool(has_nan):
        raise InvalidVolumeError(_NAN_MESSAGE)


def _select(keep: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``t[keep]`` for each tensor with one device sync (boolean indexing would sync once per tensor)."""
    rows = torch.nonzero(keep).squeeze(1)
    return tuple(t[rows] for t in tensors)


def _dense_local_maxima_torch(volume: torch.Tensor, kernel: Sequence[int], min_score: float) -> torch.Tensor:
    """:func:`local_maxima_torch` by separable max-pooling over the whole volume (noise-like heatmaps)."""
    x = volume[None, None]  # (1, 1, Z, Y, X)
    mx = x
    for axis, k in enumerate(kernel):  # max over a box = max over each axis in turn; padding is -inf
        size, pad = [1, 1, 1], [0, 0, 0]
        size[axis], pad[axis] = int(k), int(k) // 2
        mx = F.max_pool3d(mx, kernel_size=size, stride=1, padding=pad)
    return torch.nonzero((x == mx) & (x >= min_score))[:, 2:]


def refine_subvoxel(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sub-voxel peak positions from a 3-point Gaussian fit along each axis (exact for Gaussian blobs).

    Along each axis the log-values at ``-1, 0, +1`` are fitted by a parabola whose vertex is the offset,
    clipped to ±0.5 voxel; axes where the peak touches the border or the profile is not concave keep
    offset 0. (A score-weighted centroid over a window narrower than the blob is biased towards the voxel
    centre, by ~75% of the offset for a blob of sigma 6 in a 7-voxel window; the fit is not.)

    Args:
        volume: ``(Z, Y, X)`` heatmap tensor.
        coords: ``(N, 3)`` integer peak indices (z, y, x) on the same device.

    Returns:
        ``(N, 3)`` float64 refined indices (z, y, x), heatmap voxels.
    """
    shape = torch.tensor(volume.shape, device=coords.device)
    out = coords.to(torch.float64)
    tiny = torch.finfo(torch.float64).tiny
    centre = volume[coords[:, 0], coords[:, 1], coords[:, 2]].to(torch.float64).clamp_min(tiny).log()
    for axis in range(3):
        lo, hi = coords.clone(), coords.clone()
        lo[:, axis] -= 1
        hi[:, axis] += 1
        inside = (lo[:, axis] >= 0) & (hi[:, axis] < shape[axis])
        lo, hi = lo.clamp_min(0), torch.minimum(hi, shape - 1)
        a = volume[lo[:, 0], lo[:, 1], lo[:, 2]].to(torch.float64).clamp_min(tiny).log()
        b = volume[hi[:, 0], hi[:, 1], hi[:, 2]].to(torch.float64).clamp_min(tiny).log()
        curv = a - 2 * centre + b
        ok = inside & (curv < 0)
        delta = torch.where(ok, 0.5 * (a - b) / torch.where(ok, curv, -1.0), 0.0)
        out[:, axis] += delta.clamp(-0.5, 0.5)
    return out


def _class_peaks(vol, kernel, min_score, top_k, refine) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one class: ``(coords (N, 3) float64 heatmap voxels, scores (N,))``, best first.

    The one backend dispatch (table in the module docstring): a tensor on an accelerator stays there
    (:func:`_class_peaks_torch`); numpy arrays and CPU tensors take the numpy code (:func:`_class_peaks_numpy`).
    """
    if isinstance(vol, torch.Tensor) and vol.device.type != "cpu":
        return _class_peaks_torch(vol, kernel, min_score, top_k, refine)
    arr = vol.numpy() if isinstance(vol, torch.Tensor) else vol
    if arr.dtype not in (np.float32, np.float64):  # ints, bools, float16: scipy's fallback needs these two
        arr = arr.astype(np.float32)
    return _class_peaks_numpy(arr, kernel, min_score, top_k, refine)


def _class_peaks_numpy(arr: np.ndarray, kernel, min_score, top_k, refine) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_class_peaks` on the CPU, for a float32 or float64 array."""
    coords = local_maxima(arr, kernel, min_score)
    scores = arr[coords[:, 0], coords[:, 1], coords[:, 2]].astype(np.float64)
    order = np.argsort(-scores, kind="stable")[:top_k]
    coords, scores = coords[order], scores[order]
    if refine:
        return refine_subvoxel(torch.from_numpy(arr), torch.from_numpy(coords)).numpy(), scores
    return coords.astype(np.float64), scores


def _class_peaks_torch(vol: torch.Tensor, kernel, min_score, top_k, refine) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_class_peaks` on the tensor's device; only the (N, 3) peaks and scores are copied to the host."""
    coords = local_maxima_torch(vol, kernel, min_score)
    scores = vol[coords[:, 0], coords[:, 1], coords[:, 2]]
    order = torch.sort(scores, descending=True, stable=True).indices[:top_k]  # ties: C order, as on the CPU
    coords, scores = coords[order], scores[order]
    pos = refine_subvoxel(vol, coords) if refine else coords.to(torch.float64)
    return pos.cpu().numpy(), scores.double().cpu().numpy()


def find_peaks(
    heatmaps,
    *,
    voxel_size,
    stride: int = 1,
    kernel_factor: float = PostConfig.kernel_factor,
    min_score: float = PostConfig.min_score,
    top_k: int | None = PostConfig.top_k,
    refine: bool = False,
    class_names: Sequence[str] = PARTICLE_NAMES,
) -> pd.DataFrame:
    """Per-class peaks of heatmaps as a picks table (without ``experiment``).

    Args:
        heatmaps: ``(C, Z, Y, X)`` scores, a torch tensor (CPU or CUDA; CUDA stays on the device until the
            peaks are found) or a numpy array; channel ``i`` is ``class_names[i]``. The input's type and
            device choose the backend (module docstring); every backend returns the same peaks.
        voxel_size: Full-resolution voxel size in Å, one value or ``(z, y, x)``.
        stride: Output stride of the heatmap (full-resolution voxels per heatmap voxel).
        kernel_factor: Window half-width as a fraction of the particle radius (see module docstring).
        min_score: Peaks below this score are dropped.
        top_k: Keep at most this many peaks per class (highest scores); ``None`` keeps all.
        refine: Sub-voxel positions by :func:`refine_subvoxel` (else voxel centres).
        class_names: Catalogue names of the channels (radii come from the catalogue).

    Returns:
        DataFrame with :data:`PEAK_COLUMNS`: ``z_vox, y_vox, x_vox`` in full-resolution voxels (float;
        ``stride_to_full`` of the heatmap index), ``x, y, z`` in Å, ``score``; classes in channel order,
        best score first within a class.

    Raises:
        InvalidVolumeError: not 4D, channel count differs from ``class_names``, or NaN values.
        UnknownParticleError: a name in ``class_names`` is not in the catalogue.

    >>> h = np.zeros((6, 9, 9, 9), np.float32); h[3, 4, 5, 6] = 0.9
    >>> find_peaks(h, voxel_size=10.0)[["particle_type", "x", "y", "z", "score"]].values.tolist()
    [['ribosome', 60.0, 50.0, 40.0, 0.8999999761581421]]
    """
    if isinstance(heatmaps, torch.Tensor):
        heatmaps = heatmaps.detach() if heatmaps.is_floating_point() else heatmaps.detach().float()
    else:
        heatmaps = np.asarray(heatmaps)  # cast to float32/64 per class, in _class_peaks
    if heatmaps.ndim != 4 or heatmaps.shape[0] != len(class_names):
        raise InvalidVolumeError(
            f"find_peaks needs heatmaps of shape (C, Z, Y, X) with C = {len(class_names)} channels "
            f"({', '.join(class_names)}); got shape {tuple(heatmaps.shape)}."
        )
    vs = as_voxel_size(voxel_size)
    frames = []
    for c, name in enumerate(class_names):
        kernel = kernel_size(get_particle(name).radius, vs, stride, kernel_factor)
        pos, scores = _class_peaks(heatmaps[c], kernel, min_score, top_k, refine)
        full = stride_to_full(pos, stride)
        xyz = voxel_to_angstrom(full, vs)
        frames.append(
            pd.DataFrame(
                {
                    "particle_type": name,
                    "z_vox": full[:, 0],
                    "y_vox": full[:, 1],
                    "x_vox": full[:, 2],
                    "x": xyz[:, 0],
                    "y": xyz[:, 1],
                    "z": xyz[:, 2],
                    "score": scores,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(PEAK_COLUMNS)]
