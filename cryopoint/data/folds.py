"""Cross-validation folds by whole tomograms: a run is either trained on or validated on, never both.

Rule (deterministic, independent of the order runs are given in): run names are sorted, and the run at
sorted position ``k`` is validated in fold ``k % n_folds``. Across ``fold = 0 .. n_folds - 1`` every run is
validated exactly once, and fold sizes differ by at most one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from cryopoint.errors import ConfigError, DataNotFoundError

__all__ = ["assign_folds", "split_runs"]

R = TypeVar("R")


def _name(run: object) -> str:
    """A run's name: the string itself, or the ``.name`` of a :class:`~cryopoint.data.dataset.RunData`."""
    return run if isinstance(run, str) else run.name  # type: ignore[attr-defined]


def assign_folds(names: Sequence[str], n_folds: int) -> dict[str, int]:
    """Map each run name to the fold in which it is validated.

    Args:
        names: Run names (unique).
        n_folds: Number of folds, at least 2 and at most ``len(names)``.

    Returns:
        ``{run name: fold index}``; fold ``f`` validates the runs with value ``f``.

    Raises:
        ConfigError: ``n_folds`` below 2 or above the number of runs, or duplicate run names.

    >>> assign_folds(["TS_6_4", "TS_5_4", "TS_69_2"], 3)
    {'TS_5_4': 0, 'TS_69_2': 1, 'TS_6_4': 2}
    """
    names = list(names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Run names must be unique; duplicated: {', '.join(duplicates)}.")
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError(
            f"data.n_folds must be an integer >= 2 (got {n_folds!r}); to choose validation runs by hand, "
            "set data.val_runs instead."
        )
    if n_folds > len(names):
        raise ConfigError(
            f"Too few runs for {n_folds} folds: only {len(names)} run(s) ({', '.join(sorted(names))}). "
            f"Use data.n_folds <= {len(names)} (and >= 2), or add runs."
        )
    return {name: k % n_folds for k, name in enumerate(sorted(names))}


def split_runs(
    runs: Sequence[R], *, n_folds: int, fold: int, val_runs: Sequence[str] | None = None
) -> tuple[list[R], list[R]]:
    """Split runs into training and validation runs, holding out whole tomograms.

    Args:
        runs: Runs as names (``str``) or objects with a ``.name`` (e.g. ``RunData``); returned as given.
        n_folds: Number of folds (see :func:`assign_folds`); ignored when ``val_runs`` is given.
        fold: Which fold to validate on, ``0 <= fold < n_folds``; ignored when ``val_runs`` is given.
        val_runs: Explicit validation run names; overrides ``n_folds``/``fold``.

    Returns:
        ``(train_runs, val_runs)``, each in the input order. Together they hold every run exactly once.

    Raises:
        ConfigError: fold out of range, too few runs, duplicate names, or no run left to train on.
        DataNotFoundError: a name in ``val_runs`` is not among the runs (the message lists the known ones).

    >>> split_runs(["a", "b", "c", "d"], n_folds=2, fold=1)
    (['a', 'c'], ['b', 'd'])
    >>> split_runs(["a", "b", "c"], n_folds=3, fold=0, val_runs=["c"])
    (['a', 'b'], ['c'])
    """
    runs = list(runs)
    names = [_name(r) for r in runs]
    if val_runs is not None:
        wanted = list(val_runs)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise DataNotFoundError(
                f"Unknown validation run(s) {', '.join(map(repr, unknown))}; known runs: {', '.join(sorted(names))}."
            )
        if not wanted:
            raise ConfigError("data.val_runs is empty; name at least one run, or leave it unset to use folds.")
        held_out = set(wanted)
    else:
        folds = assign_folds(names, n_folds)
        if not isinstance(fold, int) or not 0 <= fold < n_folds:
            raise ConfigError(f"data.fold must be an integer in [0, {n_folds - 1}] for {n_folds} folds; got {fold!r}.")
        held_out = {n for n, f in folds.items() if f == fold}
    train = [r for r, n in zip(runs, names) if n not in held_out]
    val = [r for r, n in zip(runs, names) if n in held_out]
    if not train:
        raise ConfigError(
            f"No training run left: all of {', '.join(sorted(names))} are validation runs. Hold out fewer runs."
        )
    return train, val
