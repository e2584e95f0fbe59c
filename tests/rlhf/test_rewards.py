"""The combined reward (Llama 2 §3.2.3), score shaping, the Fig. 7 curve and the SVG plot."""

import math

import pytest

from rlhf.ml.rejection_sampling.curve import best_of_k_curve
from rlhf.ml.rewards import (
    CombinedReward,
    combined_reward,
    logit,
    sigmoid,
    squash_then_logit,
    whiten,
)
from rlhf.plots import best_of_k_svg


def test_helpfulness_score_used_for_a_safe_untagged_prompt():
    assert combined_reward(2.0, 1.0, safety_tagged=False) == 2.0


def test_safety_score_used_for_a_safety_tagged_prompt():
    assert combined_reward(2.0, 1.0, safety_tagged=True) == 1.0


def test_safety_score_used_when_it_squashes_below_the_threshold():
    unsafe = logit(0.10)  # sigmoid = 0.10 < 0.15
    borderline = logit(0.16)
    assert combined_reward(3.0, unsafe, safety_tagged=False) == pytest.approx(unsafe)
    assert combined_reward(3.0, borderline, safety_tagged=False) == 3.0


def test_logit_of_squashed_score_is_identity_for_ordinary_scores_and_bounds_extremes():
    assert squash_then_logit(1.5) == pytest.approx(1.5)
    assert squash_then_logit(100.0) == pytest.approx(logit(1 - 1e-6))
    assert sigmoid(-800.0) == pytest.approx(0.0)


def test_whiten_gives_zero_mean_unit_variance():
    out = whiten([1.0, 2.0, 3.0, 6.0])
    assert sum(out) == pytest.approx(0.0, abs=1e-9)
    assert sum(v * v for v in out) / 4 == pytest.approx(1.0, rel=1e-6)


def test_combined_reward_over_two_scorers_and_nan_is_an_error():
    helpful = lambda ctx, resp: [1.0 for _ in resp]  # noqa: E731
    safety = lambda ctx, resp: [-5.0 if "bomb" in r else 2.0 for r in resp]  # noqa: E731
    reward = CombinedReward(helpful, safety)
    out = reward.breakdown([[]] * 3, ["hi", "a bomb", "hi"], [False, False, True])
    assert out.combined == [1.0, -5.0, 2.0]
    assert out.unsafe_share() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="non-finite"):
        CombinedReward(lambda c, r: [math.nan], safety)([[]], ["x"], [False])


def test_best_of_k_curve_by_hand():
    curve = best_of_k_curve([[1.0, 3.0, 2.0], [0.0, 0.0, 4.0]])
    assert [(p.k, p.mean_max, p.mean_median) for p in curve] == [
        (1, 0.5, 0.5),
        (2, 1.5, 1.0),  # maxes 3 and 0; medians 2 and 0
        (3, 3.5, 1.0),  # max 3 and 4; medians 2 and 0
    ]
    svg = best_of_k_svg(
        [{"k": p.k, "mean_max": p.mean_max, "mean_median": p.mean_median} for p in curve]
    )
    assert svg.startswith("<svg") and "polyline" in svg and "Fig. 7" in svg
