"""Subunit-assembly particle models: point groups, symmetry, determinism, size, hollowness, clutter, rendering."""

import numpy as np
import pytest

from cryopoint.errors import UnknownParticleError
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.synth import assembly
from cryopoint.synth.assembly import SYMMETRY, Domains, assembly_particle, point_group, random_assembly
from cryopoint.synth.sample import Placed, _paste, _random_rotation
from cryopoint.synth.shapes import Shape

# point group -> {rotation angle in degrees: number of elements}
ANGLES = {
    "C1": {0: 1},
    "C2": {0: 1, 180: 1},
    "C5": {0: 1, 72: 2, 144: 2},
    "D1": {0: 1, 180: 1},
    "D2": {0: 1, 180: 3},
    "D3": {0: 1, 120: 2, 180: 3},
    "D7": {0: 1, 51: 2, 103: 2, 154: 2, 180: 7},
    "T": {0: 1, 120: 8, 180: 3},
    "O": {0: 1, 90: 6, 120: 8, 180: 9},
    "I": {0: 1, 72: 12, 120: 20, 144: 12, 180: 15},
}


def _grid(half: float, step: float):
    a = np.arange(-half, half + 1e-3, step, dtype=np.float32)
    u = (a[:, None, None], a[None, :, None], a[None, None, :])
    x, y, z = np.broadcast_arrays(*u)
    return u, np.sqrt(x**2 + y**2 + z**2), np.stack([x.ravel(), y.ravel(), z.ravel()], 1)


def _eval(shape, pts: np.ndarray) -> np.ndarray:
    return shape(tuple(pts[:, k] for k in range(3)))


