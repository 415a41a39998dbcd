"""Imaging, the long way round: a real-space tilt series, per-tilt CTF, shot noise and weighted back-projection.

This path shares nothing with :mod:`cryopoint.synth.imaging` (the Fourier-space shortcut) but the
specimen and the electron wavelength. It does what a microscope and a reconstruction package do, one tilt
image at a time, so its artefacts come from the process rather than from a formula for them:

1. **Tilt series.** Tilts about y from ``-tilt_max`` to ``+tilt_max`` in ``tilt_step`` steps, acquired in a
   dose-symmetric order (0°, then alternately ±step, ±2 step, ...). Each tilt's true angle and image shift
   carry random alignment errors (``angle_error`` degrees, ``shift_error`` Å, Gaussian), which the
   reconstruction does not know: they blur and streak the result as real residual misalignment does.
2. **Projection** in real space (ray-driven, linear interpolation): for tilt ``θ`` the ray through detector
   position ``u`` meets slice ``z`` at ``x = (u - z sin θ) / cos θ`` and travels ``1 / cos θ`` voxels in it.
3. **Per-tilt CTF** on the 2D image spectrum: this tilt's defocus is the run's plus a jitter
   (``defocus_jitter_um``), with astigmatism (``astigmatism_um``, random axis); the envelope is the run's
   B-factor times the **exposure filter** of the dose already received (Grant & Grigorieff's critical
   exposure, so late, high tilts lose high frequencies first).
4. **Shot noise**: electrons per pixel per tilt from the dose, reduced by inelastic loss in the ice
   (path ``t / cos θ``, mean free path ~3500 Å at 300 kV) and by the detector's DQE; the image is
   ``N0 (1 + contrast x CTF ⊗ projection)`` counted with Poisson statistics (Gaussian limit, which is
   exact to well under 1 % at the ~100+ electrons per pixel of a 10 Å pixel).
5. **Weighted back-projection** with a ramp filter (apodised by a cosine to Nyquist) of each tilt image,
   at the nominal angles; optional SIRT-like iterations (``sirt_iterations``) refine the WBP by
   back-projecting the residual between measured and re-projected images.

Cost: one projection and one back-projection per tilt, each a sparse-matrix product over the volume
(time per tomogram and path: ``benchmarks/results/synth.md``). The
result is the raw WBP in arbitrary units with protein dark; :mod:`cryopoint.synth.looks` makes the other
reconstruction kinds from it.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.sparse

from cryopoint.synth.imaging import ctf
from cryopoint.synth.params import SynthParams

__all__ = [
    "tilt_scheme",
    "projection_matrix",
    "project",
    "backproject",
    "ctf_2d",
    "critical_exposure",
    "reconstruct_realspace",
]

#: Inelastic mean free path of 300 kV electrons in vitreous ice (Å); scaled by voltage below.
_INELASTIC_MFP_300KV = 3500.0


def tilt_scheme(tilt_max: float, tilt_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Nominal tilt angles (degrees, sorted ascending) and their acquisition order (dose-symmetric).

    >>> angles, order = tilt_scheme(6.0, 3.0)
    >>> angles.tolist(), order.tolist()
    ([-6.0, -3.0, 0.0, 3.0, 6.0], [2, 3, 1, 4, 0])

    Returns:
        ``(angles, order)``: ``order[i]`` is the index (into ``angles``) of the ``i``-th image acquired.
    """
    step = tilt_step if tilt_step > 0 else 3.0
    n = int(np.floor(tilt_max / step + 1e-9))
    angles = np.arange(-n, n + 1, dtype=np.float64) * step
    centre = n
    order = [centre]
    for k in range(1, n + 1):
        order += [centre + k, centre - k]
    return angles, np.array(order)


def _coords(n: int) -> np.ndarray:
    """Centred voxel coordinates ``i - (n - 1) / 2`` of an axis of ``n`` voxels (float32)."""
    return np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2)


