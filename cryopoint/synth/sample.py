"""The specimen: an ice slab with non-overlapping particles, clutter, vesicles and gold, as a density volume.

Positions are drawn in Å (continuous), so the ground truth is exact at any voxel size; each object is
rendered by evaluating its analytic density (:mod:`cryopoint.synth.shapes`) on the voxels of a small box
around it, in the object's randomly rotated frame (``Å = index x voxel_size``, see :mod:`cryopoint.coords`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryopoint.errors import ConfigError
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.synth import shapes
from cryopoint.synth.params import REAL_MEAN_COUNTS, REAL_SHAPE, SynthParams

__all__ = [
    "Slab",
    "Placed",
    "draw_counts",
    "draw_slab",
    "place_objects",
    "draw_layout",
    "object_kind",
    "render_density",
    "build_sample",
]

_MAX_TRIES = 300  # random positions tried per object before giving up on it


@dataclass(frozen=True)
class Slab:
    """Ice slab between two tilted planes ``z = c + gx * x + gy * y`` (all Å), bottom and top."""

    bottom: tuple[float, float, float]
    top: tuple[float, float, float]

    def surfaces(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bottom and top surface heights (Å) at positions ``x``, ``y`` (Å, broadcastable)."""
        (b0, bx, by), (t0, tx, ty) = self.bottom, self.top
        return b0 + bx * x + by * y, t0 + tx * x + ty * y


@dataclass(frozen=True)
class Placed:
    """An object placed in the sample: its shape (a :class:`~cryopoint.synth.shapes.Shape` or a
    :class:`~cryopoint.synth.shapes.Varied` copy of one), centre (x, y, z) in Å and rotation (local → lab)."""

    shape: shapes.Shape
    center: np.ndarray
    rotation: np.ndarray
    membrane: bool = False


def draw_counts(shape: tuple[int, int, int], params: SynthParams, rng: np.random.Generator) -> dict[str, int]:
    """Per-class particle counts for one run: real mean counts scaled by volume, crowding and a run factor."""
    if params.counts is not None:
        return {n: int(params.counts.get(n, 0)) for n in PARTICLE_NAMES}
    scale = params.crowding * float(np.prod(shape)) / float(np.prod(REAL_SHAPE))
    out = {}
    for name in PARTICLE_NAMES:
        factor = rng.lognormal(-0.5 * params.count_spread**2, params.count_spread)
        out[name] = int(rng.poisson(REAL_MEAN_COUNTS[name] * scale * factor))
    return out


