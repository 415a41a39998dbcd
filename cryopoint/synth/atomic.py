"""Particles from atomic models: density maps built from mmCIF coordinates, and the shape that renders them.

Other simulators (polnet, parakeet, TEM-simulator) build particles from PDB atomic models, so a model trained
on cryopoint's analytic shapes and subunit assemblies meets their particles for the first time there. This
module gives the simulator the same kind of particle: :func:`read_mmcif_atoms` reads the coordinates,
:func:`contrast_map` turns them into a density map in the simulator's units (protein minus ice = 1) from the
electrons of the atoms minus the solvent they displace (so RNA-rich parts come out darker than protein, as
they are), and :class:`MapShape` renders a map at any position and orientation. ``SynthParams.particle_maps``
(``{class: map file}``) makes the simulator use them; :func:`save_particle_map` writes such a file.

The maps are coarse physics, not an image simulation: electrons per heavy atom (plus its share of hydrogens)
spread by a Gaussian, the solvent they displace from a fixed volume per heavy atom, no scattering factors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from cryopoint.errors import ConfigError, DataNotFoundError

__all__ = ["MapShape", "contrast_map", "load_particle_map", "read_mmcif_atoms", "save_particle_map"]

#: Electrons of each element; hydrogens are not in most models, so every heavy atom carries one more.
ELECTRONS = {"C": 6, "N": 7, "O": 8, "S": 16, "P": 15, "MG": 12, "ZN": 30, "FE": 26, "CA": 20, "NA": 11,
             "K": 19, "CL": 17, "MN": 25, "SE": 34}  # fmt: skip
#: Electron density of water (e/Å³) and of protein, hydrogens included (e/Å³).
WATER_E = 0.334
PROTEIN_E = 0.43
#: Volume (Å³) a protein heavy atom occupies (110 Da and 7.8 heavy atoms per residue at 1.35 g/cm³).
HEAVY_ATOM_VOLUME = 17.4


def read_mmcif_atoms(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Element symbols ``(N,)`` and coordinates ``(N, 3)`` (x, y, z in Å) of the first model of an mmCIF file.

    Hydrogens and waters are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"No mmCIF file at {path}.")
    cols: list[str] = []
    rows: list[list[str]] = []
    in_loop = False
    with path.open() as f:
        for line in f:
            if line.startswith("_atom_site."):
                cols.append(line.strip().split(".", 1)[1])
                in_loop = True
            elif in_loop:
                if line.startswith(("#", "loop_", "_")):
                    if rows:
                        break
                    continue
                rows.append(line.split())
    needed = ("type_symbol", "Cartn_x", "Cartn_y", "Cartn_z")
    if not rows or any(c not in cols for c in needed):
        raise ConfigError(f"{path} has no _atom_site table with {', '.join(needed)}; is it an mmCIF model?")
    ix = {c: i for i, c in enumerate(cols)}
    model = ix.get("pdbx_PDB_model_num")
    first = rows[0][model] if model is not None else None
    residue = ix.get("label_comp_id")
    keep = [
        r
        for r in rows
        if len(r) == len(cols)
        and r[ix["type_symbol"]].upper() not in ("H", "D")
        and (residue is None or r[residue] != "HOH")
        and (model is None or r[model] == first)
    ]
    symbols = np.array([r[ix["type_symbol"]].upper() for r in keep])
    xyz = np.array([[float(r[ix[c]]) for c in needed[1:]] for r in keep], dtype=np.float64)
    return symbols, xyz


def contrast_map(symbols: np.ndarray, xyz: np.ndarray, *, spacing: float = 5.0, blur: float = 4.0) -> np.ndarray:
    """Density ``(Z, Y, X)`` in protein-contrast units, centred on the atoms' centroid, ``spacing`` Å voxels.

    Args:
        symbols: Element of each heavy atom (unknown elements count as carbon).
        xyz: Coordinates ``(N, 3)``, x, y, z in Å.
        spacing: Voxel size of the map (Å).
        blur: Gaussian sigma (Å) the atoms are spread by (their size, and the resolution of the map).

    The map's centre voxel is the centroid, which is where the simulator puts the particle's label.
    """
    fine = spacing / 2.0
    coords = np.asarray(xyz, dtype=np.float64) - np.asarray(xyz, dtype=np.float64).mean(axis=0)
    half = int(np.ceil((np.abs(coords).max() + 3 * blur) / spacing)) * 2  # in fine voxels, even
    n = 2 * half + 1
    idx = np.rint(coords[:, ::-1] / fine).astype(int) + half  # (z, y, x) fine-voxel indices
    electrons = np.array([ELECTRONS.get(s, 6) + 1.0 for s in symbols])
    e = np.zeros((n, n, n), dtype=np.float64)
    occ = np.zeros((n, n, n), dtype=np.float64)
    np.add.at(e, tuple(idx.T), electrons)
    np.add.at(occ, tuple(idx.T), 1.0)
    sigma = blur / fine
    e = ndimage.gaussian_filter(e / fine**3, sigma)
    occupied = np.clip(ndimage.gaussian_filter(occ * (HEAVY_ATOM_VOLUME / fine**3), sigma), 0.0, 1.0)
    contrast = (e - WATER_E * occupied) / (PROTEIN_E - WATER_E)
    # every other fine voxel (the blur is wider than the coarse voxels); the centre voxel stays the centre
    return contrast[::2, ::2, ::2].astype(np.float32)


def save_particle_map(path: str | os.PathLike, density: np.ndarray, spacing: float, source: str = "") -> Path:
    """Write a map for ``SynthParams.particle_maps``: ``.npz`` with ``density`` (Z, Y, X), ``spacing`` (Å)."""
    from cryopoint.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, density=np.asarray(density, np.float16), spacing=float(spacing), source=str(source))
    return path


def load_particle_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """``(density, spacing)`` from a file written by :func:`save_particle_map` (no pickled objects allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"No particle map at {path}; write one with cryopoint.synth.atomic.save_particle_map.")
    with np.load(path, allow_pickle=False) as f:
        if "density" not in f or "spacing" not in f:
            raise ConfigError(f"{path} is not a particle map (it needs 'density' and 'spacing' arrays).")
        density, spacing = np.asarray(f["density"], np.float32), float(f["spacing"])
    if density.ndim != 3 or not np.isfinite(density).all() or spacing <= 0:
        raise ConfigError(f"{path}: density must be a finite 3-D array and spacing positive.")
    return density, spacing


