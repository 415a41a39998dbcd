"""Domain randomisation: each run of the ``randomized`` preset draws every imaging and sample knob.

A detector trained on one fixed simulator learns that simulator (its noise colour, its CTF, its shapes,
its denoiser). Drawing each run's knobs from wide ranges, and even its generation path and particle
model, leaves the particles' size, mass, symmetry and darkness as the only things that stay the same,
which is what a model should learn. The ranges, per run (uniform unless said; "log" = log-uniform):

=========================  =====================================  ==========================================
knob                       range                                  why
=========================  =====================================  ==========================================
imaging                    fourier or realspace (1:1)             two independent generation paths
shape_model                analytic, assembly, mixed (1:1:1)      two independent particle models and a mix
denoiser (denoised kind)   none, gaussian, tv, wiener (1:1:1:1)   the looks users feed cryopoint
denoise_level              0 - 1                                  light to heavy post-processing
denoise_strength           0 - 3 (Fourier path's own Wiener)      raw WBP to smooth
snr (Fourier path)         0.15 - 20, log                         very noisy to denoised-clean
dose (e/Å², total)         40 - 180                               low-dose to generous series
phase_contrast (real-sp.)  0.006 - 0.03, log                       weak to strong contrast per voxel
dqe (real-space)           0.3 - 0.9                              detectors old and new
defocus_um                 1.5 - 7 (one value per run)            in-focus-ish to far underfocus
bfactor (Å²)               30 - 400                               sharp to heavily damped
tilt_max (°)               40 - 70                                missing wedge from huge to small
tilt_step (°)              1 - 4                                  fine to coarse angular sampling
angle_error (°), shift (Å) 0 - 1, 0 - 10                          alignment quality
defocus_jitter, astig. µm  0 - 0.3, 0 - 0.5                       per-tilt CTF errors
ice_fraction               0.45 - 0.95                            thin to full ice slab
ice_tilt                   0 - 0.4                                flat to wedge-shaped ice
vacuum_contrast            -1.0 - 0                               vacuum darker than ice or not visible
crowding                   0.5 - 2.0                              sparse to crowded
clutter_per_particle       0.2 - 3.0 (``clutter_range``)          clean to cluttered
clutter_shell_fraction     0 - 0.4                                few to many hollow look-alikes
vesicles_per_volume        0 - 8                                  membranes absent to many
gold_per_volume            0 - 12                                 no fiducials to many
gold_density               4 - 15                                 gold contrast
gain (output sd)           1e-6 - 1e-3, log                       any raw scale (normalisation must cope)
background_drift           0 - 0.8                                flat to strongly shaded
sirt_iterations            0 (75 %) or 1 - 2                      WBP or SIRT-like
filaments_per_volume       0 (50 %) or 5 - 40                     purified sample or cytoskeleton (cells)
microtubule_fraction       0 - 1                                  actin-rich to microtubule-rich
=========================  =====================================  ==========================================

The two filament knobs come from a generator seeded by the run's other draws, not from ``rng``: drawing them
leaves the rest of the run's random stream, so a run drawn without filaments is the run it was before they
were added.

The shift range is ``SynthParams.shift_error_range`` (one uniform draw whatever the range, so a wider range
changes a run's shift error and nothing else of it). The clutter range is ``SynthParams.clutter_range`` (one
uniform draw too: a wider range changes a run's clutter count and none of its other knobs; its scene is laid out
again, since every clutter object is drawn from the scene's stream).

Protein stays dark in every draw: no knob flips the contrast sign. ``SynthParams.keep`` names knobs to leave
at the base's value (they are still drawn, then replaced, so the other knobs' draws do not change).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cryopoint.errors import ConfigError
from cryopoint.synth.params import DENOISERS, IMAGING_PATHS, SHAPE_MODELS, SynthParams

__all__ = ["draw_run_params"]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _draw_filaments(drawn: dict) -> dict:
    """The filament knobs, from a generator seeded by the other draws (``rng``'s stream is left as it was)."""
    seed = np.frombuffer(np.array([drawn["defocus_um"][0], drawn["gain"][0], drawn["bfactor"]]).tobytes(), np.uint32)
    sub = np.random.default_rng(seed)
    with_filaments = sub.random() < 0.5
    count = float(sub.uniform(5.0, 40.0))
    fraction = float(sub.uniform(0.0, 1.0))
    return {"filaments_per_volume": count if with_filaments else 0.0, "microtubule_fraction": fraction}


def draw_run_params(base: SynthParams, rng: np.random.Generator) -> SynthParams:
    """One run's concrete parameters: ``base`` with every randomised knob drawn from the module's ranges.

    ``base.counts``, ``voxel_size``, ``kinds``, the microscope constants (kV, Cs, amplitude contrast) and
    the size ranges of vesicles and gold are kept. The result has ``randomize=False``.

    >>> p = draw_run_params(SynthParams(randomize=True), np.random.default_rng(0))
    >>> p.randomize, p.imaging in ("fourier", "realspace"), 40.0 <= p.tilt_max <= 70.0
    (False, True, True)
    """
    defocus = float(rng.uniform(1.5, 7.0))
    dose = float(rng.uniform(40.0, 180.0))
    gain = _log_uniform(rng, 1e-6, 1e-3)
    kinds = base.kinds
    imaging = IMAGING_PATHS[int(rng.integers(len(IMAGING_PATHS)))]
    if imaging == "fourier":
        kinds = ("denoised",)
    drawn = dict(
        imaging=imaging,
        kinds=kinds,
        shape_model=SHAPE_MODELS[int(rng.integers(len(SHAPE_MODELS)))],
        denoiser=DENOISERS[int(rng.integers(len(DENOISERS)))],
        denoise_level=float(rng.uniform(0.0, 1.0)),
        denoise_strength=float(rng.uniform(0.0, 3.0)),
        snr=_log_uniform(rng, 0.15, 20.0),
        dose=(dose, dose),
        phase_contrast=_log_uniform(rng, 0.006, 0.03),
        dqe=float(rng.uniform(0.3, 0.9)),
        defocus_um=(defocus, defocus),
        bfactor=float(rng.uniform(30.0, 400.0)),
        tilt_max=float(rng.uniform(40.0, 70.0)),
        tilt_step=float(rng.uniform(1.0, 4.0)),
        angle_error=float(rng.uniform(0.0, 1.0)),
        shift_error=float(rng.uniform(*base.shift_error_range)),
        defocus_jitter_um=float(rng.uniform(0.0, 0.3)),
        astigmatism_um=float(rng.uniform(0.0, 0.5)),
        ice_fraction=float(rng.uniform(0.45, 0.95)),
        ice_tilt=float(rng.uniform(0.0, 0.4)),
        vacuum_contrast=float(rng.uniform(-1.0, 0.0)),
        crowding=float(rng.uniform(0.5, 2.0)),
        clutter_per_particle=float(rng.uniform(*base.clutter_range)),
        clutter_shell_fraction=float(rng.uniform(0.0, 0.4)),
        vesicles_per_volume=float(rng.uniform(0.0, 8.0)),
        gold_per_volume=float(rng.uniform(0.0, 12.0)),
        gold_density=float(rng.uniform(4.0, 15.0)),
        gain=(gain, gain),
        background_drift=float(rng.uniform(0.0, 0.8)),
        sirt_iterations=int(rng.integers(1, 3)) if rng.random() < 0.25 else 0,
        randomize=False,
    )
    drawn |= _draw_filaments(drawn)
    unknown = sorted(set(base.keep) - set(drawn) - {"randomize"})
    if unknown:
        drawable = sorted(set(drawn) - {"randomize", "kinds"})
        raise ConfigError(f"keep names knobs randomize does not draw: {unknown}; drawn knobs: {', '.join(drawable)}.")
    for name in base.keep:
        drawn.pop(name, None)
    if "imaging" in base.keep:  # the kinds follow the kept path, as given
        drawn.pop("kinds", None)
    return dataclasses.replace(base, **drawn)