@pytest.mark.parametrize("name", sorted(ANGLES))
def test_point_group_is_a_rotation_group(name):
    g = point_group(name)
    counts = ANGLES[name]
    assert g.shape == (sum(counts.values()), 3, 3)
    np.testing.assert_allclose(g @ g.transpose(0, 2, 1), np.broadcast_to(np.eye(3), g.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(g), 1.0, atol=1e-9)
    np.testing.assert_allclose(g[0], np.eye(3), atol=1e-12)
    flat = g.reshape(len(g), 9)
    gaps = np.abs(flat[:, None] - flat[None]).max(-1) + np.eye(len(g))
    assert gaps.min() > 1e-6  # all distinct
    products = np.einsum("aij,bjk->abik", g, g).reshape(-1, 9)
    nearest = np.abs(products[:, None] - flat[None]).max(-1).min(1)
    assert nearest.max() < 1e-8  # closed under composition
    angles = np.degrees(np.arccos(np.clip((np.trace(g, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    found = dict(zip(*np.unique(np.floor(angles + 0.5).astype(int), return_counts=True)))
    assert found == counts  # the right kinds of axes, not just the right order


def test_point_group_axes_and_errors():
    for n in (2, 4, 6):
        assert len(point_group(f"C{n}")) == n and len(point_group(f"D{n}")) == 2 * n
    c4 = point_group("C4")
    np.testing.assert_allclose(c4 @ [0.0, 0.0, 1.0], np.tile([0.0, 0.0, 1.0], (4, 1)), atol=1e-12)  # axis on z
    d3 = point_group("D3")
    assert np.abs(d3 - np.diag([1.0, -1.0, -1.0])).max(axis=(1, 2)).min() < 1e-12  # a 2-fold axis along x
    ico = point_group("I")
    five = _unit([0.0, 1.0, (1 + 5**0.5) / 2])
    assert np.sum(np.abs(ico @ five - five).max(1) < 1e-9) == 5  # a 5-fold axis through (0, 1, phi)
    point_group("O")[0, 0, 0] = 7.0  # returns a copy: the cached group stays intact
    np.testing.assert_allclose(point_group("O")[0], np.eye(3))
    for bad in ("C0", "D", "X3", "o", "I2"):
        with pytest.raises(ValueError):
            point_group(bad)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("name", [n for n in PARTICLE_NAMES if SYMMETRY[n] != "C1"])
def test_density_is_invariant_under_its_point_group(name):
    shape = assembly_particle(name, np.random.default_rng(0), jitter=False)
    radius = get_particle(name).radius
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(600, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * radius * rng.uniform(0.2, 1.05, (600, 1))
    pts = pts.astype(np.float32)
    ref = _eval(shape, pts)
    assert ref.max() > 0.5 and ref.min() < 0.1  # the probe points see both protein and solvent
    group = point_group(SYMMETRY[name])
    moved = np.einsum("gij,pj->gpi", group, pts).reshape(-1, 3).astype(np.float32)
    vals = _eval(shape, moved).reshape(len(group), -1)
    assert np.abs(vals - ref).max() < 1e-4
    # the probe can tell: a rotation outside the group changes the density
    off = np.einsum("ij,pj->pi", assembly._axis_rotation((0.3, -0.5, 0.8), 0.35), pts).astype(np.float32)
    assert np.abs(_eval(shape, off) - ref).max() > 0.2


def test_jitter_breaks_symmetry_only_slightly():
    shape = assembly_particle("apo-ferritin", np.random.default_rng(4))
    _, r, pts = _grid(80.0, 6.0)
    ref = _eval(shape, pts)
    turned = _eval(shape, (pts @ point_group("O")[5].T).astype(np.float32))
    diff = np.abs(turned - ref)
    assert diff.max() > 0.02  # copies are jittered independently
    assert np.corrcoef(turned, ref)[0, 1] > 0.9  # ...but it is still the same cage


@pytest.mark.parametrize("name", PARTICLE_NAMES)
def test_jitter_off_is_exact_and_draws_nothing(name):
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    a = assembly_particle(name, rng, jitter=False)
    assert rng.bit_generator.state == before
    assert a.radius == get_particle(name).radius and a.label == name
    b = assembly_particle(name, np.random.default_rng(6), jitter=False)
    np.testing.assert_array_equal(a.parts[0].centers, b.parts[0].centers)


@pytest.mark.parametrize("name", [*PARTICLE_NAMES, None])
def test_deterministic_per_seed_and_varied_across_seeds(name):
    def draw(seed):
        rng = np.random.default_rng(seed)
        if name is None:
            return random_assembly(rng), random_assembly(rng)
        return assembly_particle(name, rng), assembly_particle(name, rng)

    (a1, a2), (b1, _), (c1, _) = draw(11), draw(11), draw(12)
    _, _, pts = _grid(0.8 * a1.radius, 0.2 * a1.radius)
    assert a1.radius == b1.radius and a1.label == b1.label and a1.extent == b1.extent
    np.testing.assert_array_equal(a1.parts[0].centers, b1.parts[0].centers)
    np.testing.assert_array_equal(_eval(a1, pts), _eval(b1, pts))
    for other in (c1, a2):  # another seed, and the next draw of the same generator
        assert other.radius != a1.radius
        if len(other.parts[0].centers) == len(a1.parts[0].centers):
            assert not np.allclose(other.parts[0].centers, a1.parts[0].centers)


@pytest.mark.parametrize("name", PARTICLE_NAMES)
def test_size_and_mass_distribution(name):
    shape = assembly_particle(name, np.random.default_rng(7))
    part = shape.parts[0]
    assert isinstance(shape, Shape) and isinstance(part, Domains) and shape.label == name
    size = shape.radius / get_particle(name).radius
    assert 0.94 <= size <= 1.06
    u, r, _ = _grid(shape.extent + 20.0, 5.0)
    d = shape(u)
    assert d.dtype == np.float32
    assert r[d > 0.05].max() <= part.extent <= shape.extent  # the renderer's box holds the whole density
    mass = d.sum()
    assert d[r > 1.1 * shape.radius].sum() < 0.03 * mass
    assert d[r < 0.5 * shape.radius].sum() < 0.75 * mass
    outer = r[d > 0.5 * part.density].max()  # half-density surface near the catalogue radius
    assert 0.85 * shape.radius < outer < 1.08 * shape.radius
    protein = 1.2 if name == "ribosome" else 1.0
    assert 0.95 * protein <= part.density <= 1.05 * protein
    assert 0.9 * part.density < d.max() <= part.density


def test_hollow_classes_and_central_channel():
    for name, core, shell in (("apo-ferritin", 25.0, 50.0), ("virus-like-particle", 60.0, 116.0)):
        shape = assembly_particle(name, np.random.default_rng(8), jitter=False)
        u, r, _ = _grid(shape.radius * 1.2, 5.0)
        d = shape(u)
        assert d[r < core].max() < 0.25  # empty (ferritin) or faint (packaged capsid) inside
        assert d[np.abs(r - shell) < 3].mean() > 0.7  # a closed protein wall
    gal = assembly_particle("beta-galactosidase", np.random.default_rng(8), jitter=False)
    assert _eval(gal, np.zeros((1, 3), np.float32))[0] < 0.2
    amylase = assembly_particle("beta-amylase", np.random.default_rng(8), jitter=False)
    u, r, _ = _grid(70.0, 5.0)
    d = amylase(u)
    assert d[r < 0.5 * 65].sum() > 0.15 * d.sum()  # compact, not a shell


def _principal_sd(shape, half):
    _, _, pts = _grid(half, 5.0)
    d = _eval(shape, pts).astype(np.float64)
    mean = (pts * d[:, None]).sum(0) / d.sum()
    q = pts - mean
    return np.sqrt(np.linalg.eigvalsh((q * d[:, None]).T @ q / d.sum()))


def test_thyroglobulin_is_elongated_and_others_are_not():
    tg = assembly_particle("thyroglobulin", np.random.default_rng(9))
    small, mid, large = _principal_sd(tg, tg.extent)
    assert large / small > 2.5 and large / mid > 2.0
    for name in ("apo-ferritin", "virus-like-particle", "beta-amylase"):
        shape = assembly_particle(name, np.random.default_rng(9), jitter=False)
        sd = _principal_sd(shape, shape.radius * 1.15)
        assert sd[-1] / sd[0] < 1.2


def test_ribosome_subunits_mass_split_and_cleft():
    centers, sigmas, unit = assembly._ribosome_template()
    _, _, pts = _grid(170.0, 6.0)
    mass = [
        _eval(Domains(centers[unit == k], sigmas[unit == k], np.full((unit == k).sum(), 3.0), 1.2), pts).sum()
        for k in (0, 1)
    ]
    assert 0.55 < mass[0] / sum(mass) < 0.7
    # the two subunits are separate clusters: the small one sits above the large one along z
    assert centers[unit == 1, 2].mean() - centers[unit == 0, 2].mean() > 60.0
    a = assembly_particle("ribosome", np.random.default_rng(1))
    b = assembly_particle("ribosome", np.random.default_rng(2))
    assert np.abs(a.parts[0].centers - b.parts[0].centers).max() < 20.0  # one molecule, jittered


def test_random_assembly_is_unlabelled_and_sized():
    rng = np.random.default_rng(10)
    hollow = 0
    for i in range(24):
        lo, hi = ((45.0, 150.0), (30.0, 60.0))[i % 2]
        shape = random_assembly(rng) if i % 2 == 0 else random_assembly(rng, radius_range=(lo, hi))
        part = shape.parts[0]
        assert shape.label is None and lo <= shape.radius <= hi
        assert 0.8 <= part.density <= 1.3
        u, r, _ = _grid(shape.extent, 0.06 * shape.radius)
        d = shape(u)
        assert r[d > 0.05].max() <= part.extent
        assert 0.8 * shape.radius < r[d > 0.5 * part.density].max() < 1.05 * shape.radius
        hollow += d[r < 0.3 * shape.radius].max() < 0.3 * part.density
    assert 0 < hollow < 24  # both hollow and solid clutter


def test_domains_paths_agree_and_broadcast(monkeypatch):
    shape = assembly_particle("virus-like-particle", np.random.default_rng(3))
    part = shape.parts[0]
    a = np.linspace(-140, 140, 15, dtype=np.float32)
    u = (a[:, None, None], a[None, :, None], np.float32(20.0) + 0 * a[None, None, :1])
    tree = part(u)
    assert tree.shape == (15, 15, 1) and tree.dtype == np.float32
    monkeypatch.setattr(assembly, "_DIRECT_MAX", 10**12)
    direct = part(u)
    np.testing.assert_allclose(tree, direct, atol=1e-5)
    assert direct.max() > 0.5
    with pytest.raises(ValueError):
        Domains(np.zeros((2, 3)), np.ones(3), np.ones(2), 1.0)
    with pytest.raises(ValueError):
        Domains(np.zeros((1, 3)), np.zeros(1), np.ones(1), 1.0)
    with pytest.raises(UnknownParticleError):
        assembly_particle("proteasome", np.random.default_rng(0))


def test_renders_with_the_sample_renderer():
    vs = 10.0
    rng = np.random.default_rng(12)
    for name in ("virus-like-particle", "beta-galactosidase"):
        shape = assembly_particle(name, rng)
        centre = np.full(3, shape.extent + 5.0)
        n = int(np.ceil(2 * centre[0] / vs)) + 1
        vol = np.zeros((n, n, n), np.float32)
        _paste(vol, Placed(shape, centre, _random_rotation(rng)), vs)
        u, _, _ = _grid(shape.extent + 20.0, vs)
        # the rotated box of half-width ``extent`` catches (almost) all of the mass
        assert abs(vol.sum() - shape(u).sum()) < 0.02 * vol.sum()
        assert 0.8 < vol.max() <= shape.parts[0].density
