"""One synthetic run: specimen → imaging → the raw tiny-valued volume of a challenge "denoised" tomogram."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryopoint.errors import ConfigError
from cryopoint.synth.imaging import image_volume
from cryopoint.synth.params import SynthParams
from cryopoint.synth.sample import build_sample

__all__ = ["simulate_run"]


def _add_drift(vol: np.ndarray, amplitude: float, rng: np.random.Generator) -> None:
    """Add a slow intensity gradient in place: a random linear ramp plus one long-wavelength cosine."""
    nz, ny, nx = vol.shape
    gz, gy, gx = rng.standard_normal(3) / np.sqrt(3.0)
    phase = rng.uniform(0, 2 * np.pi)
    y = np.linspace(-1, 1, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, :]
    plane = gy * y + gx * x + 0.5 * np.cos(np.pi * (0.6 * x + 0.4 * y) + phase)
    for k, z in enumerate(np.linspace(-1, 1, nz, dtype=np.float32)):
        vol[k] += np.float32(amplitude) * (plane + gz * z)


def simulate_run(
    shape: Sequence[int], params: SynthParams, rng: np.random.Generator, *, workers: int = -1
) -> tuple[np.ndarray, pd.DataFrame]:
    """Simulate one tomogram and its ground truth.

    Per run, the defocus, dose and output gain are drawn from the ``params`` ranges; they are recorded in
    ``picks.attrs["synth"]``.

    >>> from cryopoint.synth import get_preset
    >>> vol, picks = simulate_run((32, 64, 64), get_preset("easy", counts={"ribosome": 1}),
    ...                           np.random.default_rng(0))
    >>> vol.shape, vol.dtype, list(picks.particle_type)
    ((32, 64, 64), dtype('float32'), ['ribosome'])

    Args:
        shape: ``(Z, Y, X)`` voxels.
        params: simulator knobs (see :class:`~cryopoint.synth.params.SynthParams`).
        rng: the only source of randomness: the same seed gives the same volume bit for bit.
        workers: FFT threads (-1 = all cores).

    Returns:
        ``(volume, picks)``: float32 ``(Z, Y, X)`` with protein darker than ice and values ~1e-5, and the
        picks table (``particle_type``, ``x, y, z`` in Å, ``Å = index x voxel_size``).

    Raises:
        ConfigError: a shape that is not three positive sizes, or requested counts that do not fit.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ConfigError(f"shape must be three sizes (Z, Y, X) of at least 4 voxels; got {shape}.")
    defocus = float(rng.uniform(*params.defocus_um))
    dose = float(rng.uniform(*params.dose))
    gain = float(rng.uniform(*params.gain))
    density, picks = build_sample(shape, params, rng)
    vol = image_volume(
        density,
        params,
        rng,
        defocus_um=defocus,
        dose=dose,
        thickness_vox=params.ice_fraction * shape[0],
        workers=workers,
    )
    vol *= np.float32(1.0 / max(float(vol.std()), 1e-30))
    _add_drift(vol, params.background_drift, rng)
    vol *= np.float32(gain)
    picks.attrs["synth"] = {"defocus_um": defocus, "dose": dose, "gain": gain}
    return vol, picks
