"""Human evaluation batches: people judge two policy versions blind.

``human_evaluation_create`` (one click on the lineage page, or ``manage.py
pairwise_human_eval``) records what to compare and queues ``rlhf.jobs.human_evaluation_build``;
the worker samples both versions on the held-out prompts of an iteration (prompts no policy
trained on), scores both responses with that iteration's reward models (for the agreement
between the reward models and the people), and opens a batch marked ``evaluation``: each
pair's A/B order is random and the batch's name says nothing of the versions, so
annotators label it in the normal annotator page without knowing which is which. No model
trains on an evaluation batch (``annotation.selectors.preference_pairs_frozen`` and every
launch service refuse it). ``human_evaluation_result`` reads the labels: win / tie / loss
with a Wilson interval, per category, and the reward models' agreement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Comparison, Label
from rlhf.ml.evaluation import HumanJudgement, human_evaluation_result
from rlhf.models import HumanEvaluation, Iteration

logger = logging.getLogger(__name__)

MAX_PROMPTS = 1000


@dataclass(frozen=True)
class PolicyVersion:
    name: str
    path: str


def policy_versions() -> list[PolicyVersion]:
    """Every policy a human evaluation can compare, oldest first: the base models and the
    RLHF-V{N} of the registry, and the starting policies of iterations (the base folder
    when no base model was registered)."""
    from modeling.models import ModelKind, ModelVersion

    found: dict[str, str] = {}
    for iteration in Iteration.objects.order_by("number"):
        found.setdefault(iteration.start_policy_name, iteration.start_policy_path)
        if iteration.policy_path:
            found.setdefault(iteration.policy_name, iteration.policy_path)
    registry = ModelVersion.objects.filter(
        kind__in=[ModelKind.BASE, ModelKind.POLICY], status=ModelVersion.Status.READY
    ).order_by("created_at")
    for model in registry:
        found[model.name] = model.path
    return [PolicyVersion(name, path) for name, path in found.items() if path]


def _version(name: str, field: str) -> PolicyVersion:
    for version in policy_versions():
        if version.name == name:
            return version
    raise ValidationError({field: f"No policy version named {name!r}."})


def _prompt_iteration(candidate: str, baseline: str) -> Iteration:
    """The iteration whose held-out prompts are asked: the one that made the candidate,
    else the one that made the baseline."""
    for name in (candidate, baseline):
        iteration = Iteration.objects.filter(policy_name=name).exclude(policy_path="").first()
        if iteration is not None:
            return iteration
    raise ValidationError(
        {
            "candidate": "One of the two versions must be an iteration's policy (RLHF-V{N}): "
            "its held-out prompts are the ones asked."
        }
    )


@transaction.atomic
def human_evaluation_create(
    *, candidate: str, baseline: str, n_prompts: int = 50, created_by=None, enqueue: bool = True
) -> HumanEvaluation:
    """Queue a blind evaluation batch of ``candidate`` against ``baseline``."""
    if candidate == baseline:
        raise ValidationError({"baseline": "Compare two different versions."})
    if not 1 <= n_prompts <= MAX_PROMPTS:
        raise ValidationError({"n_prompts": f"Ask between 1 and {MAX_PROMPTS} prompts."})
    cand, base = _version(candidate, "candidate"), _version(baseline, "baseline")
    for version, field in ((cand, "candidate"), (base, "baseline")):
        if not (Path(version.path) / "config.json").is_file():
            raise ValidationError({field: f"No checkpoint of {version.name} at {version.path}."})
    evaluation = HumanEvaluation.objects.create(
        candidate_name=cand.name,
        candidate_path=cand.path,
        baseline_name=base.name,
        baseline_path=base.path,
        iteration=_prompt_iteration(candidate, baseline),
        n_prompts=n_prompts,
        created_by=created_by,
    )
    if enqueue:
        from rlhf import tasks

        transaction.on_commit(lambda: tasks.human_evaluation_build.delay(evaluation.pk))
    return evaluation


def human_evaluation_list():
    return HumanEvaluation.objects.select_related("batch", "iteration")


def human_evaluation_judgements(evaluation: HumanEvaluation) -> list[HumanJudgement]:
    """Every label of the evaluation's batch, in the candidate's terms."""
    if evaluation.batch_id is None:
        return []
    rows = (
        Label.objects.filter(comparison__batch_id=evaluation.batch_id)
        .order_by("id")
        .values_list("preferred", "strength", "comparison__category", "comparison__metadata")
    )
    out = []
    for preferred, strength, category, metadata in rows:
        info = (metadata or {}).get("evaluation", {})
        out.append(
            HumanJudgement(
                category=category,
                candidate_preferred=preferred == info.get("candidate"),
                strength=strength,
                reward_margin=info.get("reward_margin"),
            )
        )
    return out


def human_evaluation_result_get(evaluation: HumanEvaluation) -> dict:
    """Win / tie / loss by people so far, per category, and the reward models' agreement."""
    result = human_evaluation_result(human_evaluation_judgements(evaluation))
    result["pairs"] = (
        Comparison.objects.filter(batch_id=evaluation.batch_id).count()
        if evaluation.batch_id
        else 0
    )
    return result
