"""Seeded appearance augmentations: make synthetic crops look like other simulators' and real tomograms.

Models trained on one simulator learn its look: its resolution, noise colour, filtering and intensity
mapping. These functions change only that look, on a normalised crop (``normalize_volume`` units, protein
dark), and never the geometry, so particle points stay valid. Each is a pure function
``(volume (Z, Y, X), parameters) -> new float32 volume``; :func:`random_appearance` applies one random
draw of all of them, and :func:`cryopoint.data.transforms.random_augment` calls it (after its own draws)
when any of its appearance knobs is above 0.

No operation inverts contrast: blur, unsharp masking and the band-pass have non-negative frequency
responses, the contrast factor is positive, and the intensity curves are increasing, so protein stays
darker than its surroundings.

The knobs of :func:`random_appearance` (all 0 = off, which is the default in ``AugmentConfig``):

========================  ==============================================================================
``blur``                  With probability 1/2: Gaussian blur, sigma ``U(0, blur)`` voxels drawn
                          separately for z and for y/x (anisotropic, as a missing wedge or a different
                          reconstruction resolution gives).
``sharpen``               Otherwise (the other half): unsharp mask ``v + a (v - G_s v)``,
                          ``a ~ U(0, sharpen)``, ``s ~ U(0.5, 2)``.
``gamma``                 Always: contrast factor ``exp(U(-gamma, gamma))`` on the signal (before the
                          noise, so it sets the signal-to-noise ratio), then a sign-preserving gamma-like
                          curve with exponents ``exp(U(-gamma, gamma))``, drawn separately for the dark
                          and the bright side (changes the skew of the histogram).
``noise_color``           Always: white, correlated (Gaussian-filtered, sigma ``U(0.5, 2)``) or both kinds
                          of noise (one third each), each with sd ``U(0, noise_color)`` normalised units.
``bandpass``              Probability (0-1): difference of Gaussians ``G_lo v - w G_hi v`` with
                          ``lo ~ U(0, 1.5)``, ``hi ~ logU(4, 16)`` voxels and ``w ~ U(0.5, 1)``.
``nonlinearity``          Always: blend ``(1 - t) v + t f(v)``, ``t ~ U(0, nonlinearity)`` (0-1; ``t`` capped
                          at 0.95 so the map stays strictly increasing), with ``f`` a random increasing sum
                          of three ``tanh`` steps (centres in [-1.5, 1.5], widths in [0.3, 1.5]).
``local_norm``            Probability (0-1): subtract a local mean and divide by a local sd (Gaussian
                          windows of sigma ``logU(4, 16)`` voxels).
========================  ==============================================================================

Order of application, following an imaging chain: resolution (blur/sharpen), signal contrast, noise,
filtering (band-pass), intensity mapping (gamma curve, non-linearity), local normalisation, and last a
re-standardisation of the crop to its input's median and spread (see :func:`random_appearance`).

Gaussian filters are dense separable matrix products (one ``(n, n)`` matrix per axis, reflecting borders
folded in), so any sigma costs the same three small matrix multiplications.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from cryopoint.data.normalize import DEFAULT_CLIP

__all__ = [
    "APPEARANCE_KNOBS",
    "check_knobs",
    "gaussian_blur",
    "unsharp_mask",
    "contrast_gamma",
    "add_noise",
    "bandpass_filter",
    "smooth_nonlinearity",
    "local_normalize",
    "robust_centre_spread",
    "restandardize",
    "random_appearance",
]

#: The knobs of :func:`random_appearance` and their largest allowed value (the probabilities and the
#: non-linearity blend stop at 1; strengths are open-ended).
APPEARANCE_KNOBS: dict[str, float] = {
    "blur": math.inf,
    "sharpen": math.inf,
    "gamma": math.inf,
    "noise_color": math.inf,
    "bandpass": 1.0,
    "nonlinearity": 1.0,
    "local_norm": 1.0,
}

#: Number of uniforms :func:`random_appearance` draws per call (always all of them, in a fixed layout).
_N_UNIFORMS = 28
#: Voxels used to estimate a crop's median and spread (a regular subsample: cheap and plenty for 3 numbers).
_STATS_SAMPLES = 16_384
#: IQR of a standard normal, so that ``IQR / 1.349`` is an sd (the estimator of ``normalize_volume``).
_IQR_TO_SD = 1.3489795003921634


def check_knobs(**knobs: float) -> dict[str, float]:
    """Validate appearance knobs (names and ranges) and return them as floats.

    Raises:
        ValueError: an unknown name, a negative value, or a probability above 1.
    """
    out = {}
    for name, value in knobs.items():
        if name not in APPEARANCE_KNOBS:
            raise ValueError(f"Unknown appearance knob {name!r}; options: {', '.join(APPEARANCE_KNOBS)}.")
        value = float(value)
        if not 0.0 <= value <= APPEARANCE_KNOBS[name]:
            bound = APPEARANCE_KNOBS[name]
            raise ValueError(f"Appearance knob {name!r} must be in [0, {bound:g}]; got {value:g}.")
        out[name] = value
    return out


def _f32(volume: np.ndarray) -> np.ndarray:
    return np.asarray(volume, dtype=np.float32)


def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` float32 matrix ``M`` with ``M @ line`` = the Gaussian-filtered line (reflecting borders)."""
    return ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0, mode="reflect", truncate=4.0).astype(np.float32)


