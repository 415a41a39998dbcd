"""Every cache cryopoint keeps: the embedded synthetic datasets and the normalised training volumes.

Layout::

    <cache>/synthetic/<preset>-<hash>/            # a dataset in the challenge layout (train/..., test/...)
    <cache>/synthetic/<preset>-<hash>/cryopoint_synthetic.json   # its parameters; written last
    <cache>/volumes/<hash>.npy                    # a normalised tomogram, memory-mapped (load_volume)
    <cache>/volumes/<hash>.json                   # its source and voxel size; written last

One hashing rule for both: ``<hash>`` is :func:`params_hash` of every parameter that changes the content,
including :func:`source_digest` of the code that makes it (the ``cryopoint/synth`` package and the writers it
uses for datasets, the normalisation module for volumes) and, for volumes, the source tomogram's identity
(:func:`source_fingerprint`). Neither a changed request, a changed input nor upgraded code ever reuses a stale
entry. Entries are written under a temporary name and renamed into place only once complete, with the file
that marks completion written last: an interrupted write is never reused. A cache hit refreshes that file's
time; :mod:`cryopoint.data.cache_prune` (``python tools/cache.py``) lists the cache and removes what can never
be reused, or the least recently used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from cryopoint import io as cpio
from cryopoint.data import normalize
from cryopoint.io.atomic import atomic_dir, atomic_path, atomic_write_text

__all__ = [
    "default_cache_dir",
    "ensure_synthetic_dataset",
    "load_volume",
    "params_hash",
    "simulator_version",
    "source_digest",
    "source_fingerprint",
    "touch",
]

#: Environment variable that overrides the cache location.
CACHE_ENV = "CRYOPOINT_CACHE"
#: Bump when the cached synthetic layout changes in a way the parameters do not capture.
SYNTHETIC_CACHE_VERSION = 1
#: Bump when the cached-volume file format changes.
VOLUME_CACHE_VERSION = 1
_PARAMS_FILE = "cryopoint_synthetic.json"

_console = Console(stderr=True)


def default_cache_dir() -> Path:
    """The cache root: ``$CRYOPOINT_CACHE`` if set (and not empty), else ``~/.cache/cryopoint``.

    >>> isinstance(default_cache_dir(), Path)
    True
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cryopoint"


def touch(path: str | os.PathLike) -> None:
    """Mark a cache entry as just used (its completion file's mtime), so pruning by age or size keeps it.

    A read-only cache is left as it is.
    """
    try:
        os.utime(path)
    except OSError:
        pass