def draw_slab(shape: tuple[int, int, int], params: SynthParams, rng: np.random.Generator) -> Slab:
    """A tilted ice slab of mean thickness ``ice_fraction`` of the z extent, thickness varying by ``ice_tilt``."""
    vs = params.voxel_size
    z_len, y_len, x_len = ((n - 1) * vs for n in shape)
    thickness = params.ice_fraction * z_len
    mid = 0.5 * z_len + rng.uniform(-0.5, 0.5) * (z_len - thickness) * 0.5
    angle = rng.uniform(0, 2 * np.pi)
    # thickness changes by ice_tilt x thickness across the field of view, in a random in-plane direction
    gx = params.ice_tilt * thickness * np.cos(angle) / max(x_len, vs)
    gy = params.ice_tilt * thickness * np.sin(angle) / max(y_len, vs)
    c0 = -0.5 * (gx * x_len + gy * y_len)
    return Slab(
        bottom=(mid - 0.5 * thickness - c0 / 2, -gx / 2, -gy / 2), top=(mid + 0.5 * thickness + c0 / 2, gx / 2, gy / 2)
    )


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed 3D rotation matrix (from a normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _fits(center: np.ndarray, radius: float, placed: list[Placed], gap: float) -> bool:
    """True when a ball (centre Å, radius Å) overlaps no placed ball and crosses no vesicle membrane."""
    for obj in placed:
        d = float(np.linalg.norm(obj.center - center))
        if obj.membrane:
            mem = obj.shape.parts[0]
            inner = mem.radius * min(mem.stretch) - 0.5 * mem.thickness
            outer = mem.radius * max(mem.stretch) + 0.5 * mem.thickness
            if inner - gap - radius < d < outer + gap + radius:
                return False
        elif d < obj.shape.radius + radius + gap:
            return False
    return True


def _try_place(
    shape: shapes.Shape, vol_shape, slab: Slab, params: SynthParams, rng, placed: list[Placed], membrane=False
) -> Placed | None:
    vs = params.voxel_size
    z_len, y_len, x_len = ((n - 1) * vs for n in vol_shape)
    for _ in range(_MAX_TRIES):
        x, y = rng.uniform(0, x_len), rng.uniform(0, y_len)
        bottom, top = slab.surfaces(x, y)
        bottom, top = max(bottom, 0.0), min(top, z_len)
        # keep objects inside the ice; in thin volumes keep the centre in the middle half (vesicles: tenth)
        margin = min(shape.radius, (0.45 if membrane else 0.25) * (top - bottom))
        if top - bottom <= 2 * margin:
            continue
        center = np.array([x, y, rng.uniform(bottom + margin, top - margin)])
        if membrane:  # vesicles only avoid each other's spheres
            clear = all(np.linalg.norm(o.center - center) > o.shape.radius + shape.radius for o in placed)
        else:
            clear = _fits(center, shape.radius, placed, params.min_gap)
        if clear:
            return Placed(shape, center, _random_rotation(rng), membrane)
    return None


def _use_assembly(model: str, rng: np.random.Generator) -> bool:
    """Whether the next object comes from the assembly generator (``mixed``: a fair coin per object)."""
    if model == "mixed":
        return bool(rng.random() < 0.5)
    return model == "assembly"


def _particle(name: str, model: str, rng: np.random.Generator, maps: Mapping[str, str] | None = None):
    """A labelled particle from the run's shape model (assemblies are a new random draw each time), or from
    its class's density map in ``maps`` (drawn the same way first, so the rest of the run draws the same)."""
    if _use_assembly(model, rng):
        from cryopoint.synth.assembly import assembly_particle

        shape = assembly_particle(name, rng)
    else:
        shape = shapes.particle_shape(name)
    if maps and name in maps:
        path = str(maps[name])
        return _map_shape(path, os.stat(path).st_mtime_ns if os.path.exists(path) else 0, name)
    return shape


@functools.lru_cache(maxsize=16)
def _map_shape(path: str, mtime_ns: int, name: str):  # mtime in the key: an edited file is read again
    from cryopoint.synth.atomic import MapShape, load_particle_map

    density, spacing = load_particle_map(path)
    return MapShape(density, spacing, label=name)


def _clutter(params: SynthParams, rng: np.random.Generator) -> shapes.Shape:
    """An unlabelled object from the same generator as the particles, so the generator never names a class."""
    if _use_assembly(params.shape_model, rng):
        from cryopoint.synth.assembly import random_assembly

        return random_assembly(rng)
    is_shell = rng.random() < params.clutter_shell_fraction
    return shapes.random_shell(rng) if is_shell else shapes.random_blob(rng)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _variation_rng(params: SynthParams, rng: np.random.Generator) -> np.random.Generator:
    """The stream the per-particle variation draws from: a child of ``rng`` that leaves ``rng``'s own draws
    untouched, so a run with darker or fainter particles has the very same layout as one without."""
    if (params.particle_scale, params.particle_aspect, params.particle_density) == ((1.0, 1.0), 0.0, (1.0, 1.0)):
        return rng  # nothing will be drawn from it
    return _child(rng)


def _child(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator spawned from ``rng``'s seed sequence (``rng``'s own stream is not advanced)."""
    try:
        return rng.spawn(1)[0]
    except (TypeError, ValueError, AttributeError):  # a generator without a seed sequence to spawn from
        return np.random.default_rng(int(rng.integers(2**63)))


def _vary(shape: shapes.Shape, params: SynthParams, rng: np.random.Generator, labelled: bool):
    """``shape`` with its own size, stretch (labelled particles) and density (every object) drawn from the
    ``particle_*`` ranges; unchanged, drawing nothing from ``rng``, when those ranges are the defaults (so
    datasets made before these knobs existed keep their bytes)."""
    scale_lo, scale_hi = params.particle_scale
    dens_lo, dens_hi = params.particle_density
    vary_shape = labelled and ((scale_lo, scale_hi) != (1.0, 1.0) or params.particle_aspect > 0)
    if not vary_shape and (dens_lo, dens_hi) == (1.0, 1.0):
        return shape
    stretch = (1.0, 1.0, 1.0)
    if vary_shape:
        size = _log_uniform(rng, scale_lo, scale_hi)
        a = params.particle_aspect
        stretch = tuple(size * float(np.exp(rng.uniform(-a, a))) for _ in range(3))
    density = _log_uniform(rng, dens_lo, dens_hi)
    return shapes.Varied(shape, stretch, density)


def _class_designs(params: SynthParams, rng: np.random.Generator) -> dict[str, shapes.Shape]:
    """This run's random class designs (:mod:`cryopoint.synth.designs`): each class, with probability
    ``params.class_designs``, gets one design all its particles share. Drawn from a child of ``rng`` that
    leaves ``rng``'s own draws untouched, and nothing at all when ``class_designs`` is 0 (datasets made before
    the knob existed keep their bytes)."""
    if params.class_designs <= 0:
        return {}
    from cryopoint.synth.designs import class_design

    sub = _child(rng)
    designs = {}
    for name in PARTICLE_NAMES:
        chosen = sub.random() < params.class_designs
        # drawn either way: one class's coin leaves the others' designs alone
        design = class_design(name, sub, params.design_volume_range)
        if chosen:
            designs[name] = design
    return designs


def _designed(name: str, shape, designs: Mapping[str, shapes.Shape], params: SynthParams):
    """The run's design of ``name`` in place of ``shape``; a class with a density map keeps its map."""
    if name in designs and not (params.particle_maps and name in params.particle_maps):
        return designs[name]
    return shape


