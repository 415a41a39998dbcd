"""Every knob of the synthetic tomogram generator, and the two presets ``easy`` and ``realistic``.

A :class:`SynthParams` is a frozen dataclass: each field is one physical or sampling knob, documented
below with its unit. Presets are plain instances; :func:`get_preset` returns one with field overrides
applied (unknown names raise a :class:`~cryopoint.errors.ConfigError` that lists the valid ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from cryopoint.errors import ConfigError
from cryopoint.particles import PARTICLE_NAMES

__all__ = ["SynthParams", "PRESETS", "get_preset", "REAL_MEAN_COUNTS", "REAL_SHAPE", "VOXEL_SIZE"]

#: The challenge's true voxel size in Å (the folder name says 10.000).
VOXEL_SIZE: float = 10.012444
#: Full size of a challenge tomogram, (z, y, x) voxels.
REAL_SHAPE: tuple[int, int, int] = (184, 630, 630)
#: Mean per-run counts over the seven challenge training runs (task.md totals / 7), catalogue order.
REAL_MEAN_COUNTS: dict[str, float] = dict(
    zip(PARTICLE_NAMES, (375 / 7, 87 / 7, 112 / 7, 331 / 7, 251 / 7, 113 / 7), strict=True)
)


@dataclass(frozen=True)
class SynthParams:
    """Knobs of the simulator. Lengths in Å unless the name says otherwise.

    Sample:
        voxel_size: Å per voxel (isotropic); ground truth is exact at this size.
        crowding: multiplies the real runs' mean per-class counts (scaled by volume).
        count_spread: log-normal sigma of a per-run, per-class count factor (real runs vary ~2x).
        counts: explicit per-class counts ``{name: n}`` that replace the drawn ones (classes left out get 0).
        ice_fraction: mean fraction of the z extent filled by the ice slab; vacuum above and below.
        ice_tilt: slab thickness change across the field of view, as a fraction of the mean thickness
            (the slow ice-thickness gradient); the slab surfaces are tilted planes.
        vacuum_contrast: density of vacuum relative to ice, in protein-contrast units (protein = +1).
        clutter_per_particle: unlabelled protein-like blobs per labelled particle.
        clutter_shell_fraction: fraction of those blobs that are hollow shells (apo-ferritin look-alikes).
        vesicles_per_volume: membrane vesicles per full-size (184 x 630 x 630) volume, scaled by volume.
        vesicle_radius: (min, max) vesicle radius.
        bilayer_thickness: (min, max) membrane thickness.
        gold_per_volume: dense gold beads per full-size volume, scaled by x-y area.
        gold_radius: (min, max) gold bead radius.
        gold_density: gold bead density in protein-contrast units.
        min_gap: minimum surface-to-surface distance between objects.

    Imaging (see :mod:`cryopoint.synth.imaging` for the model):
        tilt_max: half tilt range in degrees; ±``tilt_max`` about y leaves a missing wedge around kz.
        tilt_step: tilt increment in degrees (angular sampling gaps at high frequency); 0 = continuous.
        voltage_kv: accelerating voltage (kV).
        cs_mm: spherical aberration (mm).
        amplitude_contrast: amplitude contrast fraction.
        defocus_um: (min, max) per-run underfocus in µm.
        bfactor: B-factor envelope (Å²) for damage, drift and alignment errors.
        snr: per-voxel signal-to-noise power ratio of protein before denoising, at ``dose`` = 100 e/Å².
        dose: (min, max) per-run total dose in e/Å²; noise variance scales with 1 / dose.
        denoise_strength: 0 = raw weighted back-projection, 1 = Wiener filter, > 1 = smoother (as real
            denoisers, which also suppress weak high-frequency signal).
        gain: (min, max) per-run output scale: voxel standard deviation of the written volume.
        background_drift: amplitude of a slow additive intensity gradient, in output standard deviations.
    """

    voxel_size: float = VOXEL_SIZE
    crowding: float = 1.0
    count_spread: float = 0.35
    counts: Mapping[str, int] | None = None
    ice_fraction: float = 0.8
    ice_tilt: float = 0.15
    vacuum_contrast: float = -0.6
    clutter_per_particle: float = 1.2
    clutter_shell_fraction: float = 0.15
    vesicles_per_volume: float = 3.0
    vesicle_radius: tuple[float, float] = (250.0, 800.0)
    bilayer_thickness: tuple[float, float] = (25.0, 40.0)
    gold_per_volume: float = 4.0
    gold_radius: tuple[float, float] = (45.0, 70.0)
    gold_density: float = 8.0
    min_gap: float = 5.0
    tilt_max: float = 60.0
    tilt_step: float = 3.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_um: tuple[float, float] = (2.5, 6.0)
    bfactor: float = 150.0
    snr: float = 0.5
    dose: tuple[float, float] = (80.0, 140.0)
    denoise_strength: float = 2.0
    gain: tuple[float, float] = (8e-6, 3e-5)
    background_drift: float = 0.3

    def __post_init__(self) -> None:
        if self.counts is not None:
            unknown = sorted(set(self.counts) - set(PARTICLE_NAMES))
            if unknown:
                raise ConfigError(f"counts has unknown particle names {unknown}; valid: {', '.join(PARTICLE_NAMES)}.")
            if any(int(n) < 0 for n in self.counts.values()):
                raise ConfigError(f"counts must be non-negative integers; got {dict(self.counts)}.")
        if not 0.0 < self.tilt_max <= 90.0:
            raise ConfigError(f"tilt_max must be in (0, 90] degrees; got {self.tilt_max}.")
        if self.snr <= 0 or self.voxel_size <= 0:
            raise ConfigError(f"snr and voxel_size must be positive; got snr={self.snr}, voxel_size={self.voxel_size}.")
        if not 0.0 < self.ice_fraction <= 1.0:
            raise ConfigError(f"ice_fraction must be in (0, 1]; got {self.ice_fraction}.")


#: ``realistic`` (default): the benchmark data; apo-ferritin is hard, clutter and artefacts everywhere.
#: ``easy``: the same physics at high SNR with less clutter; small models learn it in CPU minutes.
PRESETS: dict[str, SynthParams] = {
    "realistic": SynthParams(),
    "easy": SynthParams(
        snr=8.0,
        clutter_per_particle=0.3,
        clutter_shell_fraction=0.1,
        vesicles_per_volume=1.5,
        gold_per_volume=2.0,
        defocus_um=(2.5, 4.0),
        bfactor=80.0,
        background_drift=0.1,
    ),
}


def get_preset(preset: str | SynthParams = "realistic", **overrides) -> SynthParams:
    """Return a preset's parameters with ``overrides`` applied.

    >>> get_preset("easy", snr=1.0).snr
    1.0

    Args:
        preset: ``"easy"``, ``"realistic"`` or a :class:`SynthParams` to start from.
        **overrides: field values to replace (e.g. ``tilt_max=45.0``, ``counts={"ribosome": 3}``).

    Raises:
        ConfigError: unknown preset or field name.
    """
    if isinstance(preset, SynthParams):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ConfigError(f"Unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    fields = {f.name for f in dataclasses.fields(SynthParams)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"Unknown synthetic parameter(s) {unknown}; valid: {', '.join(sorted(fields))}.")
    return dataclasses.replace(base, **overrides)
