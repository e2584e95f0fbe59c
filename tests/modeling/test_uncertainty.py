"""The queue's uncertainty scores (modeling.ml.uncertainty): Django-free arithmetic."""

import math

import pytest

from modeling.ml.uncertainty import (
    ensemble_disagreement,
    margin_uncertainty,
    preference_probability,
    uncertainty_scores,
)


def test_preference_probability_is_the_bradley_terry_sigmoid_and_never_overflows():
    assert preference_probability(1.0, 1.0) == 0.5
    assert preference_probability(2.0, 0.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert preference_probability(0.0, 2.0) == pytest.approx(1 - 1 / (1 + math.exp(-2.0)))
    assert preference_probability(1000.0, -1000.0) == 1.0
    assert preference_probability(-1000.0, 1000.0) == 0.0


def test_margin_uncertainty_falls_with_the_predicted_margin_on_either_side():
    assert margin_uncertainty(0.3, 0.3) == 1.0
    ranked = [margin_uncertainty(0.0, d) for d in (0.1, -0.5, 1.0, -3.0)]
    assert ranked == sorted(ranked, reverse=True)
    assert margin_uncertainty(0.0, 1.0) == pytest.approx(margin_uncertainty(1.0, 0.0))
    # Hand-computed: p = σ(2) = 0.8808, so 2·(1 − p) = 0.2384.
    assert margin_uncertainty(2.0, 0.0) == pytest.approx(0.23840584, abs=1e-6)


def test_ensemble_disagreement_is_the_spread_of_the_members_probabilities():
    assert ensemble_disagreement([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]) == 0.0
    # Two members, each sure, opposite sides: p = σ(±10) ≈ 1 and 0, spread ≈ 0.5.
    assert ensemble_disagreement([10.0, -10.0], [0.0, 0.0]) == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(ValueError, match="one reward for A and one for B"):
        ensemble_disagreement([1.0], [])


def test_uncertainty_scores_per_order():
    a = [[0.0, 3.0, 1.0], [0.0, -3.0, 1.0]]
    b = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    margin = uncertainty_scores(a, b, order="margin")
    assert margin[0] == 1.0 and margin[2] > margin[1]
    ensemble = uncertainty_scores(a, b, order="ensemble")
    assert ensemble[0] == 0.0 and ensemble[2] == 0.0 and ensemble[1] > 0.4
    with pytest.raises(ValueError, match="at least two reward models"):
        uncertainty_scores(a[:1], b[:1], order="ensemble")
    with pytest.raises(ValueError, match="every model must score every comparison"):
        uncertainty_scores([[0.0], [0.0, 1.0]], [[0.0], [0.0, 1.0]], order="margin")