def _class_density(shape: shapes.Shape, name: str, params: SynthParams):
    """``shape`` with its class's ``class_density`` factor (draws nothing: the layout stays the same)."""
    factor = float((params.class_density or {}).get(name, 1.0))
    return shape if factor == 1.0 else shapes.Varied(shape, density=factor)


def _rotation_to(direction: np.ndarray) -> np.ndarray:
    """A rotation matrix whose first column (the image of local x) is the unit vector ``direction``."""
    d = direction / np.linalg.norm(direction)
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    b = np.cross(d, helper)
    b /= np.linalg.norm(b)
    return np.stack([d, b, np.cross(d, b)], axis=1)


def _filament(vol_shape, slab: Slab, params: SynthParams, rng: np.random.Generator) -> list[Placed]:
    """One straight filament through the volume, as pieces laid end to end (see ``SynthParams.filaments_*``)."""
    segment = shapes.filament_segment(microtubule=bool(rng.random() < params.microtubule_fraction))
    step = 2 * segment.parts[0].half_length
    vs = params.voxel_size
    size = np.array([(n - 1) * vs for n in vol_shape[::-1]])  # x, y, z extent in Å
    x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
    bottom, top = slab.surfaces(x, y)
    start = np.array([x, y, rng.uniform(max(bottom, 0.0), min(top, size[2]))])
    phi, tilt = rng.uniform(0, 2 * np.pi), rng.uniform(-0.25, 0.25)  # within ~15° of the slab's plane
    direction = np.array([np.cos(phi) * np.cos(tilt), np.sin(phi) * np.cos(tilt), np.sin(tilt)])
    rotation = _rotation_to(direction)
    pieces = []
    for sign in (1.0, -1.0):
        k = 0 if sign > 0 else 1
        while True:
            center = start + sign * k * step * direction
            if np.any(center[:2] < -step) or np.any(center[:2] > size[:2] + step):
                break
            bottom, top = slab.surfaces(center[0], center[1])
            if not bottom <= center[2] <= top:
                break
            pieces.append(Placed(segment, center, rotation))
            k += 1
    return pieces


def place_objects(
    vol_shape: tuple[int, int, int], params: SynthParams, rng: np.random.Generator, slab: Slab
) -> list[Placed]:
    """Place vesicles, gold, labelled particles and clutter without overlaps (largest first).

    Raises:
        ConfigError: explicit ``counts`` that do not fit into the volume.
    """
    full = float(np.prod(REAL_SHAPE))
    volume_scale = float(np.prod(vol_shape)) / full
    area_scale = float(vol_shape[1] * vol_shape[2]) / float(REAL_SHAPE[1] * REAL_SHAPE[2])
    placed: list[Placed] = []
    for _ in range(rng.poisson(params.vesicles_per_volume * volume_scale)):
        ves = shapes.vesicle(rng, params.vesicle_radius, params.bilayer_thickness)
        obj = _try_place(ves, vol_shape, slab, params, rng, placed, membrane=True)
        if obj is not None:
            placed.append(obj)

    if params.filaments_per_volume > 0:  # drawn only when asked, so runs without filaments keep their bytes
        for _ in range(rng.poisson(params.filaments_per_volume * area_scale)):
            placed += _filament(vol_shape, slab, params, rng)

    counts = draw_counts(vol_shape, params, rng)
    vary_rng = _variation_rng(params, rng)
    designs = _class_designs(params, rng)
    todo = [
        shapes.gold(rng, params.gold_radius, params.gold_density)
        for _ in range(rng.poisson(params.gold_per_volume * area_scale))
    ]
    todo += [
        _class_density(
            _vary(
                _designed(n, _particle(n, params.shape_model, rng, params.particle_maps), designs, params),
                params,
                vary_rng,
                labelled=True,
            ),
            n,
            params,
        )
        for n in PARTICLE_NAMES
        for _ in range(counts[n])
    ]
    n_clutter = rng.poisson(params.clutter_per_particle * sum(counts.values())) if sum(counts.values()) else 0
    for _ in range(n_clutter):
        todo.append(_vary(_clutter(params, rng), params, vary_rng, labelled=False))
    order = sorted(range(len(todo)), key=lambda i: -todo[i].radius)  # stable: ties keep draw order
    for i in order:
        obj = _try_place(todo[i], vol_shape, slab, params, rng, placed)
        if obj is not None:
            placed.append(obj)
        elif todo[i].label is not None and params.counts is not None:
            raise ConfigError(
                f"Could not fit {todo[i].label} #{i} into a {vol_shape} volume with the requested counts "
                f"{dict(params.counts)}; request fewer particles or a larger shape."
            )
    return placed


