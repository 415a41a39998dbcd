"""Particles as symmetric assemblies of subunits: a second shape model, independent of :mod:`.shapes`.

:mod:`cryopoint.synth.shapes` draws every particle as a few tanh-edged ellipsoids and shells. This module
builds the same catalogue from what the complexes are made of: copies of a subunit placed by the protein's
point group, each subunit a handful of Gaussian "domains". It shares only size (catalogue radius), mass
split and symmetry with :mod:`.shapes`, so a detector trained on one model can be tested on the other.

Primitive (:class:`Domains`): ``N`` isotropic Gaussian blobs with centres ``c_i`` (Å), widths ``s_i`` (Å)
and weights ``w_i``, turned into a density by soft saturation::

    density * (1 - exp(-sum_i w_i exp(-|u - c_i|^2 / (2 s_i^2))))

so overlapping domains merge into one body of density ``density`` instead of piling up, and edges are
Gaussian, not tanh. A lone domain of weight ``3`` (the default) peaks at 0.95 x ``density`` and has its
half-density surface at ``1.71 s`` from its centre (``_HALF``): model sizes below are set with that.

Densities are in protein-contrast units (protein minus ice = 1, RNA-rich ribosome 1.2); all labelled
proteins get 1.0 so that shape and size, not intensity, tell them apart. Models (outer half-density
radius ≈ catalogue radius, which bounds each particle):

* apo-ferritin (60 Å): octahedral (O) cage of 24 four-helix-bundle subunits, each a line of four domains
  lying tangentially on a shell of radius 50 Å, paired across the 2-fold axes; cavity ≈ 80 Å across,
  small channels on the 3- and 4-fold axes.
* beta-amylase (65 Å): compact D2 tetramer, subunits of three domains (barrel + two smaller).
* beta-galactosidase (90 Å): D2 tetramer of five-domain subunits forming four lobes in a flattened
  rhombus, with a less dense central channel.
* thyroglobulin (130 Å): C2 dimer of two antiparallel chains of nine domains wound a quarter turn around
  each other (a twisted ribbon), ≈ 250 Å long and ≈ 80 x 45 Å across.
* virus-like-particle (135 Å): icosahedral (I) T=3-like capsid, 12 pentamers on the 5-fold and 20
  hexamers on the 3-fold axes (180 two-domain subunits) on a shell of radius ≈ 116 Å, faint interior
  (0.18 at the centre).
* ribosome (150 Å, density 1.2): no symmetry; large (≈ 64 % of the mass) and small subunit, each a fixed
  cluster of random domains inside an ellipsoid, with an L7/L12-like stalk and an inter-subunit cleft.

Per particle (``jitter=True``, drawn from ``rng`` only): size factor 0.94-1.06 on all lengths (``radius``
included), density x 0.96-1.04, and conformational jitter applied independently to every copy of the
subunit (rigid shift ≈ 1.5 Å per copy, ≈ 2 Å per domain, domain width ± 4 %), so particles are only
approximately symmetric, like flexible complexes in a tomogram; the ribosome's small subunit also
rotates by a few degrees (ratchet). ``jitter=False`` gives the exact symmetric model. The ribosome
template is drawn once from a fixed seed (all ribosomes are the same molecule; only the jitter differs).

:func:`random_assembly` draws unlabelled clutter from the same generator (random point group, subunit,
size, hollow or solid), so "a symmetric assembly of about this size" is not enough to name a class.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from cryopoint.particles import get_particle
from cryopoint.synth.shapes import Shape

__all__ = ["Domains", "point_group", "assembly_particle", "random_assembly"]

_WEIGHT = 3.0  # default domain weight: a lone domain peaks at 1 - e^-3 = 0.95 x density
_HALF = float(np.sqrt(2.0 * np.log(_WEIGHT / np.log(2.0))))  # half-density radius of a lone domain, in sigmas
_CUT = 1e-3  # subtracted from every domain term so it ends at a finite reach (density changes by ~0.1 %)
_EXTENT_EPS = 0.01  # ``extent`` is where every domain's term has fallen below this
_DIRECT_MAX = 30_000  # points x domains up to which the dense evaluation beats building a k-d tree
_PHI = (1.0 + 5.0**0.5) / 2.0


# --------------------------------------------------------------------------------------------------------
# primitive
# --------------------------------------------------------------------------------------------------------


class Domains:
    """Soft-saturated sum of isotropic Gaussian domains (one part of a :class:`~.shapes.Shape`).

    Args:
        centers: (N, 3) domain centres in Å, in the particle frame (x, y, z).
        sigmas: (N,) Gaussian widths in Å.
        weights: (N,) weights; ``1 - exp(-w)`` is a lone domain's peak (x ``density``), so ``w`` < 1 gives
            faint material (a capsid's packaged interior) and ``w`` ≥ 3 solid protein.
        density: saturated density in protein-contrast units.
    """

    def __init__(self, centers: np.ndarray, sigmas: np.ndarray, weights: np.ndarray, density: float) -> None:
        self.centers = np.array(centers, dtype=np.float64).reshape(-1, 3)
        self.sigmas = np.array(sigmas, dtype=np.float64).reshape(-1)
        self.weights = np.array(weights, dtype=np.float64).reshape(-1)
        if not (len(self.centers) == len(self.sigmas) == len(self.weights)) or len(self.sigmas) == 0:
            raise ValueError("centers, sigmas and weights need the same (non-zero) length")
        if np.any(self.sigmas <= 0) or np.any(self.weights <= 0):
            raise ValueError("sigmas and weights must be positive")
        self.density = float(density)
        for a in (self.centers, self.sigmas, self.weights):
            a.setflags(write=False)  # shapes are shared between placements: keep them immutable
        # distance (Å) beyond which a domain's term is < _CUT (evaluation) or < _EXTENT_EPS (extent)
        self._reach = self.sigmas * np.sqrt(2.0 * np.log(np.maximum(self.weights / _CUT, 1.0 + 1e-9)))
        far = self.sigmas * np.sqrt(2.0 * np.log(np.maximum(self.weights / _EXTENT_EPS, 1.0)))
        self._extent = float(np.max(np.linalg.norm(self.centers, axis=1) + far))

    def __repr__(self) -> str:
        return f"Domains(n={len(self.sigmas)}, density={self.density:.3g}, extent={self._extent:.1f})"

    @property
    def extent(self) -> float:
        """Radius (Å) around the particle centre outside which the density is negligible (< 1 %)."""
        return self._extent

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        """Density at positions ``u = (x, y, z)`` (Å, broadcastable arrays), float32 of their broadcast shape."""
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float32) for a in u))
        shape = arrays[0].shape
        pts = np.stack([a.reshape(-1) for a in arrays], axis=1)
        total = self._field(pts) if len(pts) else np.zeros(0)
        return (self.density * -np.expm1(-total)).astype(np.float32).reshape(shape)

    def _field(self, pts: np.ndarray) -> np.ndarray:
        """``sum_i max(w_i exp(-d_i^2 / 2 s_i^2) - _CUT, 0)`` at ``pts`` (P, 3).

        Subtracting ``_CUT`` makes every term vanish continuously at the domain's reach, so only domains within
        reach of a point need evaluating (k-d tree path) and both paths give the same density.
        """
        n = len(self.sigmas)
        inv2s2 = 0.5 / self.sigmas**2
        if len(pts) * n <= _DIRECT_MAX:
            c = self.centers.astype(np.float32)
            d2 = ((pts[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
            return np.maximum(self.weights * np.exp(-d2 * inv2s2) - _CUT, 0.0).sum(axis=1)
        total = np.zeros(len(pts))
        tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)
        # group domains by reach (factor-1.3 bins) so a few wide domains (an interior) do not make the
        # search radius of the many narrow ones cover the whole box
        bins = np.ceil(np.log(self._reach) / np.log(1.3)).astype(int)
        for b in np.unique(bins):
            sel = np.flatnonzero(bins == b)
            pairs = tree.sparse_distance_matrix(
                cKDTree(self.centers[sel]), float(self._reach[sel].max()), output_type="ndarray"
            )
            j = sel[pairs["j"]]
            terms = np.maximum(self.weights[j] * np.exp(-(pairs["v"] ** 2) * inv2s2[j]) - _CUT, 0.0)
            total += np.bincount(pairs["i"], terms, len(pts))
        return total


# --------------------------------------------------------------------------------------------------------
# point groups
# --------------------------------------------------------------------------------------------------------


def _axis_rotation(axis, angle: float) -> np.ndarray:
    """Rotation matrix by ``angle`` (rad) about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    x, y, z = a / np.linalg.norm(a)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _closure(generators: list[np.ndarray]) -> np.ndarray:
    """All products of ``generators`` (the group they generate), identity first, in breadth-first order."""
    elements = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in generators:
                m = h @ g
                if not any(np.abs(m - e).max() < 1e-8 for e in elements):
                    elements.append(m)
                    new.append(m)
        frontier = new
    return np.array(elements)


@lru_cache(maxsize=64)  # bounded: any Cn / Dn name is valid
def _point_group(name: str) -> np.ndarray:
    match = re.fullmatch(r"([CD])([1-9][0-9]*)|([TOI])", name)
    if match is None:
        raise ValueError(f"Unknown point group {name!r}; use Cn, Dn (n >= 1), T, O or I.")
    if match.group(3) is None:
        n = int(match.group(2))
        gens = [_axis_rotation((0, 0, 1), 2 * np.pi / n)]  # n-fold axis along z
        if match.group(1) == "D":
            gens.append(_axis_rotation((1, 0, 0), np.pi))  # 2-fold axes perpendicular, first along x
    elif name == "T":  # 2-fold axes on x, y, z; 3-fold on the cube diagonals
        gens = [_axis_rotation((0, 0, 1), np.pi), _axis_rotation((1, 1, 1), 2 * np.pi / 3)]
    elif name == "O":  # 4-fold axes on x, y, z; 3-fold on the cube diagonals; 2-fold on (1, 1, 0) etc.
        gens = [_axis_rotation((0, 0, 1), np.pi / 2), _axis_rotation((1, 1, 1), 2 * np.pi / 3)]
    else:  # icosahedron with vertices at cyclic permutations of (0, ±1, ±phi): 2-fold on z, 3-fold on (1, 1, 1)
        gens = [
            _axis_rotation((0, 0, 1), np.pi),
            _axis_rotation((1, 1, 1), 2 * np.pi / 3),
            _axis_rotation((0, 1, _PHI), 2 * np.pi / 5),
        ]
    group = _closure(gens)
    group.setflags(write=False)
    return group


def point_group(name: str) -> np.ndarray:
    """Rotation matrices (G, 3, 3) of a point group, identity first.

    ``"Cn"``: n-fold axis along z (order n). ``"Dn"``: plus n 2-fold axes in the xy plane, the first along x
    (order 2n). ``"T"`` (12) and ``"O"`` (24): 2-fold resp. 4-fold axes along x, y, z and 3-fold axes along
    the cube diagonals. ``"I"`` (60): 2-fold axes along x, y, z, 3-fold along (1, 1, 1), 5-fold along
    (0, 1, phi) (icosahedron vertices at the cyclic permutations of (0, ±1, ±phi)).

    Raises:
        ValueError: an unknown name.
    """
    return _point_group(name).copy()


# --------------------------------------------------------------------------------------------------------
# assembling subunits
# --------------------------------------------------------------------------------------------------------


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _orbit(group: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Copies of a subunit's domain centres (N, 3) under every group element: (G, N, 3)."""
    return np.einsum("gij,nj->gni", group, centers)


def _assemble(
    group: np.ndarray,
    centers: np.ndarray,
    sigmas: np.ndarray,
    weights: np.ndarray | None,
    rng: np.random.Generator | None,
    rigid: float = 1.5,
    domain: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One subunit (domains in Å) copied by ``group``; with ``rng``, each copy jittered independently.

    Jitter: a rigid shift of the whole copy (sd ``rigid`` Å per axis), a shift of each domain (sd ``domain``
    Å) and a ± 4 % change of each domain's width. Returns centres (G*N, 3), sigmas and weights (G*N,).
    """
    g, n = len(group), len(centers)
    weights = np.full(n, _WEIGHT) if weights is None else np.asarray(weights, dtype=np.float64)
    copies = np.broadcast_to(centers, (g, n, 3)).copy()
    widths = np.broadcast_to(sigmas, (g, n)).copy()
    if rng is not None:
        copies += rng.normal(0.0, rigid, (g, 1, 3)) + rng.normal(0.0, domain, (g, n, 3))
        widths *= rng.uniform(0.96, 1.04, (g, n))
    placed = np.einsum("gij,gnj->gni", group, copies)
    return placed.reshape(-1, 3), widths.reshape(-1), np.tile(weights, g)


def _on_sphere(radius: float, center_dir, tangent, offsets) -> np.ndarray:
    """Points at arc offsets (Å) from ``center_dir`` along ``tangent``, pushed onto a sphere of ``radius``."""
    c, t = _unit(center_dir), _unit(tangent)
    return radius * _unit(c[None, :] + np.asarray(offsets, dtype=np.float64)[:, None] / radius * t[None, :])


def _ferritin(rng):
    # a subunit dimer sits on each rhombic face of the O cage, centred on a 2-fold axis (1, 1, 0); the
    # bundles run along the face's long diagonal (1, -1, 0) (from 4-fold to 4-fold), side by side along z
    r_shell = 50.0
    face = _unit((1.0, 1.0, 0.0))
    centre = r_shell * _unit(face + (12.5 / r_shell) * np.array([0.0, 0.0, 1.0]))
    line = _on_sphere(r_shell, centre, (1.0, -1.0, 0.0), [-21.0, -7.0, 7.0, 21.0])
    sigmas = np.array([6.2, 6.6, 6.6, 6.2])
    return _assemble(point_group("O"), line, sigmas, None, rng)


def _beta_amylase(rng):
    domains = np.array([[24.0, 20.0, 14.0], [8.0, 30.0, 28.0], [34.0, 4.0, 30.0]])  # barrel + two smaller
    return _assemble(point_group("D2"), domains, np.array([12.5, 9.0, 8.5]), None, rng)


def _beta_galactosidase(rng):
    # five domains per subunit around a lobe centred near (36, 24, 8); the D2 copies put the four lobes
    # in a flattened rhombus and keep the domains >= 40 Å from the centre, leaving a low-density channel
    domains = np.array(
        [[44.0, 28.0, 10.0], [28.0, 44.0, -4.0], [56.0, 12.0, 20.0], [24.0, 22.0, 30.0], [58.0, 36.0, -8.0]]
    )
    return _assemble(point_group("D2"), domains, np.array([13.0, 11.0, 10.0, 10.0, 9.0]), None, rng)


def _thyroglobulin(rng):
    # two chains of nine domains, x = -104..104 Å, wound a quarter turn around the long (x) axis at 19 Å
    # from it: a twisted ribbon. The twist angle is odd in x, so the C2 copy (about z) is the partner
    # strand of the same ribbon, antiparallel, rather than a second, separate rod
    x = np.linspace(-104.0, 104.0, 9)
    twist = (np.pi / 2) * x / 208.0
    chain = np.stack([x, 19.0 * np.cos(twist), 19.0 * np.sin(twist)], 1)
    sigmas = np.array([10.0, 11.0, 11.5, 12.0, 12.5, 13.0, 13.0, 13.5, 11.5])  # larger C-terminal domains
    return _assemble(point_group("C2"), chain, sigmas, None, rng)


def _vlp(rng):
    # asymmetric unit of a T=3-like capsid: one pentamer subunit (near a 5-fold axis) and two hexamer
    # subunits 60° apart around a 3-fold axis; the 60 rotations of I make 12 pentamers and 20 hexamers.
    # Each subunit: a wall domain at r = 116 Å and a small outward protrusion (outer radius ~ 135 Å).
    a5, a3 = _unit((0.0, 1.0, _PHI)), _unit((1.0, 1.0, 1.0))
    subunits = []
    for axis, ring, angles in ((a5, 22.0, (0.3,)), (a3, 26.0, (0.3, 0.3 + np.pi / 3))):
        perp = _unit(np.cross(axis, (0.0, 0.0, 1.0)))
        for angle in angles:
            spin = _axis_rotation(axis, angle)
            wall = _on_sphere(116.0, axis, spin @ perp, [ring])[0]
            bump = _on_sphere(125.0, axis, spin @ perp, [ring + 5.0])[0]
            subunits.append((wall, bump))
    centers = np.array([p for s in subunits for p in s])
    sigmas = np.tile([10.0, 5.5], len(subunits))
    weights = np.tile([_WEIGHT, 2.0], len(subunits))
    c, s, w = _assemble(point_group("I"), centers, sigmas, weights, rng)
    # packaged interior: one wide, faint domain (peak 0.18 x density)
    return np.vstack([c, [[0.0, 0.0, 0.0]]]), np.append(s, 45.0), np.append(w, 0.2)


def _in_ellipsoid(rng: np.random.Generator, n: int, center, axes, keep) -> np.ndarray:
    """``n`` points uniform in an ellipsoid (Å) for which ``keep(points)`` is true (rejection sampling)."""
    out = np.zeros((0, 3))
    while len(out) < n:
        p = rng.uniform(-1.0, 1.0, (4 * n, 3))
        p = p[(p**2).sum(1) <= 1.0] * np.asarray(axes) + np.asarray(center)
        out = np.vstack([out, p[keep(p)]])
    return out[:n]


@lru_cache(maxsize=1)
def _ribosome_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed random ribosome (centres Å, sigmas, subunit id 0 = large, 1 = small), centred on its mass."""
    rng = np.random.default_rng(70)  # a constant: every ribosome is the same molecule

    def outside_cleft(p):  # inter-subunit space: a channel along y at the interface (tRNA sites)
        return np.hypot(p[:, 0] - 5.0, p[:, 2] - 24.0) > 26.0

    large = _in_ellipsoid(rng, 44, (0.0, 0.0, -35.0), (66.0, 62.0, 44.0), outside_cleft)
    small = _in_ellipsoid(rng, 30, (8.0, 0.0, 62.0), (64.0, 44.0, 28.0), outside_cleft)
    stalk = np.array([[-70.0, 40.0, -20.0], [-86.0, 52.0, -16.0], [-100.0, 62.0, -12.0]])
    centers = np.vstack([large, stalk, small])
    sigmas = np.concatenate([rng.uniform(12.0, 16.0, 44), [9.0, 8.0, 7.0], rng.uniform(11.0, 15.0, 30)])
    unit = np.repeat([0, 0, 1], [44, 3, 30])
    centers -= (centers * sigmas[:, None] ** 3).sum(0) / (sigmas**3).sum()  # centre of mass at the origin
    for a in (centers, sigmas, unit):
        a.setflags(write=False)
    return centers, sigmas, unit


def _ribosome(rng):
    centers, sigmas, unit = _ribosome_template()
    centers, sigmas = centers.copy(), sigmas.copy()
    if rng is not None:
        # ratchet: the small subunit turns a few degrees about an axis through the interface
        small = unit == 1
        pivot = centers[small].mean(0) * np.array([1.0, 1.0, 0.0]) + np.array([0.0, 0.0, 20.0])
        rot = _axis_rotation(rng.normal(size=3) + np.array([0.0, 0.0, 3.0]), np.deg2rad(rng.normal(0.0, 3.0)))
        centers[small] = (centers[small] - pivot) @ rot.T + pivot
        centers += rng.normal(0.0, 2.5, centers.shape)
        sigmas *= rng.uniform(0.96, 1.04, len(sigmas))
    return centers, sigmas, np.full(len(sigmas), _WEIGHT)


_MODELS = {
    "apo-ferritin": (_ferritin, 1.0),
    "beta-amylase": (_beta_amylase, 1.0),
    "beta-galactosidase": (_beta_galactosidase, 1.0),
    "ribosome": (_ribosome, 1.2),
    "thyroglobulin": (_thyroglobulin, 1.0),
    "virus-like-particle": (_vlp, 1.0),
}

# the symmetry each labelled model is built with (exact when jitter is off)
SYMMETRY: dict[str, str] = {
    "apo-ferritin": "O",
    "beta-amylase": "D2",
    "beta-galactosidase": "D2",
    "ribosome": "C1",
    "thyroglobulin": "C2",
    "virus-like-particle": "I",
}


def assembly_particle(name: str, rng: np.random.Generator, jitter: bool = True) -> Shape:
    """A catalogue particle built from subunits; every call with ``jitter`` is a new draw from ``rng``.

    Args:
        name: catalogue name, e.g. ``"apo-ferritin"``.
        rng: the only source of randomness (same state, same particle).
        jitter: size (± 6 %), density (± 4 %) and per-copy conformational jitter; ``False`` gives the exact,
            symmetric model with ``radius`` = catalogue radius, and draws nothing from ``rng``.

    Returns:
        A :class:`~.shapes.Shape` with one :class:`Domains` part, ``radius`` = catalogue radius x size factor
        (Å) and ``label = name``.

    Raises:
        UnknownParticleError: ``name`` is not in the catalogue.
    """
    particle = get_particle(name)
    build, density = _MODELS[name]
    centers, sigmas, weights = build(rng if jitter else None)
    size = rng.uniform(0.94, 1.06) if jitter else 1.0
    if jitter:
        density *= rng.uniform(0.96, 1.04)
    part = Domains(centers * size, sigmas * size, weights, density)
    return Shape(parts=(part,), radius=particle.radius * size, label=name)


# --------------------------------------------------------------------------------------------------------
# clutter
# --------------------------------------------------------------------------------------------------------


def _random_group(rng: np.random.Generator) -> str:
    family = rng.choice(["C", "D", "T", "O", "I"], p=[0.35, 0.35, 0.1, 0.1, 0.1])
    return f"{family}{rng.integers(1, 8)}" if family in "CD" else str(family)


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (n, 3), deterministic."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (3.0 - 5.0**0.5) * k
    rho = np.sqrt(1.0 - z**2)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], 1)


def _outer_radius(part: Domains, n_dirs: int = 256, n_radii: int = 80) -> float:
    """Largest distance (Å) from the centre at which ``part`` reaches half its density, sampled on rays."""
    radii = np.linspace(0.0, part.extent, n_radii)
    rays = _fibonacci_sphere(n_dirs)[:, None, :] * radii[None, :, None]
    inside = part(tuple(rays[..., k] for k in range(3))) > 0.5 * part.density
    return float(radii[np.flatnonzero(inside.any(axis=0)).max(initial=0)]) or float(part.extent)


def random_assembly(rng: np.random.Generator, radius_range: tuple[float, float] = (45.0, 150.0)) -> Shape:
    """Unlabelled clutter: a random subunit (1-5 domains) under a random point group, of random size.

    Group: Cn or Dn (n = 1..7), T, O or I. Solid (subunits anywhere inside) or, for groups of order >= 8,
    sometimes hollow (subunits on a shell, maybe a faint interior). The domain sizes follow from the
    volume to fill and the number of copies, and the model is then scaled so its half-density surface
    lies at 0.88-1.0 x the drawn radius. Density 0.8-1.3 spans protein and RNA-rich particles.

    Returns:
        A :class:`~.shapes.Shape` with ``label=None`` and ``radius`` drawn uniformly from ``radius_range`` (Å).
    """
    radius = rng.uniform(*radius_range)
    group = point_group(_random_group(rng))
    order = len(group)
    n_dom = int(rng.integers(1, 6))
    hollow = order >= 8 and rng.random() < 0.5
    if hollow:
        wall = min(rng.uniform(12.0, 30.0), 0.5 * radius)
        shell = radius - 0.5 * wall
        volume = 4.0 * np.pi * shell**2 * wall * rng.uniform(0.6, 0.9)
    else:
        volume = 4.0 / 3.0 * np.pi * radius**3 * rng.uniform(0.25, 0.55)
    subunit_r = (3.0 * volume / (4.0 * np.pi * order)) ** (1.0 / 3.0)
    sigmas = (subunit_r / n_dom ** (1.0 / 3.0) / _HALF) * rng.uniform(0.75, 1.25, n_dom)
    sigmas = np.clip(sigmas, 3.5, 0.45 * radius)
    direction = _unit(rng.normal(size=3))
    spread = subunit_r * rng.uniform(0.3, 0.8)
    if hollow:
        centers = direction * shell + rng.normal(0.0, spread, (n_dom, 3))
        centers = _unit(centers) * (shell + rng.normal(0.0, wall / 6.0, (n_dom, 1)))
    else:
        centers = direction * rng.uniform(0.0, 0.6) * radius + rng.normal(0.0, spread, (n_dom, 3))
    centers, sigmas, weights = _assemble(group, centers, sigmas, None, rng)
    # the density scales exactly with centres and widths, so one measurement of the half-density surface
    # (overlapping domains push it past a lone domain's 1.71 sigma) fixes the scale
    scale = radius * rng.uniform(0.88, 1.0) / _outer_radius(Domains(centers, sigmas, weights, 1.0))
    centers, sigmas = centers * scale, sigmas * scale
    if hollow and rng.random() < 0.3:
        centers = np.vstack([centers, [[0.0, 0.0, 0.0]]])
        sigmas = np.append(sigmas, 0.4 * shell * scale)
        weights = np.append(weights, rng.uniform(0.1, 0.3))
    return Shape(parts=(Domains(centers, sigmas, weights, rng.uniform(0.8, 1.3)),), radius=radius)
