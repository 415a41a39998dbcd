"""Random class designs: a particle class drawn as a new random shape that keeps only its mass and its kind.

Every generator, ours included, draws a complex the way its author pictures it: our analytic model draws
thyroglobulin as an elongated dimer and beta-galactosidase as four lobes; another generator may draw both as
compact blobs, or thyroglobulin as a hollow body. A detector trained on one picture names particles by that
picture's details. A *class design* replaces a class's shape, for one whole run, by a shape drawn at random
from a generic family that keeps only what every picture of the complex shares:

* its **protein volume** (mass): the analytic model's volume at half density, times a log-uniform factor
  in ``SynthParams.design_volume_range`` (``VOLUME_RANGE`` by default). Heavier complexes are larger on
  average; with the default range beta-galactosidase and thyroglobulin (about 1.4x apart) overlap in size,
  with a range narrower than their mass ratio every draw keeps the heavier class larger;
* its **kind**: the two cages (apo-ferritin, virus-like particle) stay hollow shells (random wall, radius set
  by the volume, optional channels or bumps on symmetry axes, a faint interior for the capsid); every other
  class is a solid union of 1-6 soft ellipsoidal lobes inside a random envelope (aspect ratios from 1:1:1 to
  about 1:0.4:0.4), so elongation, lobe count and arrangement are not a class's signature;
* its **density**: the analytic model's (RNA-rich ribosomes denser than protein).

A design's lobes are shifted so that its centre of mass is the origin: the ground-truth point stays the
particle's centroid. All particles of a class in a run share the run's design (one molecule per class per
sample, as in a real sample); designs differ between runs.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from cryopoint.particles import get_particle
from cryopoint.synth.params import SynthParams
from cryopoint.synth.shapes import Ellipsoid, Shape, Shell, particle_shape

__all__ = ["HOLLOW_CLASSES", "VOLUME_RANGE", "class_design", "shape_volume", "center_of_mass"]

HOLLOW_CLASSES: frozenset[str] = frozenset({"apo-ferritin", "virus-like-particle"})
VOLUME_RANGE: tuple[float, float] = SynthParams.design_volume_range  # the default's one home is SynthParams
_GRID = 5.0  # Å: spacing of the grid volumes and centres of mass are measured on


def _grid(shape: Shape, spacing: float = _GRID) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Density of ``shape`` on a cubic grid covering its extent, and the grid's coordinates (x, y, z) in Å."""
    n = int(np.ceil(shape.extent / spacing))
    axis = np.arange(-n, n + 1, dtype=np.float32) * np.float32(spacing)
    u = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    return shape(tuple(u)), tuple(u)


def _peak_density(shape: Shape) -> float:
    return float(max(getattr(p, "density", 1.0) for p in shape.parts))


def shape_volume(shape: Shape, spacing: float = _GRID) -> float:
    """Volume (Å³) where ``shape``'s density is above half its largest part's density."""
    density, _ = _grid(shape, spacing)
    return float(np.count_nonzero(density > 0.5 * _peak_density(shape))) * spacing**3


def center_of_mass(shape: Shape, spacing: float = _GRID) -> np.ndarray:
    """Density-weighted centre (x, y, z) of ``shape`` in Å, in its own frame."""
    density, u = _grid(shape, spacing)
    total = float(density.sum())
    return np.array([float((density * np.broadcast_to(a, density.shape)).sum()) / total for a in u])


@cache
def _reference(name: str) -> tuple[float, float]:
    """The analytic model's protein volume (Å³) and density for class ``name``."""
    model = particle_shape(name)
    return shape_volume(model), _peak_density(model)


def _random_axes(rng: np.random.Generator) -> np.ndarray:
    """Envelope semi-axes of unit product (x, y, z): one long axis and two shorter ones, random order."""
    ratios = np.array([1.0, rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0)])
    rng.shuffle(ratios)
    return ratios / np.prod(ratios) ** (1.0 / 3.0)


