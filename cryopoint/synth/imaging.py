"""Imaging: turn a density volume into a "denoised" cryo-ET reconstruction, entirely in Fourier space.

Model (chosen because it is exact for the artefacts that matter and costs three FFTs, where a real-space
projector would need ~40 projections and back-projections of the full volume):

* **Tilt series + weighted back-projection (WBP).** By the central-slice theorem, each projection at tilt
  ``θ`` about y measures the 3D spectrum on a plane through the origin that contains ky. A tilt range of
  ``±tilt_max`` therefore samples the double wedge ``|kz| <= tan(tilt_max) |kx|`` and leaves the
  *missing wedge* around kz empty: objects elongate along z and dense ones (gold) throw X-shaped streaks
  in xz. With a finite ``tilt_step`` the planes have an angular thickness ``~1 / (T |k_xz|)`` for a
  specimen ``T`` voxels thick, so high frequencies are sampled only near the planes; the weight of a
  frequency is the (Poisson-summed) sum of those Gaussian plane profiles, normalised so that WBP's
  ramp restores unit mean weight.
* **CTF** of every tilt applied as a radial function of ``|k|`` (defocus gradient across tilted images
  neglected): ``-(sqrt(1 - A²) sin γ + A cos γ)``, ``γ = π λ Δf k² - π/2 Cs λ³ k⁴``, with a B-factor
  envelope. The sign makes protein (positive density) dark, as in real reconstructions.
* **Noise**: shot noise of each projection, back-projected with the ramp filter, has power ``∝ |k_xz|``
  on the sampled planes and none in the wedge; its variance is ``1 / (snr x dose / 100)`` in
  protein-contrast units.
* **Denoising**: the challenge's "denoised" tomograms look like a Wiener filter of the raw WBP: each
  frequency shell is weighted by ``S / (S + strength x N)`` from the measured shell powers of signal and
  noise, which smooths the noise but keeps the wedge and CTF artefacts.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from cryopoint.synth.params import SynthParams

__all__ = ["electron_wavelength", "ctf", "imaging_transfer", "image_volume"]

_N_SHELLS = 160
_N_COMB_TERMS = 4


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å (0.0197 Å at 300 kV)."""
    volts = voltage_kv * 1e3
    return 12.2643 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))


def ctf(k: np.ndarray, defocus_um: float, params: SynthParams) -> np.ndarray:
    """Contrast transfer (with B-factor envelope) at spatial frequencies ``k`` in 1/Å; underfocus positive."""
    lam = electron_wavelength(params.voltage_kv)
    k2 = k * k
    gamma = np.pi * lam * defocus_um * 1e4 * k2 - 0.5 * np.pi * params.cs_mm * 1e7 * lam**3 * k2 * k2
    a = params.amplitude_contrast
    envelope = np.exp(-0.25 * params.bfactor * k2)
    return (-(np.sqrt(1 - a * a) * np.sin(gamma) + a * np.cos(gamma)) * envelope).astype(np.float32)


