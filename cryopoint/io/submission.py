"""The challenge submission CSV: ``id,experiment,particle_type,x,y,z`` with coordinates in Å."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cryopoint.errors import DataNotFoundError, PicksFormatError
from cryopoint.io.atomic import atomic_path, refuse_inputs
from cryopoint.io.picks import PICKS_COLUMNS, check_picks_table

__all__ = ["SUBMISSION_COLUMNS", "write_submission_csv", "read_submission_csv"]

#: Header of a submission file, in order.
SUBMISSION_COLUMNS: tuple[str, ...] = ("id", *PICKS_COLUMNS)


def write_submission_csv(
    path: str | os.PathLike,
    picks: pd.DataFrame,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write a picks table as a submission CSV, atomically.

    Rows keep the table's order; ``id`` is 0..N-1. Other columns (``score``, voxel columns) are not written:
    the challenge format has none. Coordinates are written with full float precision.

    Args:
        path: Target ``.csv``.
        picks: Picks table with ``experiment, particle_type, x, y, z`` (Å).
        overwrite: Replace an existing file.
        inputs: Paths this run reads from; writing over any of them is refused.

    Raises:
        PicksFormatError, UnknownParticleError: invalid table.
        OutputExistsError: the file exists and ``overwrite`` is False, or it is one of ``inputs``.
    """
    check_picks_table(picks, source="submission picks")
    refuse_inputs(path, inputs)
    out = picks.loc[:, list(PICKS_COLUMNS)].reset_index(drop=True)
    out.insert(0, "id", range(len(out)))
    with atomic_path(path, overwrite=overwrite) as tmp:
        out.to_csv(tmp, index=False)
    return Path(path)


def read_submission_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a submission CSV into a picks table.

    Args:
        path: CSV with header ``id,experiment,particle_type,x,y,z`` (extra columns such as ``score`` are kept).

    Returns:
        Picks table ``experiment, particle_type, x, y, z`` (Å) plus any extra columns, ``id`` dropped.

    Raises:
        DataNotFoundError: the file does not exist.
        PicksFormatError: unreadable CSV, missing columns, non-numeric or non-finite coordinates.
        UnknownParticleError: a particle type is not in the catalogue.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"Submission file {path} does not exist (expected a CSV with {','.join(SUBMISSION_COLUMNS)})."
        )
    try:
        table = pd.read_csv(path, dtype={"experiment": str, "particle_type": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PicksFormatError(f"{path} is not a readable CSV: {err}") from None
    missing = [c for c in PICKS_COLUMNS if c not in table.columns]
    if missing:
        raise PicksFormatError(
            f"{path} lacks column(s) {', '.join(missing)}; expected header {','.join(SUBMISSION_COLUMNS)}. "
            f"Header found: {','.join(map(str, table.columns))}."
        )
    try:
        table[["x", "y", "z"]] = table[["x", "y", "z"]].astype("float64")
    except (ValueError, TypeError) as err:
        raise PicksFormatError(f"{path}: coordinates x, y, z must be numbers (Å): {err}") from None
    table = table.drop(columns="id", errors="ignore")
    return check_picks_table(table, source=str(path)).reset_index(drop=True)
