"""Every knob of the synthetic tomogram generator, and the two presets ``easy`` and ``realistic``.

A :class:`SynthParams` is a frozen dataclass: each field is one physical or sampling knob, documented
below with its unit. Presets are plain instances; :func:`get_preset` returns one with field overrides
applied (unknown names raise a :class:`~cryopoint.errors.ConfigError` that lists the valid ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryopoint.errors import ConfigError
from cryopoint.particles import PARTICLE_NAMES

__all__ = [
    "SynthParams",
    "PRESETS",
    "get_preset",
    "parse_overrides",
    "REAL_MEAN_COUNTS",
    "REAL_SHAPE",
    "VOXEL_SIZE",
    "IMAGING_PATHS",
    "SHAPE_MODELS",
    "KINDS",
    "DENOISERS",
]

#: Generation paths: the Fourier-space shortcut and the real-space tilt series.
IMAGING_PATHS: tuple[str, ...] = ("fourier", "realspace")
#: Particle shape models: analytic primitives, symmetric subunit assemblies, or a per-object mix.
SHAPE_MODELS: tuple[str, ...] = ("analytic", "assembly", "mixed")
#: Reconstruction names the simulator can write (challenge spelling; see :mod:`cryopoint.synth.looks`).
KINDS: tuple[str, ...] = ("denoised", "wbp", "ctfdeconvolved")
#: How the ``denoised`` kind is made from the raw reconstruction.
DENOISERS: tuple[str, ...] = ("none", "gaussian", "tv", "wiener")

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
        filaments_per_volume: straight cytoskeletal filaments per full-size volume, scaled by x-y area (0 = none,
            as in the challenge's purified samples; cells are full of them): microtubules (hollow tubes 250 Å
            across) with probability ``microtubule_fraction``, else actin (solid, 70 Å across), lying roughly
            in the slab's plane and running through the volume. Unlabelled; particles keep clear of them.
        microtubule_fraction: share of filaments that are microtubules.
        gold_radius: (min, max) gold bead radius.
        gold_density: gold bead density in protein-contrast units.
        min_gap: minimum surface-to-surface distance between objects.
        particle_scale: (min, max) per-particle size factor of labelled particles, log-uniform (1, 1 = the
            catalogue size): complexes look larger or smaller in other maps, simulators and reconstructions.
        particle_aspect: per-axis stretch of labelled particles: each axis of the particle's own frame is
            scaled by ``exp(U(-a, a))`` on top of ``particle_scale`` (0 = the model's own proportions).
        particle_density: (min, max) per-object density factor, log-uniform, for labelled particles **and**
            clutter alike (so darkness never names a class): RNA-rich or heavily stained complexes are darker.
        class_designs: probability, per class and run, that the class is drawn from a random design of its
            mass and kind (:mod:`cryopoint.synth.designs`) shared by all its particles in the run, in place of
            the shape model (0 = never): generators disagree on what a complex looks like, and a detector
            should not name particles by one generator's picture of them.
        design_volume_range: (min, max) log-uniform factor on a design's protein volume (the analytic model's).
            Wide ranges let classes of different mass overlap in size (beta-galactosidase and thyroglobulin
            differ by about 1.4x in mass), narrow ones keep heavier classes larger.
        particle_maps: ``{name: map file}``: particles of these classes drawn from a density map
            (:mod:`cryopoint.synth.atomic`, e.g. built from a PDB atomic model) instead of the shape model.
        class_density: ``{name: factor}``: every particle of these classes this many times as dark, on top of
            the rest (None = the shapes' own densities). Other simulators weigh classes differently: those
            that build density from atomic models make RNA-rich ribosomes darker relative to the proteins.

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

    Generation path and looks (see :mod:`cryopoint.synth.realspace` and :mod:`cryopoint.synth.looks`):
        imaging: ``"fourier"`` (the Fourier-space shortcut, :mod:`cryopoint.synth.imaging`; noise set by
            ``snr``) or ``"realspace"`` (tilt series projected in real space, per-tilt CTF, shot noise from
            ``dose``, weighted back-projection; ``snr`` and ``denoise_strength`` are not used).
        shape_model: ``"analytic"`` (:mod:`cryopoint.synth.shapes`), ``"assembly"`` (symmetric subunit
            assemblies, :mod:`cryopoint.synth.assembly`, clutter from the same generator) or ``"mixed"``
            (each particle and clutter object picks one of the two at random).
        kinds: reconstruction names written per run (``denoised``, ``wbp``, ``ctfdeconvolved``); the first is
            what :func:`~cryopoint.synth.simulate.simulate_run` returns.
        denoiser: how the ``denoised`` kind is made from the raw reconstruction: ``none``, ``gaussian``,
            ``tv`` (edge-preserving) or ``wiener`` (CTF deconvolution + low-pass).
        denoise_level: strength of ``denoiser`` from 0 (light) to 1 (heavy).
        defocus_jitter_um: per-tilt defocus error sd (µm; real-space path).
        astigmatism_um: defocus difference between astigmatic axes (µm; real-space path).
        angle_error: per-tilt angle error sd (degrees; real-space path).
        shift_error: per-tilt residual image shift sd (Å; real-space path).
        shift_error_range: (min, max) Å, uniform, of the per-run ``shift_error`` the ``randomized`` preset draws
            (real-space runs only). Residual alignment error varies a lot between tilt series: tens of Å in a
            poorly aligned series at 10 Å voxels, a blur and streaks a detector should still see particles through.
        clutter_range: (min, max), uniform, of the per-run ``clutter_per_particle`` the ``randomized`` preset
            draws. Crowded specimens (a cell, a dense lysate) hold tens of unlabelled proteins per labelled one,
            many of a labelled class's size.
        phase_contrast: image contrast per voxel of projected protein (real-space path); with ``dose`` and
            ``dqe`` it sets the noise level.
        dqe: detector quantum efficiency (real-space path).
        sirt_iterations: SIRT-like refinement passes after WBP (real-space path).
        randomize: draw every imaging and sample knob per run from the documented wide ranges
            (:mod:`cryopoint.synth.randomize`); the fields above are then only the starting point.
        keep: knobs ``randomize`` leaves at the values given here (e.g. ``("shape_model",)`` with
            ``shape_model="analytic"`` for a corpus of one particle model); the others are still drawn.
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
    filaments_per_volume: float = 0.0
    microtubule_fraction: float = 0.5
    min_gap: float = 5.0
    particle_scale: tuple[float, float] = (1.0, 1.0)
    particle_aspect: float = 0.0
    particle_density: tuple[float, float] = (1.0, 1.0)
    class_designs: float = 0.0
    design_volume_range: tuple[float, float] = (0.7, 1.4)
    class_density: Mapping[str, float] | None = None
    particle_maps: Mapping[str, str] | None = None
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
    imaging: str = "fourier"
    shape_model: str = "analytic"
    kinds: tuple[str, ...] = ("denoised",)
    denoiser: str = "none"
    denoise_level: float = 0.5
    defocus_jitter_um: float = 0.1
    astigmatism_um: float = 0.1
    angle_error: float = 0.3
    shift_error: float = 3.0
    shift_error_range: tuple[float, float] = (0.0, 10.0)
    clutter_range: tuple[float, float] = (0.2, 3.0)
    phase_contrast: float = 0.015
    dqe: float = 0.5
    sirt_iterations: int = 0
    randomize: bool = False
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.counts is not None:
            unknown = sorted(set(self.counts) - set(PARTICLE_NAMES))
            if unknown:
                raise ConfigError(f"counts has unknown particle names {unknown}; valid: {', '.join(PARTICLE_NAMES)}.")
            if any(int(n) < 0 for n in self.counts.values()):
                raise ConfigError(f"counts must be non-negative integers; got {dict(self.counts)}.")
        if self.class_density is not None:
            unknown = sorted(set(self.class_density) - set(PARTICLE_NAMES))
            if unknown or not all(float(f) > 0 for f in self.class_density.values()):
                raise ConfigError(
                    f"class_density must map particle names ({', '.join(PARTICLE_NAMES)}) to positive factors; "
                    f"got {dict(self.class_density)}."
                )
        if self.filaments_per_volume < 0 or not 0.0 <= self.microtubule_fraction <= 1.0:
            raise ConfigError(
                "filaments_per_volume must be zero or more and microtubule_fraction in [0, 1]; got "
                f"{self.filaments_per_volume} and {self.microtubule_fraction}."
            )
        if self.particle_maps is not None:
            unknown = sorted(set(self.particle_maps) - set(PARTICLE_NAMES))
            if unknown:
                raise ConfigError(
                    f"particle_maps has unknown particle names {unknown}; valid: {', '.join(PARTICLE_NAMES)}."
                )
        if not 0.0 < self.tilt_max <= 90.0:
            raise ConfigError(f"tilt_max must be in (0, 90] degrees; got {self.tilt_max}.")
        if self.snr <= 0 or self.voxel_size <= 0:
            raise ConfigError(f"snr and voxel_size must be positive; got snr={self.snr}, voxel_size={self.voxel_size}.")
        for name in ("particle_scale", "particle_density", "design_volume_range"):
            value = tuple(float(v) for v in getattr(self, name))  # YAML and the CLI give lists
            object.__setattr__(self, name, value)
            if len(value) != 2 or not 0.0 < value[0] <= value[1]:
                raise ConfigError(
                    f"{name} must be a (min, max) range of positive factors with min <= max; got {value}."
                )
        lo_hi = tuple(float(v) for v in self.shift_error_range)
        object.__setattr__(self, "shift_error_range", lo_hi)
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1]:
            raise ConfigError(f"shift_error_range must be a (min, max) range in Å with 0 <= min <= max; got {lo_hi}.")
        lo_hi = tuple(float(v) for v in self.clutter_range)
        object.__setattr__(self, "clutter_range", lo_hi)
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1]:
            raise ConfigError(
                f"clutter_range must be a (min, max) range of unlabelled objects per labelled particle with "
                f"0 <= min <= max; got {lo_hi}."
            )
        if not 0.0 <= self.particle_aspect <= 0.5:
            raise ConfigError(
                f"particle_aspect must be in [0, 0.5] (a log stretch per axis); got {self.particle_aspect}."
            )
        if not 0.0 <= self.class_designs <= 1.0:
            raise ConfigError(
                f"class_designs must be a probability in [0, 1] (per class and run); got {self.class_designs}."
            )
        if not 0.0 < self.ice_fraction <= 1.0:
            raise ConfigError(f"ice_fraction must be in (0, 1]; got {self.ice_fraction}.")
        choices = {
            "imaging": (self.imaging, IMAGING_PATHS),
            "shape_model": (self.shape_model, SHAPE_MODELS),
            "denoiser": (self.denoiser, DENOISERS),
        }
        for name, (value, options) in choices.items():
            if value not in options:
                raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}.")
        object.__setattr__(self, "keep", (self.keep,) if isinstance(self.keep, str) else tuple(self.keep))
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad or len(set(kinds)) != len(kinds):
            raise ConfigError(
                f"kinds must be distinct names from {', '.join(KINDS)} (isonetcorrected is not modelled); got {kinds}."
            )
        if self.imaging == "fourier" and kinds != ("denoised",):
            raise ConfigError(
                "The Fourier path writes only the 'denoised' kind (its Wiener look; denoise_strength=0 gives raw "
                f"WBP); got kinds={kinds}. Use imaging='realspace' for wbp / ctfdeconvolved / denoised."
            )
        if self.phase_contrast <= 0 or not 0 < self.dqe <= 1 or not 0 <= self.denoise_level <= 1:
            raise ConfigError(
                "phase_contrast must be positive, dqe in (0, 1] and denoise_level in [0, 1]; got "
                f"{self.phase_contrast}, {self.dqe}, {self.denoise_level}."
            )


#: ``realistic`` (default): the benchmark data; apo-ferritin is hard, clutter and artefacts everywhere.
#: ``easy``: the same physics at high SNR with less clutter; small models learn it in CPU minutes.
#: ``randomized``: every run draws its imaging path, shape model, look and every imaging and sample knob
#: from wide ranges (:mod:`cryopoint.synth.randomize`): the corpus for models meant to generalise.
#: ``randomized_varied``: ``randomized`` plus per-particle variation: every labelled particle gets its own size
#: (x0.88-1.12), a per-axis stretch (up to x1.1) and every object its own density (x0.7-1.8, clutter too), so
#: neither one exact template nor one darkness per class is something a model can learn.
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
    "randomized": SynthParams(randomize=True),
    "randomized_varied": SynthParams(
        randomize=True, particle_scale=(0.88, 1.12), particle_aspect=0.1, particle_density=(0.7, 1.8)
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


def parse_overrides(items: Iterable[str]) -> dict[str, object]:
    """``FIELD=VALUE`` strings (``make_synthetic --set``, a recipe's corpus) -> :class:`SynthParams` overrides.

    A value is read as a Python literal where it is one (``0.3``, ``(2, 3)``, ``{'ribosome': 3}``), else as
    YAML (``[shape_model]``, ``tv``, ``true``), so a list of knob names needs no quotes. Field names are checked
    here; values are checked when the overrides are applied (:func:`get_preset`).

    >>> parse_overrides(["snr=0.3", "keep=[shape_model]", "denoiser=tv", "defocus_um=(2, 3)"])
    {'snr': 0.3, 'keep': ['shape_model'], 'denoiser': 'tv', 'defocus_um': (2, 3)}

    Raises:
        ConfigError: an item without ``=``, or a name that is not a :class:`SynthParams` field.
    """
    import ast

    import yaml

    fields = {f.name for f in dataclasses.fields(SynthParams)}
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Simulator override {item!r} must be FIELD=VALUE (a SynthParams field), e.g. snr=0.3.")
        if key not in fields:
            raise ConfigError(f"Unknown synthetic parameter {key!r}; valid: {', '.join(sorted(fields))}.")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            try:
                out[key] = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ConfigError(f"Simulator override {item!r}: cannot read the value ({err}).") from err
    return out
