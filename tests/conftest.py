"""Shared test settings: deterministic, single-threaded torch so tests are fast and repeatable on 2 cores, and a
private cache folder so the suite never writes into (or reads stale entries from) the user's own cache."""

import os
import shutil
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Everything that falls back to ``default_cache_dir()`` (volume cache, ONNX exports, generated datasets) goes
# here for this run and is deleted at its end. Set before cryopoint is imported anywhere.
_TEST_CACHE = tempfile.mkdtemp(prefix="cryopoint-test-cache-")
os.environ["CRYOPOINT_CACHE"] = _TEST_CACHE

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch is a hard dependency; let the failing import surface in the tests that use it
        pass


def pytest_unconfigure(config):
    shutil.rmtree(_TEST_CACHE, ignore_errors=True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def plain_detector():
    """The shipped detector without its per-tomogram rule: its thresholds are then exactly its own (a copy: tests
    may change it)."""
    import copy

    import cryopoint

    det = copy.deepcopy(cryopoint.load("default"))
    det.config.post.noise_tail = False
    det.config.post.adaptive_alpha = 0.0
    return det