@dataclass(frozen=True, eq=False)
class MapShape:
    """A particle drawn from a density map (trilinear), centred on the map's centre voxel.

    ``radius`` (Å, the overlap radius) is the distance from the centre to the farthest voxel holding more than
    5 % of the map's peak density.
    """

    density: np.ndarray
    spacing: float
    label: str | None = None
    radius: float = field(init=False)
    extent: float = field(init=False)

    def __post_init__(self) -> None:
        centre = (np.array(self.density.shape) - 1) / 2.0
        grid = np.argwhere(self.density > 0.05 * float(self.density.max()))
        radius = float(np.linalg.norm((grid - centre) * self.spacing, axis=1).max()) if len(grid) else 0.0
        object.__setattr__(self, "radius", radius)
        object.__setattr__(self, "extent", float(np.max(centre) * self.spacing))

    def __call__(self, u: tuple[np.ndarray, ...]) -> np.ndarray:
        x, y, z = np.broadcast_arrays(*u)
        centre = (np.array(self.density.shape) - 1) / 2.0
        coords = np.stack([z / self.spacing + centre[0], y / self.spacing + centre[1], x / self.spacing + centre[2]])
        return ndimage.map_coordinates(self.density, coords, order=1, cval=0.0).astype(np.float32, copy=False)
