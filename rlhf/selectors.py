"""Reads of the rlhf app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db.models import Prefetch, QuerySet

from rlhf.models import Iteration, IterationStage, PolicyEvaluation


@dataclass(frozen=True)
class PolicyRef:
    name: str
    path: Path


def policy_current() -> PolicyRef:
    """The policy new work starts from: the latest accepted iteration's, else the base model.

    Failed, rejected and running iterations never count, so a half-made policy is never used."""
    from rlhf.services import base_policy_path

    accepted = (
        Iteration.objects.filter(status=Iteration.Status.ACCEPTED)
        .exclude(policy_path="")
        .order_by("-number")
        .first()
    )
    if accepted is not None:
        return PolicyRef(accepted.policy_name, Path(accepted.policy_path))
    return PolicyRef("base", base_policy_path())


def iteration_list() -> QuerySet[Iteration]:
    return Iteration.objects.prefetch_related(
        Prefetch("stages", queryset=IterationStage.objects.order_by("order")), "batches"
    ).select_related("next_batch")


def iteration_get(iteration_id: int) -> Iteration | None:
    return iteration_list().filter(pk=iteration_id).first()


def iteration_latest() -> Iteration | None:
    return iteration_list().first()


@dataclass(frozen=True)
class LineageRow:
    """One model version and where it came from."""

    kind: str  # policy | reward_helpfulness | reward_safety
    name: str
    path: str
    parent: str
    trained_on: list[str]
    status: str
    evaluation: PolicyEvaluation | None
    rs_curve: list[dict] | None
    ppo_final: dict | None


def lineage_rows() -> list[LineageRow]:
    rows: list[LineageRow] = []
    for it in iteration_list().select_related("evaluation").order_by("number"):
        batches = [b.name for b in it.batches.all()]
        stages = {s.name: s for s in it.stages.all()}
        rs, ppo = stages.get("rejection_sampling"), stages.get("ppo")
        evaluation = getattr(it, "evaluation", None) if hasattr(it, "evaluation") else None
        if it.reward_helpfulness_path:
            rows.append(
                LineageRow(
                    "reward_helpfulness",
                    f"{it.name} helpfulness RM",
                    it.reward_helpfulness_path,
                    "",
                    batches,
                    "ready",
                    None,
                    None,
                    None,
                )
            )
            rows.append(
                LineageRow(
                    "reward_safety",
                    f"{it.name} safety RM",
                    it.reward_safety_path,
                    "",
                    batches,
                    "ready",
                    None,
                    None,
                    None,
                )
            )
        rows.append(
            LineageRow(
                "policy",
                it.name,
                it.policy_path or "(not registered)",
                it.start_policy_name,
                batches,
                it.status,
                evaluation,
                rs.result.get("curve") if rs and rs.status == "done" else None,
                ppo.result["steps"][-1]
                if ppo and ppo.status == "done" and ppo.result.get("steps")
                else None,
            )
        )
    return rows