def _solid(rng: np.random.Generator, density: float) -> list[Ellipsoid]:
    """1-6 lobes inside a unit-volume-scale envelope (lengths in arbitrary units, rescaled later)."""
    envelope = _random_axes(rng)
    lobes = []
    for _ in range(int(rng.integers(1, 7))):
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        centre = envelope * direction * rng.uniform(0.0, 0.6)
        axes = envelope * rng.uniform(0.35, 0.7, size=3)
        lobes.append(Ellipsoid(tuple(float(c) for c in centre), tuple(float(a) for a in axes), density))
    return lobes


def _scaled(parts: list[Ellipsoid], factor: float, shift: np.ndarray) -> tuple[Ellipsoid, ...]:
    return tuple(
        Ellipsoid(
            tuple(float(c) for c in (np.asarray(p.center) * factor - shift)),
            tuple(float(a) * factor for a in p.axes),
            p.density,
        )
        for p in parts
    )


def _hollow(name: str, rng: np.random.Generator, volume: float, density: float) -> tuple:
    """A shell of random wall fraction whose material volume is ``volume``, plus a faint core for a capsid."""
    wall = rng.uniform(0.15, 0.4)  # wall thickness / outer radius
    r_out = float((volume / (4.0 / 3.0 * np.pi * (1.0 - (1.0 - wall) ** 3))) ** (1.0 / 3.0))
    r_in = r_out * (1.0 - wall)
    symmetry = None if rng.random() < 0.4 else ("3fold" if rng.random() < 0.5 else "5fold")
    holes = float(rng.uniform(0.0, 0.7)) if symmetry else 0.0
    bumps = float(rng.uniform(0.0, 0.1) * r_out) if symmetry else 0.0
    parts: tuple = (Shell(r_in, r_out, density, symmetry=symmetry, holes=holes, bumps=bumps),)
    if name == "virus-like-particle":
        parts += (Ellipsoid((0.0, 0.0, 0.0), (r_in - 2.0,) * 3, density * float(rng.uniform(0.0, 0.3))),)
    return parts


def class_design(name: str, rng: np.random.Generator, volume_range: tuple[float, float] = VOLUME_RANGE) -> Shape:
    """A random design of catalogue class ``name`` (see the module docstring); ``radius`` bounds its extent.

    ``volume_range`` is the (min, max) log-uniform factor on the analytic model's protein volume.

    >>> s = class_design("thyroglobulin", np.random.default_rng(0))
    >>> s.label, bool(0.6 < shape_volume(s) / shape_volume(particle_shape("thyroglobulin")) < 1.6)
    ('thyroglobulin', True)
    """
    get_particle(name)  # raises UnknownParticleError with the valid names
    lo, hi = (float(v) for v in volume_range)
    if not 0.0 < lo <= hi:
        raise ValueError(f"volume_range must be a (min, max) range of positive factors; got {volume_range}.")
    ref_volume, density = _reference(name)
    volume = ref_volume * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if name in HOLLOW_CLASSES:
        parts = _hollow(name, rng, volume, density)
    else:
        lobes = _solid(rng, density)
        # Measure at a resolvable size (100 Å across the lobes themselves: a Shape's ``extent`` adds a fixed
        # margin that would dwarf unit-sized lobes), scale to the volume, then correct once on the sized shape.
        factor = 100.0 / max(max(p.extent for p in lobes), 1e-6)
        for _ in range(2):
            probe = Shape(_scaled(lobes, factor, np.zeros(3)), radius=1.0)
            factor *= (volume / max(shape_volume(probe, spacing=2.5), 1.0)) ** (1.0 / 3.0)
        sized = Shape(_scaled(lobes, factor, np.zeros(3)), radius=1.0)
        parts = _scaled(lobes, factor, center_of_mass(sized))
    radius = max(p.extent for p in parts)
    return Shape(parts, radius=float(radius), label=name)
