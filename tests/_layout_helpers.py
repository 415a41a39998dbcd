"""Write tiny datasets in exactly the CZII challenge layout, with plain zarr and json calls (not cryopoint).

Other tests import :func:`write_challenge_store` so that cryopoint's readers are checked against files made
independently of its writers::

    ROOT/<split>/static/ExperimentRuns/<run>/VoxelSpacing10.000/denoised.zarr   (zarr v2, OME-NGFF 0.4)
    ROOT/<split>/overlay/ExperimentRuns/<run>/Picks/<particle>.json              (copick schema)
"""

from __future__ import annotations

import json
from pathlib import Path

import numcodecs
import numpy as np
import pandas as pd
import zarr

CHALLENGE_VOXEL_SIZE = 10.012444
NAMES = ("apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle")


def default_picks(runs, shape, voxel_size=CHALLENGE_VOXEL_SIZE, per_type=2, seed=0) -> pd.DataFrame:
    """``per_type`` random picks of every particle type per run, inside the volume, in Å (x, y, z)."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in runs:
        for name in NAMES:
            for _ in range(per_type):
                zyx = rng.uniform(1, np.asarray(shape) - 2) * voxel_size
                rows.append({"experiment": run, "particle_type": name, "x": zyx[2], "y": zyx[1], "z": zyx[0]})
    return pd.DataFrame(rows)


def zarr_v2_group(path):
    """A new zarr format 2 group at ``path``, with zarr 2 or zarr 3 (their ``open_group`` arguments differ)."""
    if zarr.__version__.startswith("2."):
        return zarr.open_group(store=str(path), mode="w")
    return zarr.open_group(store=str(path), mode="w", zarr_format=2)


def zarr_v2_array(group, name, data, chunks=None, compressor=None, **options):
    """Array ``name`` of a format 2 ``group`` holding ``data`` (zarr 2: ``create_dataset``, 3: ``create_array``).

    ``options`` are passed on as they are (e.g. zarr 3's ``chunk_key_encoding`` or zarr 2's ``dimension_separator``).
    """
    chunks = chunks or data.shape
    if zarr.__version__.startswith("2."):
        return group.create_dataset(name, data=data, chunks=chunks, compressor=compressor, **options)
    compressors = "auto" if compressor is None else compressor
    arr = group.create_array(
        name, shape=data.shape, chunks=chunks, dtype=data.dtype, compressors=compressors, **options
    )
    arr[...] = data
    return arr


def write_zarr_v2_tomogram(path, volume, voxel_size=CHALLENGE_VOXEL_SIZE, levels=3):
    """An OME-NGFF 0.4 multiscale zarr v2 group with arrays "0", "1", "2" (strided), Blosc chunks."""
    group = zarr_v2_group(path)
    datasets = []
    for i in range(levels):
        step = 2**i
        level = np.ascontiguousarray(volume[::step, ::step, ::step], dtype=np.float32)
        zarr_v2_array(group, str(i), level, chunks=(8, 16, 16), compressor=numcodecs.Blosc(cname="lz4"))
        scale = [voxel_size * step] * 3
        datasets.append({"coordinateTransformations": [{"scale": scale, "type": "scale"}], "path": str(i)})
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    group.attrs["multiscales"] = [{"axes": axes, "datasets": datasets, "metadata": {}, "name": "/", "version": "0.4"}]
    return Path(path)


def write_picks_json(path, run, name, points_xyz, user_id="curation", session_id="0", scores=None):
    """One copick picks file exactly as the challenge ships it (plus ``score`` per point when given)."""
    points = []
    for i, (x, y, z) in enumerate(points_xyz):
        point = {
            "location": {"x": float(x), "y": float(y), "z": float(z)},
            "transformation_": [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]],
            "instance_id": 0,
        }
        if scores is not None:
            point["score"] = float(scores[i])
        points.append(point)
    doc = {
        "pickable_object_name": name,
        "user_id": user_id,
        "session_id": session_id,
        "run_name": run,
        "voxel_spacing": None,
        "unit": "angstrom",
        "trust_orientation": True,
        "points": points,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc))
    return Path(path)


def write_challenge_store(
    root,
    runs=("TS_5_4", "TS_69_2"),
    shape=(16, 32, 32),
    picks=None,
    split="train",
    kinds=("denoised",),
    voxel_size=CHALLENGE_VOXEL_SIZE,
    seed=0,
):
    """Write a tiny challenge-layout dataset with plain zarr/json.

    Args:
        root: Dataset root (created).
        runs: Run names.
        shape: Tomogram shape (z, y, x) at level 0.
        picks: Picks table (experiment, particle_type, x, y, z in Å); default: two random picks per type
            per run. Pass an empty table for a test split without picks (no overlay is written then).
        split: Split folder.
        kinds: Reconstruction kinds to write (``denoised.zarr`` etc.).
        voxel_size: Å per voxel written into the multiscales scale (the folder name stays 10.000).
        seed: Seed for volumes and default picks.

    Returns:
        ``(picks, volumes)``: the picks table written and ``{run: level-0 float32 volume}``.
    """
    root = Path(root)
    picks = default_picks(runs, shape, voxel_size, seed=seed) if picks is None else picks
    rng = np.random.default_rng(seed)
    volumes = {}
    for run in runs:
        spacing = root / split / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000"
        spacing.mkdir(parents=True, exist_ok=True)
        volumes[run] = (rng.standard_normal(shape) * 1e-5).astype(np.float32)
        for kind in kinds:
            write_zarr_v2_tomogram(spacing / f"{kind}.zarr", volumes[run], voxel_size)
        if len(picks):
            for name in NAMES:
                rows = picks[(picks["experiment"] == run) & (picks["particle_type"] == name)]
                path = root / split / "overlay" / "ExperimentRuns" / run / "Picks" / f"{name}.json"
                write_picks_json(path, run, name, rows[["x", "y", "z"]].to_numpy())
    return picks, volumes
