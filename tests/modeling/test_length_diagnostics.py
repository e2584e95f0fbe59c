"""The reward models' length and bias diagnostics on fixed fixtures (hand-computed)."""

from __future__ import annotations

import pytest

from modeling.ml.evaluation import ScoredPair, length_diagnostics, reward_metrics


def pair(chosen_reward, rejected_reward, chosen_length, rejected_length, turns):
    return ScoredPair(
        chosen_reward,
        rejected_reward,
        "",
        "helpfulness",
        chosen_length=chosen_length,
        rejected_length=rejected_length,
        turns=turns,
    )


FIXTURE = [
    pair(1.0, 0.0, 10, 5, 1),  # RM right, longer right
    pair(0.5, 1.5, 3, 8, 2),  # RM wrong, longer wrong
    pair(2.0, 1.2, 4, 4, 5),  # RM right, equal lengths: half
    pair(-1.0, 0.0, 6, 2, 1),  # RM wrong, longer right
]


def test_length_baseline_and_flag():
    d = length_diagnostics(FIXTURE)
    assert d["accuracy"] == pytest.approx(0.5)
    assert d["length_baseline_accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert d["no_better_than_length"] is True
    assert d["mean_chosen_length"] == pytest.approx(23 / 4)
    better = [pair(1.0, 0.0, 2, 9, 1), pair(1.0, 0.0, 9, 2, 1)]
    assert length_diagnostics(better)["no_better_than_length"] is False


def test_turn_buckets():
    by_turns = length_diagnostics(FIXTURE)["by_turns"]
    assert by_turns == {
        "1": {"n": 2, "accuracy": 0.5},
        "2": {"n": 1, "accuracy": 0.0},
        "3": {"n": 0, "accuracy": None},
        "4+": {"n": 1, "accuracy": 1.0},
    }


def test_both_above_threshold():
    # Scores sorted: -1, 0, 0, 0.5, 1, 1.2, 1.5, 2; the median threshold is the 5th, 1.0:
    # only the third pair (2.0 vs 1.2) has both responses above it.
    rows = {b["quantile"]: b for b in length_diagnostics(FIXTURE)["both_above"]}
    assert rows[0.0]["n"] == 4 and rows[0.0]["accuracy"] == 0.5
    assert rows[0.5]["threshold"] == 1.0 and rows[0.5]["n"] == 1 and rows[0.5]["accuracy"] == 1.0
    assert rows[0.9]["n"] == 0


def test_reward_length_correlation():
    rows = [pair(float(n), float(m), n, m, 1) for n, m in [(3, 1), (5, 2), (8, 7)]]
    assert length_diagnostics(rows)["reward_length_correlation"] == pytest.approx(1.0)
    constant = [pair(1.0, 0.0, 4, 4, 1), pair(1.0, 0.0, 4, 4, 1)]
    assert length_diagnostics(constant)["reward_length_correlation"] is None


def test_reward_metrics_carry_the_diagnostics():
    assert reward_metrics(FIXTURE)["length"]["length_baseline_accuracy"] == pytest.approx(0.625)
    assert length_diagnostics([]) == {"n": 0}


@pytest.mark.django_db
def test_report_flags_a_model_no_better_than_length(client, admin_user):
    from modeling.models import ModelKind, ModelVersion

    flagged = ModelVersion.objects.create(
        name="RM-long",
        kind=ModelKind.REWARD_HELPFULNESS,
        status=ModelVersion.Status.READY,
        metrics={"n": 4, **reward_metrics(FIXTURE)},
    )
    client.force_login(admin_user)
    page = client.get(f"/models/{flagged.pk}/").content.decode()
    assert 'id="length-flag"' in page and "No better than the length baseline" in page
    assert "62%" in page  # the length baseline, 0.625
    listing = client.get("/models/").content.decode()
    assert "Length baseline" in listing and "⚠ not better" in listing
    assert ">judge</span>" not in page
    flagged.metrics = {"n": 2, **reward_metrics([pair(1.0, 0.0, 2, 9, 1), pair(1.0, 0.0, 9, 2, 1)])}
    flagged.is_judge = True
    flagged.save()
    page = client.get(f"/models/{flagged.pk}/").content.decode()
    assert 'id="length-bias"' in page and 'id="length-flag"' not in page
    assert ">judge</span>" in page