def projection_matrix(nz: int, nx: int, angle_deg: float) -> scipy.sparse.csr_matrix:
    """The ray-driven projector of one tilt as a sparse ``(X, Z * X)`` matrix acting on ``(z, x)`` planes.

    Detector column ``u`` (centred like x) collects, from every z slice, the value at
    ``x = (u - z sin θ) / cos θ`` by linear interpolation, times the path length ``1 / cos θ`` (voxels).
    Tilting is about y, so one matrix serves every y row: with the volume laid out as ``(Z * X, Y)``, one
    sparse-dense product projects all rows at once.
    """
    theta = np.radians(angle_deg)
    c, s = np.cos(theta), np.sin(theta)
    pos = (_coords(nx)[None, :] - _coords(nz)[:, None] * np.float32(s)) / np.float32(c) + np.float32((nx - 1) / 2)
    i0 = np.floor(pos).astype(np.int64)  # (Z, U)
    frac = (pos - i0).astype(np.float32)
    rows = np.broadcast_to(np.arange(nx)[None, :], (nz, nx))
    plane = np.broadcast_to(np.arange(nz)[:, None] * nx, (nz, nx))
    r, col, val = [], [], []
    for offset, weight in ((0, 1.0 - frac), (1, frac)):
        idx = i0 + offset
        ok = (idx >= 0) & (idx < nx)
        r.append(rows[ok])
        col.append((plane + idx)[ok])
        val.append(weight[ok] / np.float32(c))
    data = (np.concatenate(val), (np.concatenate(r), np.concatenate(col)))
    return scipy.sparse.csr_matrix(data, shape=(nx, nz * nx), dtype=np.float32)


def _to_planes(volume: np.ndarray) -> np.ndarray:
    """``(Z, Y, X)`` → ``(Z * X, Y)`` (a copy): the layout in which one tilt's projector is one matrix."""
    nz, ny, nx = volume.shape
    return np.ascontiguousarray(volume.transpose(0, 2, 1), dtype=np.float32).reshape(nz * nx, ny)


