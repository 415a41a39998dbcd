"""Shared test settings: deterministic, single-threaded torch so tests are fast and repeatable on 2 cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch is a hard dependency; let the failing import surface in the tests that use it
        pass


@pytest.fixture
def rng():
    return np.random.default_rng(0)
