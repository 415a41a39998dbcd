"""The cache folder and the embedded synthetic dataset, generated on first use and reused afterwards.

Layout::

    <cache>/synthetic/<preset>-<hash>/            # a dataset in the challenge layout (train/..., test/...)
    <cache>/synthetic/<preset>-<hash>/cryopoint_synthetic.json   # its parameters; written last
    <cache>/volumes/<hash>.npy                    # normalised tomograms (cryopoint.data.dataset.load_runs)

``<hash>`` is a hash of every parameter that changes the content and of the simulator's source code (the
``cryopoint/synth`` package and the writers it uses), so neither a changed request nor an upgraded simulator
ever reuses a stale folder. Generation happens in a temporary sibling folder that is renamed into place only
once complete: an interrupted generation leaves no folder under the final name and is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from cryopoint.io.atomic import atomic_dir

__all__ = ["default_cache_dir", "ensure_synthetic_dataset", "params_hash", "simulator_version"]

#: Environment variable that overrides the cache location.
CACHE_ENV = "CRYOPOINT_CACHE"
#: Bump when the cached synthetic layout changes in a way the parameters do not capture.
SYNTHETIC_CACHE_VERSION = 1
_PARAMS_FILE = "cryopoint_synthetic.json"

_console = Console(stderr=True)


def default_cache_dir() -> Path:
    """The cache root: ``$CRYOPOINT_CACHE`` if set (and not empty), else ``~/.cache/cryopoint``.

    >>> isinstance(default_cache_dir(), Path)
    True
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cryopoint"


def params_hash(params: dict, length: int = 16) -> str:
    """A stable hex digest of a JSON-serialisable parameter dict (key order does not matter).

    >>> params_hash({"a": 1, "b": [2, 3]}) == params_hash({"b": [2, 3], "a": 1})
    True
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _simulator_sources() -> list[Path]:
    """The source files whose code decides what a synthetic dataset holds: the simulator and its writers."""
    package = Path(__file__).resolve().parents[1]
    return sorted((package / "synth").glob("*.py")) + [package / "io" / "zarr_store.py", package / "io" / "picks.py"]


def simulator_version() -> str:
    """Digest of the simulator's source code: any change to it gives synthetic datasets a new cache folder."""
    digest = hashlib.sha256()
    for path in _simulator_sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


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