def params_hash(params: dict, length: int = 16) -> str:
    """A stable hex digest of a JSON-serialisable parameter dict (key order does not matter).

    >>> params_hash({"a": 1, "b": [2, 3]}) == params_hash({"b": [2, 3], "a": 1})
    True
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def source_digest(paths: Iterable[str | os.PathLike]) -> str:
    """Digest of source files (each file's name and bytes, in the given order): the code part of a cache key.

    Every cache keys the code that makes its content with this one rule, so editing that code invalidates
    exactly the entries it made.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "a.py"; _ = f.write_text("x = 1")
    >>> before = source_digest([f]); _ = f.write_text("x = 2"); before != source_digest([f])
    True
    """
    digest = hashlib.sha256()
    for path in map(Path, paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _simulator_sources() -> list[Path]:
    """The source files whose code decides what a synthetic dataset holds: the simulator and its writers."""
    package = Path(__file__).resolve().parents[1]
    return sorted((package / "synth").glob("*.py")) + [package / "io" / "zarr_store.py", package / "io" / "picks.py"]


def _normalize_sources() -> list[Path]:
    """The source files whose code decides what a cached volume holds: the normalisation."""
    return [Path(normalize.__file__).resolve()]


def simulator_version() -> str:
    """Digest of the simulator's source code: any change to it gives synthetic datasets a new cache folder."""
    return source_digest(_simulator_sources())


def source_fingerprint(path: str | os.PathLike) -> dict:
    """Identity of an input on disk: resolved path, and the newest mtime, total size and count of its files.

    A folder (OME-Zarr) counts every file under it, so rewriting any chunk changes the fingerprint.
    """
    path = Path(path)
    files = [path] if path.is_file() else [Path(d) / f for d, _, names in os.walk(path) for f in names]
    stats = [f.stat() for f in files]
    return {
        "path": str(path.resolve()),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        "bytes": sum(s.st_size for s in stats),
        "files": len(stats),
    }


def load_volume(
    path: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read and normalise one tomogram, through the ``.npy`` volume cache when ``cache_dir`` is given.

    Args:
        path: The tomogram (any format :func:`cryopoint.io.read_tomogram` reads).
        cache_dir: Folder of cached volumes (e.g. ``default_cache_dir() / "volumes"``); ``None`` reads and
            normalises in memory every time.

    Returns:
        ``(volume, voxel_size)``: the normalised float32 volume ``(Z, Y, X)``, memory-mapped read-only from
        the cache when ``cache_dir`` is given, and its voxel size ``(z, y, x)`` in Å. The cache key holds the
        source's :func:`source_fingerprint`, the normalisation code's :func:`source_digest` and
        :data:`VOLUME_CACHE_VERSION`; the source is never written to.
    """
    path = Path(path)
    if cache_dir is None:
        tomo = cpio.read_tomogram(path)
        return normalize.normalize_volume(tomo.data), tomo.voxel_size
    cache_dir = Path(cache_dir)
    key = params_hash(
        {
            "source": source_fingerprint(path),
            "normalize": source_digest(_normalize_sources()),
            "format": VOLUME_CACHE_VERSION,
        }
    )
    npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (npy.is_file() and meta.is_file()):
        tomo = cpio.read_tomogram(path)
        with atomic_path(npy) as tmp:
            np.save(tmp, normalize.normalize_volume(tomo.data))
        # Written last: its presence marks a complete cache entry.
        atomic_write_text(meta, json.dumps({"source": str(path.resolve()), "voxel_size": list(tomo.voxel_size)}) + "\n")
    else:
        touch(meta)
    voxel_size = tuple(json.loads(meta.read_text())["voxel_size"])
    return np.load(npy, mmap_mode="r"), voxel_size  # type: ignore[return-value]


def ensure_synthetic_dataset(
    preset: str,
    *,
    runs: int | Sequence[str],
    shape: Sequence[int],
    seed: int,
    cache_dir: str | os.PathLike | None = None,
    overrides: dict | None = None,
) -> Path:
    """Return the root of a synthetic dataset in the challenge layout, generating it on first use.

    Calls :func:`cryopoint.synth.generate_dataset` once per distinct ``(preset, runs, shape, seed)`` and
    simulator code (:func:`simulator_version`); later calls with the same parameters reuse the folder. Where
    the data lives is printed either way.

    Args:
        preset: Simulator preset, e.g. ``"easy"`` or ``"realistic"``.
        runs: Number of runs, or their names, as :func:`cryopoint.synth.generate_dataset` accepts.
        shape: Tomogram shape ``(z, y, x)`` in voxels.
        seed: Simulator seed.
        cache_dir: Cache root; defaults to :func:`default_cache_dir`.
        overrides: :class:`~cryopoint.synth.SynthParams` fields to change (e.g. ``{"imaging": "realspace"}``);
            part of the cache key.

    Returns:
        The dataset root (pass it to ``load_runs(root)``); runs are under ``root/train``.

    >>> root = ensure_synthetic_dataset("easy", runs=3, shape=(64, 128, 128), seed=0)  # doctest: +SKIP
    """
    from cryopoint.synth import generate_dataset  # lazy: the simulator is only needed on a cache miss

    runs_param: int | list[str] = runs if isinstance(runs, int) else [str(r) for r in runs]
    params = {
        "preset": str(preset),
        "runs": runs_param,
        "shape": [int(s) for s in shape],
        "seed": int(seed),
        "version": SYNTHETIC_CACHE_VERSION,
        "simulator": simulator_version(),
    }
    if overrides:  # only when given, so the cache keys of existing datasets stay as they were
        params["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(overrides.items())}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "synthetic" / f"{preset}-{params_hash(params)}"
    if (target / _PARAMS_FILE).is_file():
        _console.print(f"Using cached synthetic dataset ({preset}) at [bold]{target}[/bold]")
        touch(target / _PARAMS_FILE)
        return target
    _console.print(f"Generating synthetic dataset ({preset}, runs={runs_param}, shape={params['shape']}) in {target}")
    # Generated into a temporary sibling and renamed only when complete (and the parameters file, written
    # last, marks completion), so an interrupted run never leaves a reusable half-dataset.
    with atomic_dir(target, overwrite=True) as tmp:
        generate_dataset(
            tmp, runs=runs_param, shape=tuple(params["shape"]), seed=params["seed"], preset=preset, **(overrides or {})
        )
        (tmp / _PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    _console.print(f"Synthetic dataset ready at [bold]{target}[/bold]")
    return target