def _from_planes(planes: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    nz, ny, nx = shape
    return np.ascontiguousarray(planes.reshape(nz, nx, ny).transpose(0, 2, 1))


def project(volume: np.ndarray, angle_deg: float) -> np.ndarray:
    """Line integrals of ``volume (Z, Y, X)`` along the beam at tilt ``angle_deg`` about y: a ``(Y, X)`` image.

    Mass is conserved for objects that stay inside the field of view (see :func:`projection_matrix`).
    """
    nz, _, nx = volume.shape
    return np.ascontiguousarray((projection_matrix(nz, nx, angle_deg) @ _to_planes(volume)).T)


def backproject(image: np.ndarray, angle_deg: float, shape: tuple[int, int, int]) -> np.ndarray:
    """The back-projection (adjoint of :func:`project`) of one ``(Y, X)`` image into a ``(Z, Y, X)`` volume."""
    nz, _, nx = shape
    planes = projection_matrix(nz, nx, angle_deg).T @ np.ascontiguousarray(image.T)
    return _from_planes(np.asarray(planes, dtype=np.float32), shape)


def critical_exposure(k: np.ndarray) -> np.ndarray:
    """Dose (e/Å²) that attenuates spatial frequency ``k`` (1/Å) by ``e^-1/2`` (Grant & Grigorieff 2015)."""
    return 0.245 * np.maximum(k, 1e-4) ** -1.665 + 2.81


def ctf_2d(
    ky: np.ndarray, kx: np.ndarray, *, defocus_um: float, astig_angle: float, exposure: float, params: SynthParams
) -> np.ndarray:
    """One tilt image's CTF on a 2D frequency grid (1/Å): :func:`cryopoint.synth.imaging.ctf` with
    astigmatism, times the exposure filter of the dose already received; protein comes out dark.

    ``defocus_um`` is the image's mean underfocus; along direction ``φ`` it is ``defocus +
    params.astigmatism_um / 2 x cos 2 (φ - astig_angle)``. ``exposure`` is the dose (e/Å²) received before it.
    """
    k = np.sqrt(ky * ky + kx * kx)
    defocus = defocus_um + 0.5 * params.astigmatism_um * np.cos(2 * (np.arctan2(ky, kx) - astig_angle))
    exposure_filter = np.exp(-0.5 * exposure / critical_exposure(k)).astype(np.float32)
    return ctf(k, defocus, params) * exposure_filter


def reconstruct_realspace(
    density: np.ndarray,
    params: SynthParams,
    rng: np.random.Generator,
    *,
    defocus_um: float,
    dose: float,
    thickness: float,
) -> tuple[np.ndarray, dict]:
    """Simulate a tilt series of ``density`` and reconstruct it by weighted back-projection.

    Args:
        density: ``(Z, Y, X)`` float32 specimen in protein-contrast units (protein ≈ +1, ice 0).
        params: Imaging knobs: ``voxel_size`` (the tilt images' pixel size too), ``tilt_max``, ``tilt_step``,
            the microscope constants and ``bfactor`` (as :func:`cryopoint.synth.imaging.ctf`), and the
            real-space ones: ``defocus_jitter_um`` (per-tilt sd), ``astigmatism_um`` (random axis per run),
            ``angle_error`` (sd of each tilt's true angle, degrees), ``shift_error`` (sd of each image's
            residual shift, Å), ``phase_contrast`` (relative image contrast per voxel of projected protein;
            ~0.02 for 10 Å voxels in theory, lower in practice), ``dqe`` and ``sirt_iterations``.
        rng: Source of the alignment errors, astigmatism axis and shot noise.
        defocus_um: Run's mean underfocus (µm).
        dose: Total dose of the series (e/Å²), split evenly over the tilts.
        thickness: Ice thickness (Å) for the inelastic loss ``exp(-t / (λ_in cos θ))``.

    Returns:
        ``(volume, meta)``: the float32 reconstruction (arbitrary units, protein dark) and a dict of what
        was drawn (``angles``, ``true_angles``, ``shifts_A``, ``defoci_um``, ``electrons_per_pixel``).
    """
    shape = density.shape
    nz, ny, nx = shape
    voxel_size, contrast = params.voxel_size, params.phase_contrast
    angles, order = tilt_scheme(params.tilt_max, params.tilt_step)
    n_tilts = len(angles)
    true_angles = angles + rng.normal(0.0, params.angle_error, n_tilts)
    shifts = rng.normal(0.0, params.shift_error, (n_tilts, 2)) / voxel_size  # (dy, dx) voxels
    defoci = defocus_um + rng.normal(0.0, params.defocus_jitter_um, n_tilts)
    astig_angle = float(rng.uniform(0, np.pi))
    received = np.empty(n_tilts)
    received[order] = np.arange(n_tilts) * dose / n_tilts  # dose before each image, dose-symmetric order
    mfp = _INELASTIC_MFP_300KV * (params.voltage_kv / 300.0) ** 0.8
    fy = scipy.fft.fftfreq(ny).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(nx).astype(np.float32)[None, :]
    ky, kx = fy / np.float32(voxel_size), fx / np.float32(voxel_size)
    # ramp filter |kx| (cycles/voxel; the tilt axis is y) with a cosine roll-off to Nyquist, times the angular
    # step in radians: the quadrature weight of filtered back-projection
    d_theta = np.radians(angles[1] - angles[0]) if n_tilts > 1 else 1.0
    ramp = (np.abs(fx) * np.cos(np.pi * np.abs(fx)) ** 2 * d_theta).astype(np.float32)
    planes = _to_planes(density)  # (Z * X, Y)
    electrons, images, projectors = [], [], []
    for i, (angle, true_angle) in enumerate(zip(angles, true_angles, strict=True)):
        proj = np.ascontiguousarray((projection_matrix(nz, nx, float(true_angle)) @ planes).T)  # (Y, X)
        spec = scipy.fft.rfft2(proj)
        spec *= ctf_2d(
            ky, kx, defocus_um=float(defoci[i]), astig_angle=astig_angle, exposure=float(received[i]), params=params
        )
        dy, dx = shifts[i]
        spec *= np.exp(-2j * np.pi * (fy * dy + fx * dx)).astype(np.complex64)
        image = scipy.fft.irfft2(spec, s=(ny, nx)).astype(np.float32)
        n0 = dose / n_tilts * voxel_size**2 * params.dqe * np.exp(-thickness / (mfp * np.cos(np.radians(angle))))
        electrons.append(float(n0))
        # counts = Poisson(N0 (1 + contrast x image)), Gaussian limit; normalised back to projected density
        mean = np.maximum(1.0 + contrast * image, 0.0)
        counts = rng.normal(n0 * mean, np.sqrt(n0 * mean)).astype(np.float32)
        images.append((counts / np.float32(n0) - 1.0) / np.float32(contrast))
        projectors.append(projection_matrix(nz, nx, float(angle)))  # the nominal geometry: what WBP assumes
    del planes
    recon = np.zeros((nz * nx, ny), dtype=np.float32)
    for image, a in zip(images, projectors, strict=True):
        recon += a.T @ np.ascontiguousarray(_filtered(image, ramp).T)
    for _ in range(params.sirt_iterations):
        for image, a in zip(images, projectors, strict=True):
            residual = image - (a @ recon).T
            recon += np.float32(0.5) * (a.T @ np.ascontiguousarray(_filtered(residual, ramp).T))
    volume = _from_planes(recon, shape)
    meta = {
        "angles": angles.tolist(),
        "true_angles": true_angles.tolist(),
        "shifts_A": (shifts * voxel_size).tolist(),
        "defoci_um": defoci.tolist(),
        "electrons_per_pixel": electrons,
    }
    return volume, meta


def _filtered(image: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Ramp-filter a tilt image along x (the axis across the tilt axis)."""
    spec = scipy.fft.rfft2(image)
    spec *= ramp
    return scipy.fft.irfft2(spec, s=image.shape).astype(np.float32)
