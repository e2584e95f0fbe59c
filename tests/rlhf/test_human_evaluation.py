"""Blind human evaluation batches: made from two versions' responses to held-out prompts,
labelled in the normal queue, never used to train anything; their result by people."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from annotation.models import Batch, Comparison
from annotation.queue import assignments, labels, rules
from modeling import selectors as modeling_selectors
from modeling import services as modeling_services
from modeling.models import ModelKind, ModelVersion
from rlhf import human_evaluation, services, stages
from rlhf.forms import IterationLaunchForm
from rlhf.models import HumanEvaluation, Iteration
from rlhf.settings import IterationSettings
from tests.factories import UserFactory
from tests.rlhf.conftest import frozen_batch

pytestmark = pytest.mark.django_db(transaction=True)


def evaluation_batch(n: int = 4) -> Batch:
    """A frozen batch marked evaluation, with labels: what a finished blind evaluation leaves."""
    batch = frozen_batch(n, "people-judged")
    Batch.objects.filter(pk=batch.pk).update(purpose=Batch.Purpose.EVALUATION)
    batch.refresh_from_db()
    return batch


def test_an_evaluation_batch_never_trains_any_recipe_or_method(tmp_path):
    evaluation = evaluation_batch()
    training = frozen_batch(4, "week-1")
    # The one reader of training pairs refuses it ...
    with pytest.raises(ValueError, match="evaluation batches never train models"):
        annotation_selectors.preference_pairs_frozen(batch_ids=[training.pk, evaluation.pk])
    assert annotation_selectors.preference_pairs_frozen(batch_ids=[training.pk])
    # ... every reward-model recipe refuses it at launch ...
    base = ModelVersion.objects.create(
        name="base-x", kind=ModelKind.BASE, status=ModelVersion.Status.READY, path=str(tmp_path)
    )
    for kind in ("helpfulness", "safety"):
        with pytest.raises(ValidationError, match="Evaluation batches never train models"):
            modeling_services.reward_model_launch(
                kind=kind, base_model=base, batch_ids=[training.pk, evaluation.pk]
            )
    # ... every policy method refuses it at launch ...
    for method in Iteration.Method.values:
        with pytest.raises(ValidationError, match="Evaluation batches never train models"):
            services.iteration_launch(
                batch_ids=[evaluation.pk],
                method=method,
                start_policy_name="base",
                start_policy_path=str(tmp_path),
            )
    assert not Iteration.objects.exists()
    # ... and no form or default batch list offers it.
    assert list(modeling_selectors.batches_frozen()) == [training]
    assert list(IterationLaunchForm().fields["batches"].queryset) == [training]


@pytest.fixture
def accepted_iteration(rlhf_models, tmp_path):
    """RLHF-V1 (a differently seeded tiny policy) made from the base on one frozen batch."""
    from rlhf.ml.tiny import make_tiny_policy

    candidate = tmp_path / "RLHF-V1"
    make_tiny_policy(candidate, seed=7)
    iteration = Iteration.objects.create(
        number=1,
        status=Iteration.Status.ACCEPTED,
        config=IterationSettings.from_json({"eval_fraction": 0.5}).as_json(),
        start_policy_name="base",
        start_policy_path=str(rlhf_models["base"]),
        reward_helpfulness_path=str(rlhf_models["helpful"]),
        reward_safety_path=str(rlhf_models["safety"]),
        policy_name="RLHF-V1",
        policy_path=str(candidate),
    )
    iteration.batches.set([frozen_batch(10, "week-1")])
    return iteration


def label_everything(batch: Batch, decide) -> int:
    """Label every comparison of ``batch`` through the normal queue; ``decide(comparison)``
    gives (side in stored terms, strength). Returns how many were labelled."""
    annotator = UserFactory(role="annotator")
    labelled = 0
    while (a := assignments.assignment_next(annotator=annotator)) is not None:
        assert a.comparison.batch_id == batch.pk
        preferred, strength = decide(a.comparison)
        extra = (
            {"safety_a": "safe", "safety_b": "safe"} if a.comparison.category == "safety" else {}
        )
        labels.label_submit(
            assignment_id=a.pk,
            annotator=annotator,
            data=rules.LabelInput(preferred, strength, **extra),
        )
        labelled += 1
    return labelled


def test_blind_batch_from_two_versions_and_its_result(accepted_iteration):
    evaluation = human_evaluation.human_evaluation_create(
        candidate="RLHF-V1", baseline="base", n_prompts=5
    )
    evaluation.refresh_from_db()
    assert evaluation.status == HumanEvaluation.Status.OPEN, evaluation.error
    batch = evaluation.batch
    assert batch.is_evaluation and batch.status == Batch.Status.OPEN
    assert "RLHF" not in batch.name and "base" not in batch.name  # versions hidden
    comparisons = list(Comparison.objects.filter(batch=batch).select_related("response_a"))
    assert 1 <= len(comparisons) <= 5
    # The held-out prompts of the iteration, never its training prompts.
    held_out = stages.iteration_prompts(
        accepted_iteration, IterationSettings.from_json(accepted_iteration.config)
    ).held_out
    held_turns = [list(p.turns) for p in held_out]
    for c in comparisons:
        info = c.metadata["evaluation"]
        assert c.prompt.turns in held_turns
        assert info["candidate"] in ("A", "B") and isinstance(info["reward_margin"], float)
        assert c.response(info["candidate"]).model_version == "RLHF-V1"
    # People prefer the candidate on all but one pair, which they call a tie.
    labelled = label_everything(
        batch,
        lambda c: (
            c.metadata["evaluation"]["candidate"],
            "negligibly_better_or_unsure" if c.pk == comparisons[0].pk else "better",
        ),
    )
    result = human_evaluation.human_evaluation_result_get(evaluation)
    assert (result["wins"], result["ties"], result["losses"]) == (labelled - 1, 1, 0)
    assert result["ci_low"] < result["win_rate"] == pytest.approx((labelled - 0.5) / labelled)
    assert sum(c["n"] for c in result["by_category"].values()) == labelled
    assert result["agreement"]["n"] <= labelled - 1
    # And the batch, once frozen, still trains nothing.
    annotation_services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    annotation_services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    with pytest.raises(ValueError, match="evaluation batches never train"):
        annotation_selectors.preference_pairs_frozen(batch_ids=[batch.pk])


def test_bad_requests_are_refused_and_the_command(accepted_iteration, client, admin_user):
    with pytest.raises(ValidationError, match="No policy version named 'RLHF-V9'"):
        human_evaluation.human_evaluation_create(candidate="RLHF-V9", baseline="base")
    with pytest.raises(ValidationError, match="two different versions"):
        human_evaluation.human_evaluation_create(candidate="RLHF-V1", baseline="RLHF-V1")
    with pytest.raises(ValidationError, match="between 1 and"):
        human_evaluation.human_evaluation_create(candidate="RLHF-V1", baseline="base", n_prompts=0)
    assert not HumanEvaluation.objects.exists()
    client.force_login(admin_user)
    page = client.post(
        "/rlhf/evaluations/create/", {"candidate": "RLHF-V1", "baseline": "base", "n_prompts": "x"}
    )
    assert page.status_code == 302 and not HumanEvaluation.objects.exists()

    out = io.StringIO()
    call_command("pairwise_human_eval", candidate="RLHF-V1", baseline="base", prompts=3, stdout=out)
    assert "blind pairs of RLHF-V1 vs base" in out.getvalue()
    evaluation = HumanEvaluation.objects.get()
    page = client.get(f"/rlhf/evaluations/{evaluation.pk}/").content.decode()
    assert "No labels yet" in page and evaluation.batch.name in page
    listing = client.get("/rlhf/evaluations/").content.decode()
    assert "RLHF-V1" in listing and "Make the evaluation batch" in listing


def test_base_model_pretraining_leaves_out_evaluation_batches(settings, tmp_path):
    from modeling.models import TrainingRun

    settings.MODELS_DIR = tmp_path / "models"
    evaluation_batch()
    run = modeling_services.base_model_launch(
        config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_steps": 2,
            "max_seconds": 0,
            "vocab_size": 400,
            "seq_length": 64,
            "batch_size": 2,
        },
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.result.metrics["text"]["dialogues"] == 0  # the frozen evaluation batch: none
