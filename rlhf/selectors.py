"""Reads of the rlhf app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db.models import Prefetch, QuerySet

from rlhf.models import (
    HumanEvaluation,
    Iteration,
    IterationStage,
    JudgedBy,
    PolicyEvaluation,
    WinRate,
)


@dataclass(frozen=True)
class PolicyRef:
    name: str
    path: Path
    # the inference server that serves it (its iteration's sampling.server_url); "": none
    server_url: str = ""

    @property
    def exists(self) -> bool:
        """Whether a checkpoint is on disk there (no base model has been made yet, else)."""
        return (self.path / "config.json").is_file()


def policy_current() -> PolicyRef:
    """The policy new work starts from: the latest accepted iteration's, else the base model.

    Failed, rejected and running iterations never count, so a half-made policy is never used."""
    from rlhf.services import base_policy

    accepted = (
        Iteration.objects.filter(status=Iteration.Status.ACCEPTED)
        .exclude(policy_path="")
        .order_by("-number")
        .first()
    )
    if accepted is not None:
        sampling = (accepted.config or {}).get("sampling") or {}
        return PolicyRef(
            accepted.policy_name, Path(accepted.policy_path), str(sampling.get("server_url", ""))
        )
    name, path = base_policy()
    return PolicyRef(name, path)


def policy_by_name(name: str) -> PolicyRef | None:
    """A policy an iteration may start from, by name: an accepted iteration's policy, a
    registered base model or SFT policy, or "base" (the default base folder). None when no
    such policy exists or it was not accepted (``policy_refusal`` says why)."""
    from modeling.models import ModelKind, ModelVersion
    from rlhf.services import base_policy

    iteration = Iteration.objects.filter(policy_name=name).exclude(policy_path="").first()
    if iteration is not None:
        if iteration.status != Iteration.Status.ACCEPTED:
            return None
        sampling = (iteration.config or {}).get("sampling") or {}
        return PolicyRef(name, Path(iteration.policy_path), str(sampling.get("server_url", "")))
    version = ModelVersion.objects.filter(
        name=name, kind__in=[ModelKind.BASE, ModelKind.POLICY], status=ModelVersion.Status.READY
    ).first()
    if version is not None:
        return PolicyRef(name, Path(version.path))
    base_name, base_path = base_policy()
    if name == base_name:
        return PolicyRef(base_name, base_path)
    return None


def policy_choices() -> list[str]:
    """Names of the policies an iteration may start from (``policy_by_name``), newest first."""
    from modeling.models import ModelKind, ModelVersion

    not_accepted = set(
        Iteration.objects.exclude(status=Iteration.Status.ACCEPTED)
        .exclude(policy_name="")
        .values_list("policy_name", flat=True)
    )
    names = [
        name
        for name in ModelVersion.objects.filter(
            kind__in=[ModelKind.BASE, ModelKind.POLICY], status=ModelVersion.Status.READY
        )
        .order_by("-created_at")
        .values_list("name", flat=True)
        if name not in not_accepted
    ]
    from rlhf.services import base_policy

    base_name, base_path = base_policy()
    if (base_path / "config.json").is_file():
        names.append(base_name)  # the default base folder, registered or not
    return list(dict.fromkeys(names))


def policy_refusal(name: str) -> str:
    """Why ``policy_by_name(name)`` found nothing to start from."""
    iteration = Iteration.objects.filter(policy_name=name).exclude(policy_path="").first()
    if iteration is not None:
        return f"{name} was {iteration.status}, not accepted: start from an accepted policy."
    return f"No policy named {name!r}: give an accepted iteration's policy or a base model."


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

    kind: str  # base | reward_helpfulness | reward_safety | policy
    name: str
    path: str
    parent: str
    trained_on: list[str]
    status: str
    metrics: dict
    evaluation: PolicyEvaluation | None
    rs_curve: list[dict] | None
    ppo_final: dict | None


def lineage_rows() -> list[LineageRow]:
    """Every registered model version (the modeling registry), oldest first, with the
    iteration that made each policy; plus iterations whose policy never got registered."""
    from modeling.models import ModelVersion

    iterations = {it.name: it for it in iteration_list().select_related("evaluation")}
    rows: list[LineageRow] = []
    seen = set()
    versions = (
        ModelVersion.objects.select_related("parent")
        .prefetch_related("trained_on")
        .order_by("created_at")
    )
    for mv in versions:
        it = iterations.get(mv.name) if mv.kind == "policy" else None
        rows.append(
            _row(
                mv.kind,
                mv.name,
                mv.path,
                mv.parent.name if mv.parent else "",
                [b.name for b in mv.trained_on.all()],
                it.status if it else mv.status,
                mv.metrics,
                it,
            )
        )
        seen.add(mv.name)
    registered_paths = {r.path for r in rows}
    for name, it in sorted(iterations.items(), key=lambda kv: kv[1].number):
        # Reward models given to an iteration by path, outside the registry.
        for kind, path in (
            ("reward_helpfulness", it.reward_helpfulness_path),
            ("reward_safety", it.reward_safety_path),
        ):
            if path and path not in registered_paths:
                registered_paths.add(path)
                label = "helpfulness" if kind == "reward_helpfulness" else "safety"
                rows.append(
                    _row(
                        kind,
                        f"{label} RM used by {name} (external)",
                        path,
                        "",
                        [],
                        "external",
                        {},
                        None,
                    )
                )
        if name not in seen:
            rows.append(
                _row(
                    "policy",
                    name,
                    it.policy_path or "(not registered)",
                    it.start_policy_name,
                    [b.name for b in it.batches.all()],
                    it.status,
                    {},
                    it,
                )
            )
    return rows


def _row(
    kind: str,
    name: str,
    path: str,
    parent: str,
    batches: list[str],
    status: str,
    metrics: dict,
    iteration: Iteration | None,
) -> LineageRow:
    evaluation = rs = ppo = None
    if iteration is not None:
        evaluation = PolicyEvaluation.objects.filter(iteration=iteration).first()
        stages = {s.name: s for s in iteration.stages.all()}
        rs, ppo = stages.get("rejection_sampling"), stages.get("ppo")
    return LineageRow(
        kind,
        name,
        path,
        parent,
        batches,
        status,
        metrics,
        evaluation,
        rs.result.get("curve") if rs and rs.status == "done" else None,
        ppo.result["steps"][-1]
        if ppo and ppo.status == "done" and ppo.result.get("steps")
        else None,
    )


@dataclass(frozen=True)
class SiblingGroup:
    """Iterations started from the same parent on the same batches: methods side by side
    (their evaluations used the same held-out prompts, split by content hash)."""

    parent: str
    batches: list[str]
    iterations: list[Iteration]


def lineage_siblings() -> list[SiblingGroup]:
    """Groups of two or more iterations with the same parent and the same batches, oldest
    group first, each group's iterations in launch order."""
    groups: dict[tuple[str, tuple[str, ...]], list[Iteration]] = {}
    for it in iteration_list().order_by("number"):
        batches = tuple(sorted(b.name for b in it.batches.all()))
        groups.setdefault((it.start_policy_name, batches), []).append(it)
    return [
        SiblingGroup(parent, list(batches), its)
        for (parent, batches), its in groups.items()
        if len(its) >= 2
    ]


