"""Folds by whole tomograms: deterministic, a partition, every run validated exactly once, clear errors."""

import numpy as np
import pandas as pd
import pytest

from cryopoint.data.dataset import RunData
from cryopoint.data.folds import assign_folds, split_runs
from cryopoint.errors import ConfigError, DataNotFoundError

RUNS = ["TS_5_4", "TS_69_2", "TS_6_4", "TS_6_6", "TS_73_6", "TS_86_3", "TS_99_9"]


@pytest.mark.parametrize("n_folds", [2, 3, 7])
def test_folds_partition_runs_and_validate_each_once(n_folds):
    seen = []
    for fold in range(n_folds):
        train, val = split_runs(RUNS, n_folds=n_folds, fold=fold)
        assert val, "every fold validates at least one run"
        assert not set(train) & set(val)
        assert sorted(train + val) == sorted(RUNS)
        seen += val
    assert sorted(seen) == sorted(RUNS)
    sizes = [sum(f == k for f in assign_folds(RUNS, n_folds).values()) for k in range(n_folds)]
    assert max(sizes) - min(sizes) <= 1


def test_folds_do_not_depend_on_input_order():
    shuffled = list(np.random.default_rng(1).permutation(RUNS))
    for fold in range(3):
        _, val_a = split_runs(RUNS, n_folds=3, fold=fold)
        _, val_b = split_runs(shuffled, n_folds=3, fold=fold)
        assert sorted(val_a) == sorted(val_b)


def test_split_keeps_rundata_objects_and_input_order():
    picks = pd.DataFrame({"x": [], "y": [], "z": [], "particle_type": []})
    runs = [RunData(n, np.zeros((2, 2, 2), np.float32), 10.0, picks) for n in ["c", "a", "b"]]
    train, val = split_runs(runs, n_folds=3, fold=0)
    assert [r.name for r in val] == ["a"]
    assert [r.name for r in train] == ["c", "b"]
    assert all(isinstance(r, RunData) for r in train + val)


def test_explicit_val_runs_override_folds():
    train, val = split_runs(RUNS, n_folds=5, fold=4, val_runs=["TS_99_9", "TS_5_4"])
    assert val == ["TS_5_4", "TS_99_9"]
    assert len(train) == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"n_folds": 3, "fold": 3}, ConfigError, "[0, 2]"),
        ({"n_folds": 3, "fold": -1}, ConfigError, "data.fold"),
        ({"n_folds": 8, "fold": 0}, ConfigError, "Too few runs"),
        ({"n_folds": 1, "fold": 0}, ConfigError, "val_runs"),
        ({"n_folds": 3, "fold": 0, "val_runs": ["TS_1_1"]}, DataNotFoundError, "TS_69_2"),
        ({"n_folds": 3, "fold": 0, "val_runs": []}, ConfigError, "empty"),
        ({"n_folds": 3, "fold": 0, "val_runs": RUNS}, ConfigError, "No training run"),
    ],
)
def test_split_errors_are_actionable(kwargs, error, words):
    with pytest.raises(error, match=None) as info:
        split_runs(RUNS, **kwargs)
    assert words in str(info.value)


def test_duplicate_run_names_are_refused():
    with pytest.raises(ConfigError, match="unique"):
        split_runs(["a", "a", "b"], n_folds=2, fold=0)