def _sigmas(sigma: float | Sequence[float]) -> tuple[float, float, float]:
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (3,))
    if (sig < 0).any() or not np.isfinite(sig).all():
        raise ValueError(f"Gaussian sigmas must be finite and >= 0; got {sigma}.")
    return float(sig[0]), float(sig[1]), float(sig[2])


def gaussian_blur(volume: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
    """Gaussian filter of a ``(Z, Y, X)`` volume with reflecting borders (sigma 0 on an axis = untouched).

    Args:
        volume: ``(Z, Y, X)`` volume (not modified).
        sigma: One sigma in voxels, or ``(sz, sy, sx)``.

    Returns:
        A new float32 C-contiguous volume.
    """
    sz, sy, sx = _sigmas(sigma)
    out = _f32(volume)
    nz, ny, nx = out.shape
    # Dense matrices: for crop-sized axes (<= a few hundred voxels) a matrix product beats a convolution
    # for every sigma above ~1 and costs the same for any sigma (the band-pass and local windows are wide).
    if sz > 0:
        out = (_gauss_matrix(nz, sz) @ out.reshape(nz, -1)).reshape(nz, ny, nx)
    if sy > 0:
        out = np.matmul(_gauss_matrix(ny, sy), out)
    if sx > 0:
        out = (out.reshape(-1, nx) @ _gauss_matrix(nx, sx).T).reshape(nz, ny, nx)
    return np.array(out, dtype=np.float32, order="C", copy=True)


def unsharp_mask(volume: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    """Sharpen: ``v + amount * (v - G_sigma v)``.

    The frequency response ``1 + amount (1 - g(k))`` is at least 1, so nothing is inverted.

    Args:
        volume: ``(Z, Y, X)`` volume (not modified).
        amount: Non-negative gain of the high-pass part.
        sigma: Width (voxels) of the blur that defines the high-pass part.
    """
    if amount < 0:
        raise ValueError(f"amount must be >= 0 (a negative one would blur, or invert); got {amount}.")
    v = _f32(volume)
    out = v - gaussian_blur(v, sigma)
    out *= np.float32(amount)
    out += v
    return out


def contrast_gamma(
    volume: np.ndarray, contrast: float = 1.0, gamma_dark: float = 1.0, gamma_bright: float = 1.0
) -> np.ndarray:
    """Scale by ``contrast`` then map through a sign-preserving gamma-like curve, on normalised data.

    ``y = sign(x) ((1 + |x|)^g - 1) / g`` with ``x = contrast * v`` and ``g = gamma_dark`` for ``x < 0``,
    ``gamma_bright`` for ``x >= 0``. The curve is increasing, keeps 0 (the tomogram median) and the sign,
    has slope 1 at 0 on both sides (so it is smooth there) and, unlike ``|x|^g``, no infinite slope at 0;
    ``g > 1`` stretches that side's tail, ``g < 1`` compresses it (``g = 1`` is the identity).

    Args:
        volume: Normalised ``(Z, Y, X)`` volume (not modified).
        contrast: Positive factor.
        gamma_dark: Positive exponent for values below 0 (protein side).
        gamma_bright: Positive exponent for values above 0.
    """
    if not (contrast > 0 and gamma_dark > 0 and gamma_bright > 0):
        raise ValueError(f"contrast and gammas must be > 0; got {contrast}, {gamma_dark}, {gamma_bright}.")
    x = _f32(volume) * np.float32(contrast)
    mag = np.abs(x)
    g = np.where(x < 0, np.float32(gamma_dark), np.float32(gamma_bright))
    mag = np.expm1(g * np.log1p(mag)) / g  # ((1 + |x|)^g - 1) / g, accurate near 0
    return np.copysign(mag, x).astype(np.float32, copy=False)


def add_noise(volume: np.ndarray, sd: float, rng: np.random.Generator, sigma: float = 0.0) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``sd``, white or correlated.

    Args:
        volume: ``(Z, Y, X)`` volume (not modified).
        sd: Noise standard deviation (volume units).
        rng: Source of the noise field (one ``standard_normal`` field of the volume's shape is drawn).
        sigma: 0 for white noise; otherwise the field is Gaussian-filtered with this sigma (voxels) and
            rescaled to unit sd, which gives noise with a low-pass (coloured) spectrum.
    """
    if sd < 0:
        raise ValueError(f"sd must be >= 0; got {sd}.")
    v = _f32(volume)
    field = rng.standard_normal(v.shape, dtype=np.float32)
    if sigma > 0:
        field = gaussian_blur(field, sigma)
        spread = float(field.std())
        if spread > 0:
            field *= np.float32(1.0 / spread)
    field *= np.float32(sd)
    field += v
    return field


def bandpass_filter(volume: np.ndarray, low_sigma: float, high_sigma: float, strength: float = 1.0) -> np.ndarray:
    """Difference of Gaussians ``G_low v - strength G_high v``: removes detail finer than ``low_sigma`` and
    (a ``strength`` fraction of) structure coarser than ``high_sigma``.

    With ``low_sigma < high_sigma`` and ``0 <= strength <= 1`` the response ``g_lo(k) - strength g_hi(k)`` is
    non-negative at every frequency, so the filter never inverts contrast.

    Args:
        volume: ``(Z, Y, X)`` volume (not modified).
        low_sigma: Sigma (voxels) of the low-pass part (0 = keep the finest detail).
        high_sigma: Sigma (voxels) of the subtracted background; must be larger than ``low_sigma``.
        strength: Fraction (0-1) of the background removed.
    """
    if not 0 <= low_sigma < high_sigma:
        raise ValueError(f"Need 0 <= low_sigma < high_sigma; got {low_sigma}, {high_sigma}.")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1]; got {strength}.")
    low = gaussian_blur(volume, low_sigma)
    background = gaussian_blur(volume, high_sigma)
    background *= np.float32(strength)
    low -= background
    return low


def smooth_nonlinearity(
    volume: np.ndarray,
    centres: Sequence[float],
    widths: Sequence[float],
    weights: Sequence[float],
    mix: float,
) -> np.ndarray:
    """Map intensities through a smooth increasing curve: ``(1 - mix) v + mix f(v)``.

    ``f(v) = sum_i a_i w_i tanh((v - c_i) / w_i) / sum_i a_i``: each term is a smooth step with slope 1 at
    its centre ``c_i`` that saturates beyond ~``w_i``, so ``f`` stretches contrast near the centres and
    compresses it elsewhere, like an unknown detector or display response. With positive weights and
    ``mix < 1`` the slope is at least ``1 - mix > 0``: strictly increasing, order of values kept.

    Args:
        volume: Normalised ``(Z, Y, X)`` volume (not modified).
        centres: Step centres (normalised units).
        widths: Positive step widths.
        weights: Non-negative weights (not all 0).
        mix: Blend (0-1) of the curve with the identity.
    """
    centres, widths, weights = (np.asarray(a, dtype=np.float64).ravel() for a in (centres, widths, weights))
    if not (centres.size == widths.size == weights.size > 0):
        raise ValueError("centres, widths and weights need the same, non-zero length.")
    if (widths <= 0).any() or (weights < 0).any() or not weights.sum() > 0 or not 0.0 <= mix <= 1.0:
        raise ValueError("Need widths > 0, weights >= 0 (not all 0) and 0 <= mix <= 1.")
    v = _f32(volume)
    curve = np.zeros_like(v)
    for c, w, a in zip(centres, widths, weights / weights.sum()):
        curve += np.float32(a * w) * np.tanh((v - np.float32(c)) * np.float32(1.0 / w))
    curve *= np.float32(mix)
    curve += v * np.float32(1.0 - mix)
    return curve


def local_normalize(volume: np.ndarray, sigma: float | Sequence[float], eps: float = 0.01) -> np.ndarray:
    """Local contrast normalisation: ``(v - G v) / sqrt(G (v - G v)^2 + eps var(v))``.

    Removes slow intensity changes (ice thickness, drift) and evens out the contrast across the crop, as
    some preprocessing pipelines do. The divisor is positive, so the sign of local contrast is kept.

    Args:
        volume: ``(Z, Y, X)`` volume (not modified).
        sigma: Window sigma(s) in voxels, a float or ``(sz, sy, sx)``.
        eps: Floor of the local variance, as a fraction of the global variance (avoids dividing by ~0 in
            flat regions such as padding).
    """
    v = _f32(volume)
    centred = v - gaussian_blur(v, sigma)
    local_var = gaussian_blur(np.square(centred), sigma)
    floor = eps * float(v.var())
    np.maximum(local_var, 0.0, out=local_var)
    local_var += np.float32(floor if floor > 0 else 1e-12)
    centred /= np.sqrt(local_var)
    return centred


def robust_centre_spread(volume: np.ndarray) -> tuple[float, float]:
    """``(median, IQR / 1.349)`` of a regular subsample of the volume (the estimators of ``normalize_volume``)."""
    flat = np.asarray(volume).reshape(-1)
    step = max(1, flat.size // _STATS_SAMPLES)
    q25, median, q75 = np.percentile(flat[::step], [25.0, 50.0, 75.0])
    return float(median), float((q75 - q25) / _IQR_TO_SD)


def restandardize(volume: np.ndarray, median: float, spread: float, clip: float | None = DEFAULT_CLIP) -> np.ndarray:
    """Affinely map the volume so its median and robust spread become ``median`` and ``spread``, then clip.

    A volume without spread is only shifted. The gain is positive, so nothing is inverted.

    Args:
        volume: ``(Z, Y, X)`` volume (not modified).
        median: Target median.
        spread: Target robust sd (``IQR / 1.349``).
        clip: Bound of the result (``normalize_volume`` clips tomograms there, so crops should not exceed
            it either); ``None`` = no clipping.
    """
    v = _f32(volume)
    m, s = robust_centre_spread(v)
    gain = spread / s if s > 1e-6 and spread > 1e-6 else 1.0
    out = v - np.float32(m)
    out *= np.float32(gain)
    out += np.float32(median)
    if clip is not None:
        np.clip(out, -clip, clip, out=out)
    return out


def random_appearance(
    volume: np.ndarray,
    rng: np.random.Generator,
    *,
    blur: float = 0.0,
    sharpen: float = 0.0,
    gamma: float = 0.0,
    noise_color: float = 0.0,
    bandpass: float = 0.0,
    nonlinearity: float = 0.0,
    local_norm: float = 0.0,
) -> np.ndarray:
    """Apply one random draw of every appearance augmentation (see the module docstring for the knobs).

    Every call draws the same numbers from ``rng`` (28 uniforms, then two seeds for the noise fields),
    in a fixed layout, whatever the knobs: switching one operation off or on does not change the others'
    draws, and the stream that follows is the same.

    The result is re-standardised to the input crop's median and robust spread (``IQR / 1.349``), and
    clipped to ``normalize_volume``'s bound. Why: the network sees tomograms after per-tomogram
    normalisation, which fixes the global scale whatever the imaging; blur, noise and filters change a
    crop's spread by factors of several, which a real tomogram would not show after normalisation. Matching
    the input crop's own median and spread (not 0 and 1) keeps the crop-to-crop differences that the
    tomogram-wide normalisation leaves (a crop full of protein is darker than one of empty ice).

    Args:
        volume: Normalised ``(Z, Y, X)`` crop (not modified).
        rng: Random generator.
        blur: Largest Gaussian blur sigma (voxels), drawn separately for z and y/x; half of the draws.
        sharpen: Largest unsharp-mask gain; the other half of the draws.
        gamma: Log-range of the contrast factor and of the two gamma exponents.
        noise_color: Largest sd (normalised units) of the added white and/or correlated noise.
        bandpass: Probability of a difference-of-Gaussians band-pass.
        nonlinearity: Largest blend (0-1) of the random smooth intensity curve.
        local_norm: Probability of local contrast normalisation.

    Returns:
        A new float32 C-contiguous volume of the same shape.
    """
    check_knobs(
        blur=blur,
        sharpen=sharpen,
        gamma=gamma,
        noise_color=noise_color,
        bandpass=bandpass,
        nonlinearity=nonlinearity,
        local_norm=local_norm,
    )
    # All decisions first, always the same draws: u[i] is the uniform of decision i whether or not its
    # operation is on; the noise fields get their own generators, so drawing one or not moves nothing else.
    u = rng.random(_N_UNIFORMS)
    white_seed, correlated_seed = (int(s) for s in rng.integers(0, 2**63, size=2))

    v = np.array(volume, dtype=np.float32, order="C", copy=True)
    median, spread = robust_centre_spread(v)
    if spread <= 1e-6:
        # (Nearly) constant, e.g. padding: there is no look to change, and local normalisation or the
        # re-standardisation would only blow up the added noise to an arbitrary scale. Left as it is.
        return v

    # 1. Resolution: blur or sharpen (u[0] picks which, so each keeps its half of the draws when the other is off).
    if u[0] < 0.5 and blur > 0:
        v = gaussian_blur(v, (blur * u[1], blur * u[2], blur * u[2]))
    elif u[0] >= 0.5 and sharpen > 0:
        v = unsharp_mask(v, sharpen * u[3], 0.5 + 1.5 * u[4])

    # 2. Signal contrast (before the noise: it sets the signal-to-noise ratio).
    contrast = math.exp(gamma * (2 * u[5] - 1))
    if gamma > 0:
        v *= np.float32(contrast)

    # 3. Noise: white (u[8] < 2/3), correlated (u[8] >= 1/3), or both (the middle third).
    if noise_color > 0:
        if u[8] < 2 / 3:
            v = add_noise(v, noise_color * u[9], np.random.default_rng(white_seed))
        if u[8] >= 1 / 3:
            v = add_noise(v, noise_color * u[10], np.random.default_rng(correlated_seed), sigma=0.5 + 1.5 * u[11])

    # 4. Filtering: difference of Gaussians.
    if u[12] < bandpass:
        high = 4.0 * 4.0 ** u[14]  # log-uniform in [4, 16] voxels
        v = bandpass_filter(v, 1.5 * u[13], high, 0.5 + 0.5 * u[15])

    # 5. Intensity mapping, on data brought back to normalised units first (the curves are defined there).
    if gamma > 0 or nonlinearity > 0:
        v = restandardize(v, median, spread, clip=None)
    if gamma > 0:
        v = contrast_gamma(v, 1.0, math.exp(gamma * (2 * u[6] - 1)), math.exp(gamma * (2 * u[7] - 1)))
    if nonlinearity > 0:
        v = smooth_nonlinearity(
            v,
            centres=-1.5 + 3.0 * u[17:20],
            widths=0.3 * 5.0 ** u[20:23],  # log-uniform in [0.3, 1.5]
            weights=0.05 + u[23:26],
            mix=min(nonlinearity * u[16], 0.95),  # keeps a slope >= 0.05: strictly increasing
        )

    # 6. Local contrast normalisation.
    if u[26] < local_norm:
        v = local_normalize(v, 4.0 * 4.0 ** u[27])  # window sigma log-uniform in [4, 16] voxels

    # 7. Back to the input's median and spread (see the docstring), clipped like normalised tomograms.
    return np.ascontiguousarray(restandardize(v, median, spread), dtype=np.float32)