def imaging_transfer(
    fz: float, fy: np.ndarray, fx: np.ndarray, *, defocus_um: float, thickness_vox: float, params: SynthParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal transfer, noise amplitude filter and ``|k|`` on one kz plane of an rfft spectrum.

    Args:
        fz: this plane's kz in cycles/voxel.
        fy: ky column ``(Y, 1)``, fx: kx row ``(1, X//2+1)``, cycles/voxel.
        defocus_um: underfocus in µm.
        thickness_vox: specimen thickness along the beam, voxels (sets the tilt-plane thickness).
        params: imaging knobs.

    Returns:
        ``(signal, noise, k)`` arrays of shape ``(Y, X//2+1)``: signal transfer (wedge x comb x CTF),
        noise amplitude filter (wedge x sqrt(comb x ramp)) and ``|k|`` in cycles/voxel.
    """
    rho = np.sqrt(fx * fx + fz * fz).astype(np.float32)  # (1, Xr): radius in the xz plane
    k = np.sqrt(rho * rho + fy * fy)  # (Y, Xr)
    sampled = (abs(fz) <= np.tan(np.radians(params.tilt_max)) * np.abs(fx) + 1e-9).astype(np.float32)
    comb = np.ones_like(rho)
    if params.tilt_step > 0:
        step = np.radians(params.tilt_step)
        phi = np.arctan2(fz, fx)  # angle of (kx, kz) from the kx axis
        sigma = 0.5 / (thickness_vox * np.maximum(rho, 1e-6))  # angular half-thickness of a tilt plane
        for m in range(1, _N_COMB_TERMS + 1):
            comb += 2 * np.exp(-2 * (np.pi * m * sigma / step) ** 2) * np.cos(2 * np.pi * m * phi / step)
        comb = np.maximum(comb, 0.0)
    signal = sampled * comb * ctf(k / np.float32(params.voxel_size), defocus_um, params)
    noise = sampled * np.sqrt(comb * rho / 0.5)
    return signal.astype(np.float32), np.broadcast_to(noise, k.shape).astype(np.float32), k


def image_volume(
    density: np.ndarray,
    params: SynthParams,
    rng: np.random.Generator,
    *,
    defocus_um: float,
    dose: float,
    thickness_vox: float,
    workers: int = -1,
) -> np.ndarray:
    """Simulate the denoised reconstruction of a density volume.

    Args:
        density: (Z, Y, X) float32 density in protein-contrast units (consumed: may be overwritten).
        params: imaging knobs.
        rng: source of the noise.
        defocus_um: this run's underfocus in µm.
        dose: this run's total dose in e/Å².
        thickness_vox: specimen thickness in voxels.
        workers: FFT threads (scipy.fft; -1 = all cores).

    Returns:
        (Z, Y, X) float32 reconstruction in protein-contrast units (protein negative), before gain.
    """
    shape = density.shape
    spec = scipy.fft.rfftn(density, workers=workers, overwrite_x=True)  # complex64 (Z, Y, X//2+1)
    del density
    noise = scipy.fft.rfftn(rng.standard_normal(shape, dtype=np.float32), workers=workers, overwrite_x=True)
    fz_all = scipy.fft.fftfreq(shape[0]).astype(np.float32)
    fy = scipy.fft.fftfreq(shape[1]).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(shape[2]).astype(np.float32)[None, :]
    # Parseval weights of an rfft half-spectrum: interior kx columns stand for two conjugate frequencies
    xw = np.full(fx.shape, 2.0, dtype=np.float32)
    xw[0, 0] = 1.0
    if shape[2] % 2 == 0:
        xw[0, -1] = 1.0
    shell_of = np.float32(_N_SHELLS / (0.5 * np.sqrt(3.0)) * (1 - 1e-6))
    s_pow = np.zeros(_N_SHELLS)
    n_pow = np.zeros(_N_SHELLS)
    kw = dict(defocus_um=defocus_um, thickness_vox=thickness_vox, params=params)
    for iz, fz in enumerate(fz_all):
        signal, noise_filter, k = imaging_transfer(float(fz), fy, fx, **kw)
        spec[iz] *= signal
        noise[iz] *= noise_filter
        shell = (k * shell_of).astype(np.int32).ravel()
        s_pow += np.bincount(shell, (np.abs(spec[iz]) ** 2 * xw).ravel(), _N_SHELLS)
        n_pow += np.bincount(shell, (np.abs(noise[iz]) ** 2 * xw).ravel(), _N_SHELLS)
    n_vox = float(np.prod(shape))
    # scale the noise to variance 1 / effective SNR (Parseval: variance = sum of power / N²)
    noise_var = n_pow.sum() / n_vox**2
    scale = np.sqrt(1.0 / (params.snr * dose / 100.0) / max(noise_var, 1e-30))
    n_pow *= scale**2
    wiener = np.where(s_pow > 0, s_pow / (s_pow + params.denoise_strength * n_pow + 1e-30), 0.0)
    wiener = wiener.astype(np.float32)
    for iz, fz in enumerate(fz_all):
        k = np.sqrt(fx * fx + fy * fy + fz * fz)
        spec[iz] += noise[iz] * np.float32(scale)
        spec[iz] *= wiener[(k * shell_of).astype(np.int32)]
    del noise
    return scipy.fft.irfftn(spec, s=shape, workers=workers, overwrite_x=True).astype(np.float32, copy=False)
