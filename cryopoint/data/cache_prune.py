"""What is in the cache, which entries no run can ever reuse, and removing them (or the least recently used).

The caches of :mod:`cryopoint.data.cache` and the ONNX exports of :mod:`cryopoint.model.onnx_runtime` are keyed
by everything that decides their content, so they never serve a stale entry, but they also never forget one:
every edited tomogram, every new simulator version and every interrupted write leaves files behind. This module
sorts each entry into one of three states:

* ``incomplete``: an interrupted write (a temporary ``.<name>.*.tmp*`` sibling, or a volume without its
  completion file). Nothing reads it. Removed only once it has not changed for ``grace`` seconds, so a write
  still in progress in another process is left alone.
* ``unreachable``: complete, but its key can no longer be produced: the source tomogram is gone or has changed
  since, or the code that made it (normalisation, simulator) has changed. Nothing will ever read it again.
* ``live``: reusable. Removed only when asked by age (``older_than``) or by size (``max_bytes``, least recently
  used first; a cache hit refreshes an entry's time).

Everything here only ever deletes inside the cache root it is given.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from cryopoint.data.cache import (
    _PARAMS_FILE,
    SYNTHETIC_CACHE_VERSION,
    VOLUME_CACHE_VERSION,
    _normalize_sources,
    default_cache_dir,
    params_hash,
    simulator_version,
    source_digest,
    source_fingerprint,
)
from cryopoint.errors import ConfigError

__all__ = ["CacheEntry", "list_cache", "parse_size", "prune_cache"]

#: Kinds of entry, by the sub-folder of the cache root that holds them.
KINDS = ("synthetic", "volumes", "onnx")
#: Seconds an incomplete entry must have been left untouched before it counts as abandoned.
DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class CacheEntry:
    """One cache entry: its files, size, state and when it was last written or reused."""

    kind: str  # "synthetic", "volumes" or "onnx"
    name: str
    paths: tuple[Path, ...]
    bytes: int
    last_used: float  # seconds since the epoch
    state: str  # "live", "unreachable" or "incomplete"
    reason: str = ""
    source: Path | None = None  # a volume's source tomogram


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum((Path(d) / f).lstat().st_size for d, _, names in os.walk(path) for f in names)


def _newest_mtime(path: Path) -> float:
    if not path.is_dir():
        return path.lstat().st_mtime
    times = [path.lstat().st_mtime] + [(Path(d) / f).lstat().st_mtime for d, _, names in os.walk(path) for f in names]
    return max(times)


def _is_temporary(name: str) -> bool:
    # atomic_path / atomic_dir write ".<target>.<random>.tmp<suffix>"; atomic_dir parks a replaced folder as
    # ".<target>.old-<pid>" for an instant.
    return name.startswith(".") and (".tmp" in name or ".old-" in name)


def _incomplete(kind: str, path: Path, reason: str) -> CacheEntry:
    return CacheEntry(kind, path.name, (path,), _size(path), _newest_mtime(path), "incomplete", reason)


def _synthetic_entries(folder: Path, simulator: str) -> Iterable[CacheEntry]:
    for path in sorted(folder.iterdir()):
        if _is_temporary(path.name):
            yield _incomplete("synthetic", path, "interrupted generation")
            continue
        if not path.is_dir():
            continue
        marker = path / _PARAMS_FILE
        if not marker.is_file():
            yield _incomplete("synthetic", path, "no parameters file (generation did not finish)")
            continue
        try:
            params = json.loads(marker.read_text())
            expected = f"{params['preset']}-{params_hash(params)}"
        except (ValueError, KeyError, TypeError):
            params, expected = {}, None
        size, used = _size(path), marker.stat().st_mtime
        if expected != path.name:
            state, reason = "unreachable", "parameters file does not match the folder's key"
        elif params.get("version") != SYNTHETIC_CACHE_VERSION or params.get("simulator") != simulator:
            state, reason = "unreachable", "made by another version of the simulator"
        else:
            state, reason = "live", ""
        yield CacheEntry("synthetic", path.name, (path,), size, used, state, reason)


def _volume_entries(folder: Path, normalisation: str) -> Iterable[CacheEntry]:
    files = sorted(folder.iterdir())
    stems = {p.stem for p in files if p.suffix == ".json" and not _is_temporary(p.name)}
    for path in files:
        if _is_temporary(path.name):
            yield _incomplete("volumes", path, "interrupted write")
        elif path.suffix == ".npy" and path.stem not in stems:
            yield _incomplete("volumes", path, "no metadata file (write did not finish)")
    for stem in sorted(stems):
        meta, npy = folder / f"{stem}.json", folder / f"{stem}.npy"
        paths = (npy, meta) if npy.exists() else (meta,)
        size, used = sum(p.stat().st_size for p in paths), meta.stat().st_mtime
        try:
            source = Path(json.loads(meta.read_text())["source"])
        except (ValueError, KeyError, TypeError):
            yield CacheEntry("volumes", stem, paths, size, used, "unreachable", "unreadable metadata file")
            continue
        if not npy.exists():
            yield CacheEntry("volumes", stem, paths, size, used, "unreachable", "volume file missing")
        elif not source.is_absolute():  # written relative to a working directory we do not know: cannot tell
            yield CacheEntry("volumes", stem, paths, size, used, "live", "relative source path", source)
        elif not source.exists():
            yield CacheEntry("volumes", stem, paths, size, used, "unreachable", f"source gone: {source}", source)
        else:
            # load_volume's key, recomputed now: a different one means the source or the normalisation changed.
            key = params_hash(
                {"source": source_fingerprint(source), "normalize": normalisation, "format": VOLUME_CACHE_VERSION}
            )
            if key == stem:
                yield CacheEntry("volumes", stem, paths, size, used, "live", "", source)
            else:
                reason = f"source or normalisation code changed since: {source}"
                yield CacheEntry("volumes", stem, paths, size, used, "unreachable", reason, source)


def _onnx_entries(folder: Path) -> Iterable[CacheEntry]:
    # An export is keyed by the model's weights, which only the model's owner has: never unreachable by itself.
    for path in sorted(folder.iterdir()):
        if _is_temporary(path.name):
            yield _incomplete("onnx", path, "interrupted export")
        elif path.suffix == ".onnx":
            yield CacheEntry("onnx", path.name, (path,), path.stat().st_size, path.stat().st_mtime, "live")


def list_cache(root: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Every entry under the cache ``root`` (default :func:`~cryopoint.data.cache.default_cache_dir`).

    Files the cache did not write are not listed, and so never removed.

    >>> import tempfile
    >>> list_cache(tempfile.mkdtemp())
    []
    """
    root = Path(root) if root is not None else default_cache_dir()
    entries: list[CacheEntry] = []
    if (root / "synthetic").is_dir():
        entries += _synthetic_entries(root / "synthetic", simulator_version())
    if (root / "volumes").is_dir():
        entries += _volume_entries(root / "volumes", source_digest(_normalize_sources()))
    if (root / "onnx").is_dir():
        entries += _onnx_entries(root / "onnx")
    return entries