def render_density(
    vol_shape: tuple[int, int, int], objects: list[Placed], slab: Slab, params: SynthParams
) -> np.ndarray:
    """Density volume (z, y, x) float32: ice = 0, vacuum = ``vacuum_contrast``, objects added on top."""
    vs = params.voxel_size
    nz, ny, nx = vol_shape
    x = np.arange(nx, dtype=np.float32) * vs
    y = np.arange(ny, dtype=np.float32)[:, None] * vs
    bottom, top = slab.surfaces(x[None, :], y)
    vol = np.empty(vol_shape, dtype=np.float32)
    for k in range(nz):  # one-voxel linear ramp at each ice surface (anti-aliased)
        z = k * vs
        inside = np.clip((z - bottom) / vs + 0.5, 0, 1) * np.clip((top - z) / vs + 0.5, 0, 1)
        vol[k] = params.vacuum_contrast * (1.0 - inside)
    for obj in objects:
        _paste(vol, obj, vs)
    return vol


def _paste(vol: np.ndarray, obj: Placed, vs: float) -> None:
    """Add one object's density into ``vol`` over the voxels of its bounding box (clipped to the volume)."""
    center_zyx = obj.center[::-1]
    lo = np.maximum(np.floor((center_zyx - obj.shape.extent) / vs).astype(int), 0)
    hi = np.minimum(np.ceil((center_zyx + obj.shape.extent) / vs).astype(int) + 1, vol.shape)
    if np.any(hi <= lo):
        return
    # lab-frame offsets from the centre in Å, per axis, broadcastable to the box
    dz = (np.arange(lo[0], hi[0]) * vs - center_zyx[0]).astype(np.float32)[:, None, None]
    dy = (np.arange(lo[1], hi[1]) * vs - center_zyx[1]).astype(np.float32)[None, :, None]
    dx = (np.arange(lo[2], hi[2]) * vs - center_zyx[2]).astype(np.float32)[None, None, :]
    r = obj.rotation.astype(np.float32)
    # local = R^T @ lab: component i is column i of R dotted with (dx, dy, dz)
    local = tuple(r[0, i] * dx + r[1, i] * dy + r[2, i] * dz for i in range(3))
    vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += obj.shape(local)


#: Densities above this (protein-contrast units) single out gold beads among solid spheres.
_GOLD_MIN_DENSITY = 3.0


def object_kind(obj: Placed) -> str:
    """What a placed object is: ``particle`` (labelled), ``vesicle``, ``filament``, ``gold``, ``shell``
    (a hollow look-alike), ``assembly`` (symmetric subunits) or ``blob`` (random lobes): read from its parts."""
    shape = obj.shape.base if isinstance(obj.shape, shapes.Varied) else obj.shape
    parts = shape.parts
    if obj.membrane:
        return "vesicle"
    if shape.label is not None:
        return "particle"
    if any(isinstance(part, shapes.Tube) for part in parts):
        return "filament"
    if len(parts) == 1 and isinstance(parts[0], shapes.Shell):
        return "shell"
    if all(isinstance(part, shapes.Ellipsoid) for part in parts):
        return "gold" if len(parts) == 1 and parts[0].density > _GOLD_MIN_DENSITY else "blob"
    return "assembly"


def draw_layout(
    vol_shape: tuple[int, int, int], params: SynthParams, rng: np.random.Generator
) -> tuple[Slab, list[Placed]]:
    """Draw a specimen without rendering it: its ice slab and every placed object."""
    slab = draw_slab(vol_shape, params, rng)
    return slab, place_objects(vol_shape, params, rng, slab)


def build_sample(
    vol_shape: tuple[int, int, int], params: SynthParams, rng: np.random.Generator
) -> tuple[np.ndarray, pd.DataFrame]:
    """Draw a specimen and render it.

    Returns:
        ``(density, picks)``: density float32 (z, y, x) in protein-contrast units; picks table with
        ``particle_type`` and ``x, y, z`` in Å (catalogue order) of the labelled particles.
    """
    slab, objects = draw_layout(vol_shape, params, rng)
    density = render_density(vol_shape, objects, slab, params)
    rows = [(o.shape.label, *o.center) for o in objects if o.shape.label is not None]
    picks = pd.DataFrame(rows, columns=["particle_type", "x", "y", "z"])
    picks["_order"] = picks["particle_type"].map(PARTICLE_NAMES.index)
    picks = picks.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    return density, picks
