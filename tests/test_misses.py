"""Miss causes: every missed particle gets exactly the cause its nearby candidates say."""

import numpy as np
import pandas as pd
import pytest

from cryopoint.errors import PicksFormatError
from cryopoint.metric import score
from cryopoint.particles import get_particle
from cryopoint.post.thresholds import apply_thresholds
from cryopoint.viz.misses import CAUSES, miss_cause_table, miss_causes, near_threshold

APO = "apo-ferritin"  # radius 60 Å: match distance 30 Å, off-centre reach 60 Å
RIBO = "ribosome"  # radius 150 Å: match distance 75 Å


def picks(rows):
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z", *(["score"] * (len(rows[0]) > 5))])


@pytest.fixture
def case():
    truth = picks(
        [
            ("r1", APO, 1000, 1000, 500),  # found by a kept pick 10 Å away
            ("r1", APO, 2000, 1000, 500),  # a candidate 20 Å away, below threshold
            ("r1", APO, 3000, 1000, 500),  # the nearest own candidate 45 Å away: off-centre
            ("r1", APO, 4000, 1000, 500),  # a kept ribosome pick 20 Å away, no apo-ferritin near: other class
            ("r1", APO, 5000, 1000, 500),  # an apo-ferritin candidate 80 Å away only: no peak
            ("r2", RIBO, 1000, 1000, 500),  # a run with no candidate of its class at all: no peak
        ]
    )
    candidates = picks(
        [
            ("r1", APO, 1010, 1000, 500, 0.9),
            ("r1", APO, 2000, 1020, 500, 0.2),
            ("r1", APO, 3000, 1000, 545, 0.8),
            ("r1", RIBO, 4020, 1000, 500, 0.7),
            ("r1", APO, 5080, 1000, 500, 0.9),
            ("r3", RIBO, 1000, 1000, 500, 0.9),  # a run without truth: ignored
        ]
    )
    kept = apply_thresholds(candidates, {APO: 0.5, RIBO: 0.5})
    return truth, kept, candidates


def test_each_miss_gets_the_cause_its_neighbours_say(case):
    truth, kept, candidates = case
    out = miss_causes(truth, kept, candidates)
    assert list(out.index) == [1, 2, 3, 4, 5]  # the found particle (index 0) is not a miss
    assert list(out["cause"]) == ["below threshold", "off-centre", "other class", "no peak", "no peak"]
    np.testing.assert_allclose(out["own_distance"], [20, 45, np.hypot(1000, 45), 80, np.inf])
    np.testing.assert_allclose(out["own_score"], [0.2, 0.8, 0.8, 0.9, np.nan])
    assert list(out["other_class"]) == ["", "", RIBO, "", ""]
    # Misses are exactly the metric's false negatives.
    fn = score(truth, kept).table["fn"]
    assert out.groupby("particle_type").size().to_dict() == {k: int(v) for k, v in fn.items() if v}


def test_without_candidates_nothing_is_below_threshold(case):
    truth, kept, _ = case
    out = miss_causes(truth, kept)
    # The below-threshold candidate is not kept: the nearest kept apo-ferritin is 990 Å off, so no peak.
    assert "below threshold" not in set(out["cause"])
    assert out.loc[1, "cause"] == "no peak"


def test_near_factor_sets_the_off_centre_reach(case):
    truth, kept, candidates = case
    assert miss_causes(truth, kept, candidates, near_factor=1.4).loc[2, "cause"] == "no peak"  # 45 Å > 42 Å
    wide = miss_causes(truth, kept, candidates, near_factor=3)  # 80 Å < 90 Å
    assert wide.loc[4, "cause"] == "off-centre"
    with pytest.raises(ValueError, match="near_factor"):
        miss_causes(truth, kept, candidates, near_factor=0.5)


def test_match_radius_follows_the_true_class():
    """A ribosome peak 60 Å off is within its 75 Å match distance (found); an apo-ferritin one is not."""
    truth = picks([("r", RIBO, 0, 0, 0), ("r", APO, 1000, 0, 0)])
    kept = picks([("r", RIBO, 60, 0, 0, 0.9), ("r", APO, 1060, 0, 0, 0.9)])
    out = miss_causes(truth, kept)
    assert list(out["particle_type"]) == [APO] and out["cause"].item() == "off-centre"
    assert 0.5 * get_particle(APO).radius < 60 <= 2 * 0.5 * get_particle(APO).radius


def test_table_counts_add_up(case):
    truth, kept, candidates = case
    table = miss_cause_table(miss_causes(truth, kept, candidates), truth)
    assert list(table.index) == [APO, RIBO]
    assert table.loc[APO].to_dict() == {
        "true": 5, "missed": 4, "below threshold": 1, "off-centre": 1, "other class": 1, "no peak": 1
    }  # fmt: skip
    assert table.loc[RIBO, "missed"] == table.loc[RIBO, "no peak"] == 1
    assert (table[list(CAUSES)].sum(axis=1) == table["missed"]).all()


def test_nothing_missed_gives_an_empty_frame_and_a_zero_table():
    truth = picks([("r", APO, 0, 0, 0)])
    kept = picks([("r", APO, 5, 0, 0, 0.9)])
    out = miss_causes(truth, kept)
    assert out.empty and {"cause", "own_distance", "own_score", "other_class"} <= set(out.columns)
    table = miss_cause_table(out, truth)
    assert table.loc[APO, "true"] == 1 and table.loc[APO, "missed"] == 0


def test_near_threshold_keeps_picks_within_a_factor_of_their_class_threshold(case):
    _, _, candidates = case
    near = near_threshold(candidates, {APO: 0.5})  # apo-ferritin floor 0.25; ribosome has no threshold: all kept
    assert list(near.index) == [0, 2, 3, 4, 5]  # the 0.2 apo-ferritin pick is dropped
    assert list(near_threshold(candidates, {APO: 0.5}, factor=0.4).index) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(PicksFormatError, match="score"):
        near_threshold(candidates.drop(columns="score"), {APO: 0.5})


def test_a_far_below_threshold_pick_is_not_a_near_miss(case):
    """Judged against near-threshold candidates, the 0.2 pick (threshold 0.5) no longer explains its miss."""
    truth, kept, candidates = case
    out = miss_causes(truth, kept, near_threshold(candidates, {APO: 0.5, RIBO: 0.5}))
    assert out.loc[1, "cause"] == "no peak"
