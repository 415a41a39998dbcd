"""Reconstruction "looks": the post-processing users apply to a tomogram before they pick particles.

The CZII challenge ships each run as ``wbp`` (raw weighted back-projection), ``ctfdeconvolved`` (IsoNet-style
Wiener deconvolution of the CTF), ``denoised`` (a denoiser's output) and ``isonetcorrected``. A detector
that saw only one look learns that look. The simulator therefore writes the same specimen under several
reconstruction names, each made from the raw reconstruction by the filters below, and the ``denoised``
kind by a *denoiser* of random kind and strength:

* ``none``: the imaging path's own output (for the Fourier path, its built-in Wiener look).
* ``gaussian``: a Gaussian low-pass (σ in voxels), the cheapest "denoiser" users apply.
* ``tv``: total-variation denoising (scikit-image's Chambolle), edge-preserving: flat ice, sharp particles.
* ``wiener``: the CTF deconvolution followed by a light low-pass, like a deconvolved-then-smoothed map.

``isonetcorrected`` (missing-wedge inpainting by a trained network) is not modelled and is refused.
Every look keeps protein dark: the deconvolution divides by ``-CTF`` (positive at low frequency under the
simulator's sign convention), the others are positive filters.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from cryopoint.errors import ConfigError
from cryopoint.synth.imaging import ctf
from cryopoint.synth.params import DENOISERS, KINDS

__all__ = ["KINDS", "DENOISERS", "ctf_deconvolve", "gaussian_lowpass", "tv_denoise", "denoise", "make_kind"]


def ctf_deconvolve(
    volume: np.ndarray, *, defocus_um: float, params, strength: float = 1.0, falloff: float = 1.0, workers: int = -1
) -> np.ndarray:
    """IsoNet-style Wiener deconvolution of a tomogram's (radially averaged) CTF, protein kept dark.

    Filter ``-CTF(k) / (CTF(k)² + 1 / SNR(k))``, faded in over the lowest 2 % of Nyquist, with
    ``SNR(k) = 10^(3 strength) exp(-falloff x 100 k)``
    (k in 1/Å), as IsoNet's ``deconvstrength`` and ``snrfalloff``; a stronger ``strength`` restores more
    of the CTF's zeros' neighbourhoods, a larger ``falloff`` trusts high frequencies less.

    Args:
        volume: ``(Z, Y, X)`` reconstruction (not modified).
        defocus_um: Underfocus the CTF is computed at (µm).
        params: Object with ``voxel_size``, ``voltage_kv``, ``cs_mm``, ``amplitude_contrast`` and ``bfactor``
            (a :class:`~cryopoint.synth.params.SynthParams`).
        strength: Deconvolution strength (IsoNet's default 1).
        falloff: SNR fall-off with frequency (IsoNet's default 1).
        workers: FFT threads.
    """
    shape = volume.shape
    spec = scipy.fft.rfftn(np.asarray(volume, dtype=np.float32), workers=workers)
    fy = scipy.fft.fftfreq(shape[1]).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(shape[2]).astype(np.float32)[None, :]
    vs = np.float32(params.voxel_size)
    for iz, fz in enumerate(scipy.fft.fftfreq(shape[0]).astype(np.float32)):
        k = np.sqrt(fx * fx + fy * fy + fz * fz) / vs  # 1/Å
        c = ctf(k, defocus_um, params)
        snr = np.float32(10.0 ** (3.0 * strength)) * np.exp(-falloff * 100.0 * k)
        # IsoNet's high-pass: the lowest 2 % of Nyquist fade in, else the tiny amplitude-contrast CTF there
        # would be divided into a huge low-frequency swell
        highpass = np.clip(k * vs / (0.02 * 0.5), 0.0, 1.0)
        spec[iz] *= (-c / (c * c + 1.0 / snr) * highpass).astype(np.float32)
    return scipy.fft.irfftn(spec, s=shape, workers=workers).astype(np.float32)


def gaussian_lowpass(volume: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass with σ in voxels (isotropic)."""
    return ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma)


def tv_denoise(volume: np.ndarray, weight: float, iterations: int = 10) -> np.ndarray:
    """Total-variation denoising (Chambolle) with ``weight`` relative to the volume's standard deviation.

    Iterations are capped low (10 by default) to keep a full tomogram within the simulator's time budget:
    the result is a strongly smoothed, edge-preserving look, not a converged TV solution.
    """
    from skimage.restoration import denoise_tv_chambolle

    vol = np.asarray(volume, dtype=np.float32)
    scale = float(vol.std()) or 1.0
    out = denoise_tv_chambolle(vol / scale, weight=weight, max_num_iter=iterations)
    return (out * scale).astype(np.float32)


def denoise(volume: np.ndarray, denoiser: str, strength: float, *, defocus_um: float, params) -> np.ndarray:
    """The ``denoised`` kind: ``denoiser`` at ``strength`` (0..1: light to heavy) applied to a reconstruction."""
    if denoiser == "none":
        return np.asarray(volume, dtype=np.float32)
    if denoiser == "gaussian":
        return gaussian_lowpass(volume, 0.6 + 1.6 * strength)
    if denoiser == "tv":
        return tv_denoise(volume, 0.1 + 0.9 * strength)
    if denoiser == "wiener":
        deconv = ctf_deconvolve(volume, defocus_um=defocus_um, params=params, falloff=0.5 + strength)
        return gaussian_lowpass(deconv, 0.5 + strength)
    raise ConfigError(f"Unknown denoiser {denoiser!r}; choose one of {', '.join(DENOISERS)}.")


def make_kind(kind: str, recon: np.ndarray, *, params, defocus_um: float) -> np.ndarray:
    """One reconstruction kind of a run from its raw reconstruction ``recon``.

    Args:
        kind: ``"wbp"`` (``recon`` itself), ``"ctfdeconvolved"`` or ``"denoised"`` (``params.denoiser`` at
            ``params.denoise_level``).
        recon: The imaging path's raw reconstruction (not modified).
        params: The run's :class:`~cryopoint.synth.params.SynthParams`.
        defocus_um: The run's mean underfocus.

    Raises:
        ConfigError: an unknown kind (``isonetcorrected`` is not modelled).
    """
    if kind == "wbp":
        return np.asarray(recon, dtype=np.float32)
    if kind == "ctfdeconvolved":
        return ctf_deconvolve(recon, defocus_um=defocus_um, params=params)
    if kind == "denoised":
        return denoise(recon, params.denoiser, params.denoise_level, defocus_um=defocus_um, params=params)
    raise ConfigError(
        f"The simulator cannot write reconstruction kind {kind!r}; choose from {', '.join(KINDS)} "
        "(isonetcorrected, a trained network's missing-wedge inpainting, is not modelled)."
    )
