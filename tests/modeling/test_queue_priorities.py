"""The worker that orders a batch's queue by reward-model uncertainty
(``modeling.jobs.queue_priorities_compute``), with a stand-in for the reward models."""

import pytest

from annotation.gold import services as gold_services
from annotation.models import Batch, Comparison
from annotation.queue import assignments
from modeling import jobs, services
from modeling.ml.uncertainty import margin_uncertainty
from modeling.models import ModelVersion
from tests.factories import UserFactory, make_comparison, open_batch_with

pytestmark = pytest.mark.django_db


class FakeScorer:
    """Rewards by a table of texts: r(A) = margin, r(B) = 0 for each comparison."""

    def __init__(self, rewards: dict[str, float]):
        self.rewards = rewards

    def score(self, contexts, responses, **kw):
        return [self.rewards.get(r, 0.0) for r in responses]


def reward_model(name: str) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, kind="reward_helpfulness", status="ready", path=f"/x/{name}"
    )


def batch_with_margins(margins: list[float]) -> tuple[Batch, list[Comparison], dict[str, float]]:
    batch = open_batch_with(0 + 1)
    comparisons = [Comparison.objects.get(batch=batch)]
    comparisons += [make_comparison(batch) for _ in margins[1:]]
    rewards = {c.response_a.text: m for c, m in zip(comparisons, margins, strict=True)}
    return batch, comparisons, rewards


def test_margin_order_scores_with_the_newest_reward_model_and_the_queue_follows(monkeypatch):
    batch, comparisons, rewards = batch_with_margins([3.0, -0.2, 1.0, 0.05])
    reward_model("RM-h-1")
    newest = reward_model("RM-h-2")
    used = []
    monkeypatch.setattr(jobs, "_scorer", lambda m: used.append(m.name) or FakeScorer(rewards))
    gold_services.batch_quality_update(batch=batch, queue_order=Batch.QueueOrder.MARGIN)
    assert services.queue_priorities_stale_batches() == [batch.pk]
    assert jobs.queue_priorities_compute(batch_id=batch.pk) == 4
    assert set(used) == {newest.name}
    batch.refresh_from_db()
    assert batch.priorities_computed_at and "RM-h-2" in batch.priorities_source
    assert services.queue_priorities_stale_batches() == []
    by_id = dict(Comparison.objects.filter(batch=batch).values_list("id", "priority"))
    assert by_id[comparisons[1].pk] == pytest.approx(margin_uncertainty(-0.2, 0.0))
    annotator = UserFactory(role="annotator")
    order = []
    while (a := assignments.assignment_next(annotator=annotator)) is not None:
        order.append(a.comparison_id)
        a.status = "labelled"
        a.save()
    # Smallest |r_A − r_B| first: 0.05, -0.2, 1.0, 3.0.
    assert order == [comparisons[i].pk for i in (3, 1, 2, 0)]


def test_ensemble_order_needs_two_models_and_ranks_by_their_disagreement(monkeypatch):
    batch, comparisons, rewards = batch_with_margins([2.0, 0.5, -1.0])
    reward_model("RM-h-1")
    gold_services.batch_quality_update(batch=batch, queue_order=Batch.QueueOrder.ENSEMBLE)
    monkeypatch.setattr(jobs, "_scorer", lambda m: FakeScorer(rewards))
    assert jobs.queue_priorities_compute(batch_id=batch.pk) == 0
    assert "too few ready reward models (1)" in Batch.objects.get(pk=batch.pk).priorities_source
    reward_model("RM-h-2")
    flipped = {t: -m for t, m in rewards.items()}  # the second model disagrees in sign
    monkeypatch.setattr(
        jobs, "_scorer", lambda m: FakeScorer(rewards if m.name == "RM-h-1" else flipped)
    )
    assert jobs.queue_priorities_compute(batch_id=batch.pk) == 3
    by_id = dict(Comparison.objects.filter(batch=batch).values_list("id", "priority"))
    ranked = sorted(by_id, key=by_id.get, reverse=True)
    assert ranked == [comparisons[i].pk for i in (0, 2, 1)]  # |2.0| > |-1.0| > |0.5|


def test_priorities_request_refuses_a_batch_in_arrival_order():
    batch = open_batch_with(1)
    with pytest.raises(Exception, match="arrival order"):
        services.queue_priorities_request(batch=batch)
