"""The reward-model label check: labels the model confidently contradicts are flagged."""

from __future__ import annotations

import pytest

from annotation.models import Batch, ReviewFlag
from modeling import jobs, services
from modeling.models import ModelKind, ModelVersion
from tests.export.helpers import label
from tests.factories import BatchFactory, UserFactory, make_comparison
from tests.modeling.test_services import TINY, base, frozen_batch, models_dir  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


class FakeScorer:
    """Rewards by response text: 'good' scores 2, anything else -2."""

    def score(self, contexts, responses, **kw):
        assert len(contexts) == len(responses)
        return [2.0 if "good" in r else -2.0 for r in responses]


def test_labels_the_model_contradicts_are_flagged(
    monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.PAIRWISE_REVIEW_RM_CONFIDENCE = 0.9
    rm = ModelVersion.objects.create(
        name="RM-helpfulness-V1", kind=ModelKind.REWARD_HELPFULNESS, status="ready", path="/x"
    )
    monkeypatch.setattr(jobs, "_scorer", lambda model: FakeScorer())
    batch = BatchFactory(labels_per_comparison=2)
    users = [UserFactory() for _ in range(2)]
    clear = make_comparison(batch, a="a good answer", b="a poor answer")  # σ(4) = 0.98
    close = make_comparison(batch, a="good one", b="good two")  # σ(0) = 0.5
    right, wrong = label(clear, annotator=users[0]), label(clear, annotator=users[1], preferred="B")
    label(close, annotator=users[0], preferred="B")
    with django_capture_on_commit_callbacks(execute=True):
        queued = services.label_check_request(batch=batch)
    assert queued == ["helpfulness: RM-helpfulness-V1"]
    flag = ReviewFlag.objects.get()  # eager Celery ran the check on commit
    assert (flag.label, flag.reason, flag.source) == (wrong, "reward_model", rm.name)
    assert flag.score == pytest.approx(0.982, abs=1e-3) and "probability 0.98" in flag.detail
    assert not right.review_flags.exists()
    # A stricter threshold, run again: the old flags go.
    settings.PAIRWISE_REVIEW_RM_CONFIDENCE = 0.99
    assert jobs.label_check_execute(batch_id=batch.pk, model_id=rm.pk, category="helpfulness") == 0
    assert not ReviewFlag.objects.exists()


def test_a_safety_batch_needs_a_safety_reward_model_and_frozen_batches_are_final():
    ModelVersion.objects.create(
        name="RM-helpfulness-V1", kind=ModelKind.REWARD_HELPFULNESS, status="ready", path="/x"
    )
    batch = BatchFactory()
    label(make_comparison(batch, category="safety"), annotator=UserFactory(), tags=("safe", "safe"))
    with pytest.raises(Exception, match="No ready reward model for safety"):
        services.label_check_request(batch=batch)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.FROZEN)
    batch.refresh_from_db()
    with pytest.raises(Exception, match="frozen"):
        services.label_check_request(batch=batch)


@pytest.mark.django_db(transaction=True)
def test_a_new_reward_model_checks_the_open_batches_of_its_category(base, settings):  # noqa: F811
    settings.PAIRWISE_REVIEW_RM_CONFIDENCE = (
        0.0  # every label "contradicted": the path, not the model
    )
    open_batch = BatchFactory()
    labels = [label(make_comparison(open_batch), annotator=UserFactory()) for _ in range(3)]
    Batch.objects.filter(pk=open_batch.pk).update(status=Batch.Status.OPEN)
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[frozen_batch(6).pk], config=TINY
    )
    assert ModelVersion.objects.get(pk=run.result_id).status == "ready"
    flags = ReviewFlag.objects.filter(batch=open_batch)
    assert sorted(f.label_id for f in flags) == sorted(lb.pk for lb in labels)
    assert {f.source for f in flags} == {run.result_name}
