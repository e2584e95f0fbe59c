"""Win / tie / loss arithmetic, Wilson intervals and policy length statistics, against
values computed by hand."""

from __future__ import annotations

import pytest

from rlhf.ml.evaluation import (
    LOSS,
    TIE,
    WIN,
    compare_by_judge,
    length_stats,
    outcomes_from_scores,
    wilson_interval,
    win_tie_loss,
)
from rlhf.ml.prompts import PromptExample


def test_wilson_interval_by_hand():
    # p = 0.8, n = 10, z = 1.96: centre (0.8 + z²/20) / (1 + z²/10) = 0.7167,
    # half-width z·sqrt(0.016 + z²/400) / (1 + z²/10) = 0.2266.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    # The 15 of 30: 50.0 % [33.2, 66.8].
    low, high = wilson_interval(15, 30)
    assert (round(low, 3), round(high, 3)) == (0.332, 0.668)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_win_tie_loss_counts_ties_as_half():
    tally = win_tie_loss([WIN] * 7 + [TIE] * 2 + [LOSS])
    assert (tally.wins, tally.ties, tally.losses, tally.n) == (7, 2, 1, 10)
    assert tally.win_rate == pytest.approx(0.8)
    d = tally.as_dict()
    assert d["ci_low"] == pytest.approx(0.4902, abs=1e-4)
    assert d["ci_high"] == pytest.approx(0.9433, abs=1e-4)
    with pytest.raises(ValueError, match="not 2"):
        win_tie_loss([2])


def test_outcomes_from_scores_and_tie_margin():
    assert outcomes_from_scores([1.0, 0.5, 0.3], [0.0, 0.5, 0.9]) == [WIN, TIE, LOSS]
    assert outcomes_from_scores([1.0], [0.95], tie_margin=0.1) == [TIE]


def test_length_stats():
    stats = length_stats(["one two three", "", "a b c d e"], finished=[True, True, False])
    assert stats.n == 3
    assert stats.mean_words == pytest.approx((3 + 0 + 5) / 3)
    assert stats.empty_share == pytest.approx(1 / 3)
    assert stats.truncated_share == pytest.approx(1 / 3)
    assert length_stats([]).n == 0


def test_compare_by_judge_with_a_toy_judge():
    prompts = [PromptExample(({"role": "user", "content": f"q{i}"},), False) for i in range(4)]

    def judge(contexts, responses):  # longer is better, by words
        return [float(len(r.split())) for r in responses]

    out = compare_by_judge(prompts, ["a b", "a", "a b c", "x"], ["a", "a", "a", "x y"], judge)
    assert (out["wins"], out["ties"], out["losses"]) == (2, 1, 1)
    assert out["win_rate"] == pytest.approx(0.625)
    assert out["candidate_score"] == pytest.approx(7 / 4)
    assert out["baseline_score"] == pytest.approx(5 / 4)


def test_human_result_by_hand():
    from rlhf.ml.evaluation import HumanJudgement, human_evaluation_result

    judgements = [
        HumanJudgement("helpfulness", True, "better", 1.0),  # win, RM agrees
        HumanJudgement("helpfulness", False, "significantly_better", 0.5),  # loss, RM disagrees
        HumanJudgement("safety", True, "negligibly_better_or_unsure", 0.3),  # tie
        HumanJudgement("safety", True, "slightly_better", -0.2),  # win, RM disagrees
        HumanJudgement("helpfulness", True, "better", None),  # win, not scored
    ]
    result = human_evaluation_result(judgements)
    assert (result["wins"], result["ties"], result["losses"]) == (3, 1, 1)
    assert result["win_rate"] == pytest.approx(3.5 / 5)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(wilson_interval(3.5, 5))
    assert result["by_category"]["helpfulness"]["win_rate"] == pytest.approx(2 / 3)
    assert result["by_category"]["safety"]["win_rate"] == pytest.approx(0.75)
    agreement = result["agreement"]
    assert agreement["n"] == 3 and agreement["share"] == pytest.approx(1 / 3)
    by_strength = {row["strength"]: row for row in agreement["by_strength"]}
    assert by_strength["better"]["mean_margin"] == pytest.approx(1.0)
    assert by_strength["significantly_better"]["mean_margin"] == pytest.approx(-0.5)
    assert by_strength["significantly_better"]["rm_agrees"] == 0.0
    assert by_strength["negligibly_better_or_unsure"]["n"] == 1
