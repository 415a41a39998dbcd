"""Particle and clutter densities as small analytic models, evaluated at exact (sub-voxel) positions.

Every object is a :class:`Shape`: a union (voxel-wise maximum) of soft-edged primitives in its own frame,
in Å. Densities are in protein-contrast units (protein minus ice = 1; RNA-rich ribosomes slightly more).
Labelled classes get similar densities on purpose, so that shape and size, not a per-class intensity
code, tell them apart; unlabelled clutter draws its density from the same range.

Shapes are sized from the catalogue radii (the radius bounds the shape, like the challenge's radii
bound the real complexes): apo-ferritin a hollow cage with channels, beta-amylase a compact tetramer,
beta-galactosidase a four-lobed D2 tetramer, ribosome two dense subunits, thyroglobulin an elongated
dimer, virus-like particle an icosahedral shell with a faint interior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cryopoint.particles import PARTICLE_NAMES, get_particle

__all__ = [
    "Ellipsoid",
    "Shell",
    "Bilayer",
    "Shape",
    "Varied",
    "particle_shape",
    "random_blob",
    "random_shell",
    "vesicle",
    "gold",
    "Tube",
    "filament_segment",
]

_EDGE = 5.0  # Å: width of the soft edge of every primitive (half a voxel at 10 Å)


def _soft_step(x: np.ndarray) -> np.ndarray:
    """Smooth 0→1 step of ``x`` (Å inside the surface) with width ``_EDGE``."""
    return (0.5 + 0.5 * np.tanh(x * (1.0 / _EDGE))).astype(np.float32, copy=False)


def _directions(kind: str) -> np.ndarray:
    """Unit vectors (N, 3) of symmetry axes: "3fold" (cube diagonals) or "5fold" (icosahedron vertices)."""
    if kind == "3fold":
        v = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=np.float64)
    else:
        p = (1 + 5**0.5) / 2
        v = np.array([[0, s1, s2 * p] for s1 in (-1, 1) for s2 in (-1, 1)], dtype=np.float64)
        v = np.concatenate([v, np.roll(v, 1, axis=1), np.roll(v, 2, axis=1)])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _max_alignment(u: tuple[np.ndarray, ...], r: np.ndarray, dirs: np.ndarray, power: float) -> np.ndarray:
    """max over directions of (cos angle between u and dir)_+ ** power; u in Å, r = |u|."""
    inv = 1.0 / np.maximum(r, 1e-3)
    best = np.zeros(np.broadcast_shapes(*(a.shape for a in u)), dtype=np.float32)
    for d in dirs:
        cos = (u[0] * d[0] + u[1] * d[1] + u[2] * d[2]) * inv
        np.maximum(best, np.clip(cos, 0.0, 1.0) ** power, out=best)
    return best


@dataclass(frozen=True)
class Ellipsoid:
    """Solid soft ellipsoid: centre (x, y, z) and semi-axes in Å, density in contrast units."""

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    density: float = 1.0

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        q2 = sum(((u[i] - self.center[i]) / self.axes[i]) ** 2 for i in range(3))
        # Å inside the surface, measured along the shortest semi-axis (exact for spheres)
        return self.density * _soft_step((1.0 - np.sqrt(q2)) * min(self.axes))

    @property
    def extent(self) -> float:
        return float(np.linalg.norm(self.center) + max(self.axes))


@dataclass(frozen=True)
class Shell:
    """Hollow sphere ``r_in < r < r_out`` (Å); optional holes or outward bumps along symmetry axes.

    ``holes`` cut channels (depth 0..1) along ``symmetry`` axes; ``bumps`` (Å) push the outer radius out
    along them, giving a faceted capsid.
    """

    r_in: float
    r_out: float
    density: float = 1.0
    symmetry: str | None = None
    holes: float = 0.0
    bumps: float = 0.0
    power: float = 24.0

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        r = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
        r_out = self.r_out
        align = None
        if self.symmetry is not None:
            align = _max_alignment(u, r, _directions(self.symmetry), self.power)
            r_out = self.r_out + self.bumps * align
        value = _soft_step(r_out - r) * _soft_step(r - self.r_in)
        if align is not None and self.holes:
            value *= 1.0 - self.holes * align
        return self.density * value

    @property
    def extent(self) -> float:
        return self.r_out + self.bumps


@dataclass(frozen=True)
class Bilayer:
    """Membrane of a (slightly elliptical) vesicle: two dense leaflets ``thickness`` Å apart, outer edges."""

    radius: float
    thickness: float
    stretch: tuple[float, float, float] = (1.0, 1.0, 1.0)
    density: float = 1.1

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        r = np.sqrt(sum((u[i] / self.stretch[i]) ** 2 for i in range(3)))
        half = 0.5 * self.thickness - 6.0  # head groups sit ~6 Å inside the bilayer's outer edges
        sigma2 = 2.0 * 5.0**2
        heads = np.exp(-((r - self.radius - half) ** 2) / sigma2) + np.exp(-((r - self.radius + half) ** 2) / sigma2)
        tails = 0.4 * _soft_step(half - np.abs(r - self.radius))
        return (self.density * np.maximum(heads, tails)).astype(np.float32, copy=False)

    @property
    def extent(self) -> float:
        return self.radius * max(self.stretch) + 0.5 * self.thickness + 3 * 5.0


@dataclass(frozen=True)
class Tube:
    """A piece of filament along the local x axis: ``|x| <= half_length``, ``r_in <= radius <= r_out`` (Å).

    Its soft ends are complementary, so pieces laid end to end (``2 * half_length`` apart) add up to one
    seamless filament.
    """

    r_out: float
    r_in: float
    half_length: float
    density: float = 1.0

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        rho = np.sqrt(u[1] ** 2 + u[2] ** 2)
        radial = _soft_step(self.r_out - rho)
        if self.r_in > 0:
            radial = radial * _soft_step(rho - self.r_in)
        return (self.density * radial * _soft_step(self.half_length - np.abs(u[0]))).astype(np.float32, copy=False)

    @property
    def extent(self) -> float:
        return float(np.hypot(self.half_length, self.r_out))


@dataclass(frozen=True)
class Shape:
    """A union of primitives; ``radius`` (Å) is the exclusion radius used for overlap checks."""

    parts: tuple
    radius: float
    label: str | None = None  # catalogue name for labelled particles, None for clutter
    extent: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extent", max(p.extent for p in self.parts) + 3 * _EDGE)

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        out = self.parts[0](u)
        for part in self.parts[1:]:
            out = np.maximum(out, part(u))
        return out


@dataclass(frozen=True)
class Varied:
    """One copy of a shape with its own per-axis size (``stretch``, in its own frame) and density factor.

    The centre stays the origin, so a labelled particle's ground-truth point is unchanged; ``radius`` and
    ``extent`` grow with the largest stretch so overlap checks and rendering boxes stay conservative.
    """

    base: Shape
    stretch: tuple[float, float, float] = (1.0, 1.0, 1.0)
    density: float = 1.0
    radius: float = field(init=False)
    label: str | None = field(init=False)
    extent: float = field(init=False)

    def __post_init__(self) -> None:
        big = max(max(self.stretch), 1.0)
        object.__setattr__(self, "radius", self.base.radius * max(self.stretch))
        object.__setattr__(self, "label", self.base.label)
        object.__setattr__(self, "extent", self.base.extent * big)

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        s = self.stretch
        out = self.base((u[0] * (1.0 / s[0]), u[1] * (1.0 / s[1]), u[2] * (1.0 / s[2])))
        return out if self.density == 1.0 else (out * np.float32(self.density)).astype(np.float32, copy=False)


def _tetra(scale: float) -> list[tuple[float, float, float]]:
    return [(scale * a, scale * b, scale * (a * b)) for a in (-1, 1) for b in (-1, 1)]


def _build(name: str) -> tuple:
    if name == "apo-ferritin":  # 24-mer cage, 120 Å across, 80 Å cavity, channels on the 3-fold axes
        return (Shell(38.0, 57.0, 1.0, symmetry="3fold", holes=0.6, power=40.0),)
    if name == "beta-amylase":  # compact tetramer
        return tuple(Ellipsoid(c, (27.0, 24.0, 22.0), 1.0) for c in _tetra(15.0))
    if name == "beta-galactosidase":  # D2 tetramer: four lobes in a flattened rhombus
        centres = [(36.0, 24.0, 8.0), (-36.0, -24.0, 8.0), (36.0, -24.0, -8.0), (-36.0, 24.0, -8.0)]
        return tuple(Ellipsoid(c, (36.0, 30.0, 28.0), 1.0) for c in centres)
    if name == "ribosome":  # large subunit + small subunit + L7/L12 stalk, RNA-dense
        return (
            Ellipsoid((0.0, 0.0, -30.0), (100.0, 92.0, 78.0), 1.15),
            Ellipsoid((10.0, 0.0, 65.0), (80.0, 60.0, 40.0), 1.15),
            Ellipsoid((-85.0, 50.0, -20.0), (32.0, 20.0, 20.0), 1.1),
        )
    if name == "thyroglobulin":  # elongated, slightly twisted dimer
        return (
            Ellipsoid((50.0, 6.0, 4.0), (60.0, 40.0, 36.0), 1.0),
            Ellipsoid((-50.0, -6.0, -4.0), (60.0, 40.0, 36.0), 1.0),
            Ellipsoid((0.0, 0.0, 0.0), (40.0, 30.0, 28.0), 0.9),
        )
    if name == "virus-like-particle":  # icosahedral capsid with faint packaged interior
        return (
            Shell(100.0, 120.0, 1.0, symmetry="5fold", bumps=10.0, power=12.0),
            Ellipsoid((0.0, 0.0, 0.0), (98.0, 98.0, 98.0), 0.2),
        )
    raise AssertionError(f"no shape model for {name}")


_PARTICLE_SHAPES: dict[str, Shape] = {
    n: Shape(_build(n), radius=get_particle(n).radius, label=n) for n in PARTICLE_NAMES
}


def particle_shape(name: str) -> Shape:
    """The density model of a catalogue particle (``radius`` = catalogue radius in Å)."""
    get_particle(name)  # raises UnknownParticleError with the valid names
    return _PARTICLE_SHAPES[name]


def random_blob(rng: np.random.Generator, radius_range: tuple[float, float] = (45.0, 140.0)) -> Shape:
    """An unlabelled protein-like complex: 1-5 random lobes within a random radius (Å)."""
    radius = rng.uniform(*radius_range)
    density = rng.uniform(0.75, 1.25)
    parts = []
    for _ in range(rng.integers(1, 6)):
        axes = rng.uniform(0.25, 0.5, size=3) * radius
        direction = rng.standard_normal(3)
        offset = direction / np.linalg.norm(direction) * rng.uniform(0.0, radius - axes.max())
        parts.append(Ellipsoid(tuple(offset), tuple(axes), density))
    return Shape(tuple(parts), radius=radius)


def random_shell(rng: np.random.Generator, radius_range: tuple[float, float] = (45.0, 110.0)) -> Shape:
    """An unlabelled hollow complex (look-alike of apo-ferritin and capsids) of random size and wall."""
    r_out = rng.uniform(*radius_range)
    wall = rng.uniform(12.0, 30.0)
    return Shape((Shell(r_out - wall, r_out, rng.uniform(0.75, 1.2)),), radius=r_out)


def vesicle(rng: np.random.Generator, radius_range: tuple[float, float], thickness_range: tuple[float, float]) -> Shape:
    """A membrane vesicle of random radius and bilayer thickness (Å), slightly elliptical."""
    radius = rng.uniform(*radius_range)
    stretch = tuple(float(s) for s in rng.uniform(0.9, 1.1, size=3))
    membrane = Bilayer(radius, rng.uniform(*thickness_range), stretch)
    return Shape((membrane,), radius=membrane.extent)


def filament_segment(microtubule: bool) -> Shape:
    """One piece of a microtubule (hollow, 250 Å across, 13 protofilaments smoothed) or of an actin filament
    (solid, 70 Å across), as long as it is wide; its ``radius`` bounds the piece for overlap checks."""
    r_out, r_in = (125.0, 85.0) if microtubule else (35.0, 0.0)
    tube = Tube(r_out, r_in, half_length=r_out)
    return Shape((tube,), radius=tube.extent)


def gold(rng: np.random.Generator, radius_range: tuple[float, float], density: float) -> Shape:
    """A very dense gold fiducial bead of random radius (Å)."""
    r = rng.uniform(*radius_range)
    return Shape((Ellipsoid((0.0, 0.0, 0.0), (r, r, r), density),), radius=r)
