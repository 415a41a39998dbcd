"""Atomic output: write to a temporary sibling, then rename over the target.

A crash mid-write leaves the old file (or nothing) in place, never a half-written one. Writers refuse to
write over a path the caller declared as an input. Outputs get the permissions of a plainly created file
(``0o666`` / ``0o777`` minus the umask), not the owner-only ones of :mod:`tempfile`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryopoint.errors import OutputExistsError

__all__ = ["atomic_path", "atomic_write_text", "atomic_dir", "refuse_inputs"]

# The process umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def refuse_inputs(target: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse to write ``target`` when it is one of ``inputs`` or a folder that contains one.

    Args:
        target: The path about to be written (file or directory).
        inputs: Paths the caller reads from.

    Raises:
        OutputExistsError: ``target`` would replace an input.
    """
    out = Path(target).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if src == out or out in src.parents:
            raise OutputExistsError(
                f"Refusing to write {target}: it would replace the input {item}. Choose another output path."
            )


def _prepare(target: Path, overwrite: bool) -> Path:
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary file path next to ``target``; on success rename it onto ``target``.

    ``suffix`` defaults to the target's own suffixes so that libraries that pick a format by extension
    (starfile, mrcfile) still see the right one.

    >>> with atomic_path("out.csv") as tmp:  # doctest: +SKIP
    ...     df.to_csv(tmp)
    """
    target = _prepare(Path(target), overwrite)
    suffix = "".join(target.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes it owner-only
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(target: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``target`` atomically; returns the target path."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(target)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``target``; on success move it onto ``target``.

    For directory-shaped outputs (zarr stores). An existing target is replaced only with ``overwrite``;
    the old one is removed only after the new one is complete.
    """
    target = _prepare(Path(target), overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it owner-only
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