def parse_size(text: str) -> int:
    """Bytes from a size such as ``"500M"``, ``"20G"``, ``"1.5T"`` or ``"1048576"`` (powers of 1024).

    >>> parse_size("20G") == 20 * 1024**3, parse_size("512")
    (True, 512)
    """
    text = str(text).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"Not a size: {text!r}; give bytes or a number with K, M, G or T, e.g. 20G.") from None
    if not value >= 0:
        raise ConfigError(f"A size must be zero or more; got {text!r}.")
    return int(value * scale)


def prune_cache(
    root: str | os.PathLike | None = None,
    *,
    stale: bool = True,
    older_than_s: float | None = None,
    max_bytes: int | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    now: float | None = None,
) -> list[CacheEntry]:
    """Remove cache entries and return those removed (or, with ``dry_run``, those that would be).

    Args:
        root: Cache root; default :func:`~cryopoint.data.cache.default_cache_dir`.
        stale: Remove ``unreachable`` entries and ``incomplete`` ones untouched for ``grace_s`` seconds.
        older_than_s: Also remove ``live`` entries not used for this many seconds.
        max_bytes: Then remove ``live`` entries, least recently used first, until what is left (incomplete
            entries still within their grace included) fits in this many bytes.

    A synthetic dataset that goes takes with it the cached volumes normalised from its tomograms, which no run
    could read any more.
        grace_s: How long an incomplete entry is assumed to be a write still in progress.
        dry_run: Decide, but delete nothing.
        now: The current time (seconds since the epoch); for tests.
    """
    now = time.time() if now is None else now
    entries = list_cache(root)
    doomed: dict[tuple[str, str], CacheEntry] = {}

    def remove(entry: CacheEntry) -> int:
        """Doom ``entry`` (a dataset with the volumes normalised from its tomograms); the bytes newly doomed."""
        added = [entry]
        if entry.kind == "synthetic":
            folder = entry.paths[0]
            added += [
                replace(v, state="unreachable", reason=f"source in {folder}")
                for v in entries
                if v.kind == "volumes" and v.source is not None and v.source.is_relative_to(folder)
            ]
        fresh = [a for a in added if (a.kind, a.name) not in doomed]
        doomed.update({(a.kind, a.name): a for a in fresh})
        return sum(a.bytes for a in fresh)

    for e in entries:
        abandoned = e.state == "incomplete" and now - e.last_used >= grace_s
        too_old = e.state == "live" and older_than_s is not None and now - e.last_used > older_than_s
        if (stale and (e.state == "unreachable" or abandoned)) or too_old:
            remove(e)
    if max_bytes is not None:
        left = sum(e.bytes for e in entries) - sum(e.bytes for e in doomed.values())
        for e in sorted((e for e in entries if e.state == "live"), key=lambda e: e.last_used):
            if left <= max_bytes:
                break
            if (e.kind, e.name) not in doomed:
                left -= remove(e)
    doomed_list = list(doomed.values())
    if not dry_run:
        for e in doomed_list:
            for path in e.paths:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    return doomed_list
