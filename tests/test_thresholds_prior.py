"""Thresholds shrunk toward a prior (a checkpoint's), by the labelled particles behind each class's choice."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_thresholds_rules import CLASSES, dataset

from cryopoint.errors import ConfigError
from cryopoint.metric import score
from cryopoint.particles import PARTICLE_NAMES
from cryopoint.post.thresholds import (
    DEFAULT_PRIOR_STRENGTH,
    apply_thresholds,
    cross_fold_score,
    folds_by_tomogram,
    shrink_to_prior,
    tune_out_of_fold,
    tune_thresholds,
)

PRIOR = {name: 0.3 + 0.05 * i for i, name in enumerate(PARTICLE_NAMES)}


def test_shrinkage_weighs_the_prior_as_strength_particles():
    chosen = {"ribosome": 0.8, "thyroglobulin": 0.6, "apo-ferritin": 0.1}
    prior = {"ribosome": 0.2, "thyroglobulin": 0.4, "apo-ferritin": 0.5}
    out = shrink_to_prior(chosen, prior, {"ribosome": 25, "thyroglobulin": 75}, strength=25)
    assert out["ribosome"] == pytest.approx(0.5)  # as many particles as the prior weighs: halfway
    assert out["thyroglobulin"] == pytest.approx((75 * 0.6 + 25 * 0.4) / 100)
    assert out["apo-ferritin"] == pytest.approx(0.5)  # no labelled particle: the prior stands
    assert shrink_to_prior(chosen, prior, {}, strength=0) == chosen  # no weight: the choice stands
    partial = shrink_to_prior(chosen, {"ribosome": 0.2}, {"ribosome": 25, "thyroglobulin": 75}, strength=25)
    assert partial == pytest.approx({"ribosome": 0.5, "thyroglobulin": 0.6, "apo-ferritin": 0.1})  # no prior: kept


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.integers(0, 10_000),
    st.floats(0.5, 200),
)
def test_shrunk_threshold_lies_between_choice_and_prior_and_moves_to_the_choice_with_more_labels(c, p, n, s):
    one = shrink_to_prior({"ribosome": c}, {"ribosome": p}, {"ribosome": n}, s)["ribosome"]
    more = shrink_to_prior({"ribosome": c}, {"ribosome": p}, {"ribosome": n + 100}, s)["ribosome"]
    assert min(c, p) - 1e-12 <= one <= max(c, p) + 1e-12
    assert abs(more - c) <= abs(one - c) + 1e-12


@pytest.mark.parametrize(
    "args, message",
    [
        (({"ribosome": 0.5}, {"ribosome": 0.2}, {}, -1), ">= 0"),
        (({"ribosome": 0.5}, {"ribosome": 0.2}, {}, float("nan")), ">= 0"),
        (({"ribosome": 0.5}, {"ribosome": float("nan")}, {}, 25), "finite"),
    ],
)
def test_bad_priors_say_what_to_do(args, message):
    with pytest.raises(ConfigError, match=message):
        shrink_to_prior(*args)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("strength", [5.0, DEFAULT_PRIOR_STRENGTH])
def test_tuning_with_a_prior_shrinks_the_rules_choice_and_scores_the_shrunk_thresholds(seed, strength):
    truth, preds = dataset(seed)
    plain = tune_thresholds(truth, preds)
    res = tune_thresholds(truth, preds, prior=PRIOR, prior_strength=strength)
    assert res.chosen == plain.thresholds and plain.chosen == plain.thresholds
    assert res.prior_strength == strength and plain.prior_strength is None
    counts = truth["particle_type"].value_counts().to_dict()
    assert res.thresholds == pytest.approx(shrink_to_prior(plain.thresholds, PRIOR, counts, strength))
    for name in PARTICLE_NAMES:
        if name not in CLASSES:  # no labelled particle of the class: the prior, not the no-predictions 0.0
            assert res.thresholds[name] == pytest.approx(PRIOR[name])
    assert res.score_after == pytest.approx(score(truth, apply_thresholds(preds, res.thresholds)).score)
    assert res.score_after <= plain.score_after + 1e-12  # the argmax is the best on its own data


def test_out_of_fold_and_cross_fold_pass_the_prior_on():
    truth, preds = dataset(3, n_exp=4)
    folds = folds_by_tomogram(preds)
    pooled = tune_out_of_fold(truth, folds, prior=PRIOR)
    assert pooled.thresholds == pytest.approx(tune_thresholds(truth, preds, prior=PRIOR).thresholds)
    crossed = cross_fold_score(truth, folds, prior=PRIOR, prior_strength=10)
    plain = cross_fold_score(truth, folds)
    for name in folds:
        others = pd.concat([f for k, f in folds.items() if k != name], ignore_index=True)
        t_others = truth[truth.experiment.isin(set(others.experiment))]
        expected = tune_thresholds(t_others, others, prior=PRIOR, prior_strength=10).thresholds
        assert crossed.thresholds[name] == pytest.approx(expected)
    assert crossed.oracle == pytest.approx(plain.oracle)  # the oracle is argmax on everything, prior or not
    assert crossed.thresholds != plain.thresholds  # the prior moved the honest thresholds