_OUTCOME_KEYS = ("n", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high")


def lineage_win_rates() -> dict[str, dict[str, dict[str, dict]]]:
    """For every policy version: its win rate against its parent and against the first
    policy, by each judge that measured it (Llama 2 Fig. 11 / 16):
    ``{"RLHF-V2": {"parent": {"proxy": {...}, "judge": {...}, "people": {...}}, "first": ...}}``,
    each an outcome dict (n, wins, ties, losses, win_rate, ci_low, ci_high) plus ``judge_name``.
    People's rates are read from the labels of the versions' blind evaluation batches so far."""
    from rlhf.human_evaluation import human_evaluation_result_get

    iterations = list(Iteration.objects.order_by("number"))
    first = iterations[0].start_policy_name if iterations else None
    parents = {it.policy_name: it.start_policy_name for it in iterations if it.policy_name}
    out: dict[str, dict[str, dict[str, dict]]] = {}

    def put(candidate: str, baseline: str, judged_by: str, outcome: dict, judge_name: str) -> None:
        for key, name in (("parent", parents.get(candidate)), ("first", first)):
            if baseline == name:
                row = {k: outcome[k] for k in _OUTCOME_KEYS}
                out.setdefault(candidate, {}).setdefault(key, {})[judged_by] = {
                    **row,
                    "judge_name": judge_name,
                }

    for w in WinRate.objects.order_by("created_at"):
        put(
            w.candidate_name,
            w.baseline_name,
            w.judged_by,
            {k: getattr(w, k) for k in _OUTCOME_KEYS},
            w.judge_name,
        )
    evaluations = HumanEvaluation.objects.filter(batch__isnull=False).order_by("created_at")
    for evaluation in evaluations:
        result = human_evaluation_result_get(evaluation)
        if result["n"]:
            put(
                evaluation.candidate_name,
                evaluation.baseline_name,
                JudgedBy.PEOPLE,
                result,
                f"blind evaluation #{evaluation.pk}",
            )
    return out
