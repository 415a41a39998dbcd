"""One synthetic run: specimen → imaging (Fourier or real-space path) → the tiny-valued volumes of its kinds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryopoint.errors import ConfigError
from cryopoint.synth.imaging import image_volume
from cryopoint.synth.looks import make_kind
from cryopoint.synth.params import SynthParams
from cryopoint.synth.realspace import reconstruct_realspace
from cryopoint.synth.sample import Slab, build_sample, draw_layout, object_kind

__all__ = ["simulate_run", "simulate_kinds", "run_layout"]


def _drift_field(shape: Sequence[int], amplitude: float, rng: np.random.Generator):
    """Draw a slow intensity gradient (a random linear ramp plus one long-wavelength cosine).

    Returns a function that adds it in place to a volume of ``shape``: every kind of a run gets the same drift.
    """
    nz, ny, nx = shape
    gz, gy, gx = rng.standard_normal(3) / np.sqrt(3.0)
    phase = rng.uniform(0, 2 * np.pi)
    y = np.linspace(-1, 1, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, :]
    plane = gy * y + gx * x + 0.5 * np.cos(np.pi * (0.6 * x + 0.4 * y) + phase)

    def add(vol: np.ndarray) -> None:
        for k, z in enumerate(np.linspace(-1, 1, nz, dtype=np.float32)):
            vol[k] += np.float32(amplitude) * (plane + gz * z)

    return add


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ConfigError(f"shape must be three sizes (Z, Y, X) of at least 4 voxels; got {shape}.")
    return shape  # type: ignore[return-value]


def _draw_run_knobs(params: SynthParams, rng: np.random.Generator) -> tuple[SynthParams, float, float, float]:
    """The draws a run makes before its specimen, in order: its own parameters (with ``params.randomize``),
    then defocus, dose and output gain. One home, so :func:`run_layout` replays exactly what a run draws."""
    if params.randomize:
        from cryopoint.synth.randomize import draw_run_params

        params = draw_run_params(params, rng)
    defocus = float(rng.uniform(*params.defocus_um))
    dose = float(rng.uniform(*params.dose))
    return params, defocus, dose, float(rng.uniform(*params.gain))


def run_layout(shape: Sequence[int], params: SynthParams, rng: np.random.Generator) -> tuple[pd.DataFrame, Slab]:
    """Where everything sits in the run that :func:`simulate_run` draws from the same ``rng`` state, without
    imaging it (fast): one row per placed object, and the ice slab.

    Rows: ``kind`` (``particle``, ``shell``, ``blob``, ``assembly``, ``gold``, ``vesicle``, ``filament``),
    ``particle_type`` (the class of a labelled particle, else empty), ``radius`` (Å, the object's exclusion
    radius) and ``x, y, z`` (Å, the frame of the truth table). For diagnosis: what a detector's false positives
    land on. The labelled rows are the run's truth.
    """
    shape = _check_shape(shape)
    params = _draw_run_knobs(params, rng)[0]
    slab, objects = draw_layout(shape, params, rng)
    rows = [(object_kind(o), o.shape.label or "", float(o.shape.radius), *map(float, o.center)) for o in objects]
    return pd.DataFrame(rows, columns=["kind", "particle_type", "radius", "x", "y", "z"]), slab


def simulate_kinds(
    shape: Sequence[int], params: SynthParams, rng: np.random.Generator, *, workers: int = -1
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Simulate one run and every reconstruction kind of it that ``params.kinds`` names.

    With ``params.randomize`` the run first draws its own parameters
    (:func:`cryopoint.synth.randomize.draw_run_params`). Per run, the defocus, dose and output gain are drawn
    from the ``params`` ranges. What was drawn is recorded in ``picks.attrs["synth"]``.

    Returns:
        ``({kind: volume}, picks)``: float32 ``(Z, Y, X)`` volumes (protein darker than ice, values of the
        order of the drawn gain) in ``params.kinds`` order, and the picks table (``particle_type``,
        ``x, y, z`` in Å, ``Å = index x voxel_size``).

    Raises:
        ConfigError: a shape that is not three sizes of at least 4, or requested counts that do not fit.
    """
    shape = _check_shape(shape)
    params, defocus, dose, gain = _draw_run_knobs(params, rng)
    density, picks = build_sample(shape, params, rng)
    thickness_vox = params.ice_fraction * shape[0]
    meta: dict = {"defocus_um": defocus, "dose": dose, "gain": gain}
    if params.imaging == "fourier":
        recon = image_volume(
            density, params, rng, defocus_um=defocus, dose=dose, thickness_vox=thickness_vox, workers=workers
        )
    else:
        thickness = thickness_vox * params.voxel_size
        recon, tilts = reconstruct_realspace(density, params, rng, defocus_um=defocus, dose=dose, thickness=thickness)
        meta["tilt_errors_deg_rms"] = float(np.sqrt(np.mean(np.subtract(tilts["true_angles"], tilts["angles"]) ** 2)))
    del density
    add_drift = _drift_field(shape, params.background_drift, rng)
    volumes = {}
    for kind in params.kinds:
        vol = make_kind(kind, recon, params=params, defocus_um=defocus)
        vol *= np.float32(1.0 / max(float(vol.std()), 1e-30))
        add_drift(vol)
        vol *= np.float32(gain)
        volumes[kind] = vol
    fields = (
        "imaging",
        "shape_model",
        "denoiser",
        "denoise_level",
        "tilt_max",
        "tilt_step",
        "bfactor",
        "snr",
        "filaments_per_volume",
    )
    meta |= {f: getattr(params, f) for f in fields}
    picks.attrs["synth"] = meta
    return volumes, picks


def simulate_run(
    shape: Sequence[int], params: SynthParams, rng: np.random.Generator, *, workers: int = -1
) -> tuple[np.ndarray, pd.DataFrame]:
    """Simulate one tomogram (the first of ``params.kinds``) and its ground truth.

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
    volumes, picks = simulate_kinds(shape, params, rng, workers=workers)
    return next(iter(volumes.values())), picks
