"""run_layout replays a run's layout; benchmarks/fp_sources.py sorts false positives by what they land on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.fp_sources import CATEGORIES, false_positive_sources
from cryopoint.metric import score
from cryopoint.particles import PARTICLE_NAMES, get_particle
from cryopoint.synth import get_preset, simulate_run
from cryopoint.synth.sample import Slab
from cryopoint.synth.simulate import run_layout

SHAPE = (48, 128, 128)


@pytest.mark.parametrize("preset", ["realistic", "randomized"])
def test_run_layout_replays_the_runs_truth(preset):
    params = get_preset(preset)
    unlabelled = 0
    for seed in (0, 1, 2):
        _, truth = simulate_run(SHAPE, params, np.random.default_rng(seed))
        layout, slab = run_layout(SHAPE, params, np.random.default_rng(seed))
        labelled = layout[layout.kind == "particle"]
        assert len(labelled) == len(truth) and set(layout.kind) <= {
            "particle",
            "shell",
            "blob",
            "assembly",
            "gold",
            "vesicle",
            "filament",
        }
        cols = ["particle_type", "x", "y", "z"]
        key = ["particle_type", "x"]
        pd.testing.assert_frame_equal(
            labelled[cols].sort_values(key).reset_index(drop=True), truth[cols].sort_values(key).reset_index(drop=True)
        )
        unlabelled += int((layout.kind != "particle").sum())
        bottom, top = slab.surfaces(np.float64(0.0), np.float64(0.0))
        assert bottom < top
    assert unlabelled > 0  # the clutter is there too


def test_run_layout_names_filaments_and_gold():
    params = get_preset("realistic", filaments_per_volume=20.0, gold_per_volume=20.0)
    layout, _ = run_layout((64, 256, 256), params, np.random.default_rng(3))
    assert {"filament", "gold"} <= set(layout.kind)


def _layout(rows):
    return pd.DataFrame(rows, columns=["kind", "particle_type", "radius", "x", "y", "z"])


def test_each_false_positive_gets_one_category_and_they_add_up_to_the_metric():
    apo = get_particle("apo-ferritin").radius
    flat = Slab(bottom=(0.0, 0.0, 0.0), top=(1000.0, 0.0, 0.0))  # ice from z = 0 to 1000 Å
    layout = _layout(
        [
            ("particle", "apo-ferritin", apo, 500.0, 500.0, 500.0),
            ("particle", "ribosome", 150.0, 2000.0, 500.0, 500.0),
            ("shell", "", apo * 1.1, 500.0, 2000.0, 500.0),  # an apo-ferritin look-alike
            ("blob", "", 140.0, 2000.0, 2000.0, 500.0),  # clutter far from apo-ferritin's size
        ]
    )
    picks = pd.DataFrame(
        [
            ("apo-ferritin", 505.0, 500.0, 500.0),  # the hit
            ("apo-ferritin", 495.0, 500.0, 500.0),  # a duplicate on it
            ("apo-ferritin", 2000.0, 500.0, 510.0),  # on the ribosome
            ("apo-ferritin", 500.0, 2000.0, 500.0),  # on the shell
            ("apo-ferritin", 2000.0, 2000.0, 500.0),  # on the big blob
            ("apo-ferritin", 2000.0, 2100.0, 500.0),  # inside the blob, off its centre
            ("apo-ferritin", 4000.0, 4000.0, 500.0),  # nothing near, in the ice
            ("apo-ferritin", 4000.0, 4000.0, 1500.0),  # nothing near, above the ice
        ],
        columns=["particle_type", "x", "y", "z"],
    )
    counts = false_positive_sources(picks, layout, flat)
    assert counts.loc["apo-ferritin"].to_dict() == dict(zip(CATEGORIES, [1, 1, 1, 1, 1, 1, 1], strict=True))
    assert counts.drop(index="apo-ferritin").to_numpy().sum() == 0
    truth = layout[layout.kind == "particle"][["particle_type", "x", "y", "z"]].assign(experiment="t")
    table = score(truth, picks.assign(experiment="t")).table
    assert counts.sum(axis=1).to_dict() == {n: int(table.loc[n, "fp"]) for n in PARTICLE_NAMES}
