"""Writes of the review: flags (from the rule checks and from a reward model) and verdicts.

A frozen batch's review is part of its content hash (``annotation.services.batch_content_hash``),
so nothing here writes to a frozen batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.domain import Choice, text_problem
from annotation.models import Batch, Comparison, Label, ReviewFlag, ReviewVerdict
from annotation.queue.rules import LabelInput, label_fields
from annotation.review import rules

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

RULES_SOURCE = "rules"
RULE_REASONS = (
    ReviewFlag.Reason.FAST,
    ReviewFlag.Reason.SIDE_BIAS,
    ReviewFlag.Reason.STRENGTH_SKEW,
)
REASON_MAX_CHARS = 2000


def _require_not_frozen(batch: Batch) -> None:
    if batch.status == Batch.Status.FROZEN:
        raise ValidationError(
            {"batch": f"Batch {batch.name!r} is frozen: its labels and their review are final."}
        )


def _locked(batch: Batch) -> Batch:
    """The batch row under SELECT FOR UPDATE: freezing waits for a review write, and a
    review write never lands in a batch frozen meanwhile."""
    locked = Batch.objects.select_for_update().get(pk=batch.pk)
    _require_not_frozen(locked)
    return locked


@dataclass(frozen=True)
class RuleCheckReport:
    fast: int
    side_bias: int
    strength_skew: int

    def summary(self) -> str:
        return (
            f"{self.fast} fast label(s), {self.side_bias} annotator(s) with a side bias, "
            f"{self.strength_skew} with skewed strengths."
        )


@transaction.atomic
def review_flags_refresh(
    *, batch: Batch, thresholds: rules.RuleThresholds = rules.DEFAULT_THRESHOLDS
) -> RuleCheckReport:
    """Run the rule checks over the batch's labels; their flags replace the earlier ones.

    Imported labels (no Pairwise annotator) are left out: their timing and screen side
    are not ours. Raises ``ValidationError`` for a frozen batch.
    """
    batch = _locked(batch)
    rows = [
        rules.LabelRow(
            label_id,
            annotator_id,
            None if not left else left == preferred,
            strength,
            time_spent_ms,
        )
        for label_id, annotator_id, left, preferred, strength, time_spent_ms in Label.objects.filter(
            comparison__batch=batch, annotator__isnull=False
        )
        .order_by("id")
        .values_list("id", "annotator_id", "left", "preferred", "strength", "time_spent_ms")
        .iterator(chunk_size=5000)
    ]
    comparison_of = dict(
        Label.objects.filter(comparison__batch=batch).values_list("id", "comparison_id")
    )
    ReviewFlag.objects.filter(batch=batch, source=RULES_SOURCE).delete()
    fast = rules.fast_labels(rows, thresholds)
    annotators = rules.side_bias(rows, thresholds) + rules.strength_skew(rows, thresholds)
    ReviewFlag.objects.bulk_create(
        [
            ReviewFlag(
                batch=batch,
                comparison_id=comparison_of[f.label_id],
                label_id=f.label_id,
                annotator_id=f.annotator_id,
                reason=ReviewFlag.Reason.FAST,
                detail=f.detail(),
                score=f.ratio,
                source=RULES_SOURCE,
            )
            for f in fast
        ]
        + [
            ReviewFlag(
                batch=batch,
                annotator_id=a.annotator_id,
                reason=a.reason,
                detail=a.detail[:500],
                score=a.score,
                source=RULES_SOURCE,
            )
            for a in annotators
        ],
        batch_size=1000,
    )
    report = RuleCheckReport(
        fast=len(fast),
        side_bias=sum(a.reason == ReviewFlag.Reason.SIDE_BIAS for a in annotators),
        strength_skew=sum(a.reason == ReviewFlag.Reason.STRENGTH_SKEW for a in annotators),
    )
    logger.info("rule checks on %s: %s", batch.name, report.summary())
    return report


@dataclass(frozen=True)
class RewardModelContradiction:
    """A label whose other response the reward model prefers with ``probability``
    (σ(r_other − r_preferred), the Bradley–Terry reading of the two rewards)."""

    label_id: int
    probability: float
    reward_preferred: float
    reward_other: float


@transaction.atomic
def review_flags_replace_reward_model(
    *,
    batch: Batch,
    category: str,
    model_name: str,
    contradictions: Iterable[RewardModelContradiction],
) -> int:
    """Store a reward-model check of the batch's ``category`` labels: its flags replace the
    earlier check's for that category. Returns how many labels were flagged.

    Called by the worker that scored them (``modeling.jobs.label_check_execute``). Raises
    ``ValidationError`` for a frozen batch or a label outside the batch and category.
    """
    batch = _locked(batch)
    found = {c.label_id: c for c in contradictions}
    labels = dict(
        Label.objects.filter(
            pk__in=found, comparison__batch=batch, comparison__category=category
        ).values_list("id", "comparison_id")
    )
    if missing := sorted(set(found) - set(labels)):
        raise ValidationError(
            {"labels": f"Not {category} labels of batch {batch.name!r}: {missing[:10]}."}
        )
    ReviewFlag.objects.filter(
        batch=batch, reason=ReviewFlag.Reason.REWARD_MODEL, comparison__category=category
    ).delete()
    annotator_of = dict(Label.objects.filter(pk__in=found).values_list("id", "annotator_id"))
    ReviewFlag.objects.bulk_create(
        [
            ReviewFlag(
                batch=batch,
                comparison_id=labels[c.label_id],
                label_id=c.label_id,
                annotator_id=annotator_of[c.label_id],
                reason=ReviewFlag.Reason.REWARD_MODEL,
                detail=(
                    f"{model_name} prefers the other response with probability "
                    f"{c.probability:.2f} (reward {c.reward_other:+.2f} against "
                    f"{c.reward_preferred:+.2f})"
                )[:500],
                score=c.probability,
                source=model_name[:200],
            )
            for c in found.values()
        ],
        batch_size=1000,
    )
    logger.info(
        "reward-model check of %s (%s) with %s: %d label(s) flagged",
        batch.name,
        category,
        model_name,
        len(found),
    )
    return len(found)


@transaction.atomic
def review_verdict_record(
    *,
    comparison: Comparison,
    reviewer: User,
    reason: str,
    accepted_label_id: int | None = None,
    preferred: Choice | str | None = None,
    strength: str = "",
    safety_a: str | None = None,
    safety_b: str | None = None,
) -> ReviewVerdict:
    """Record a reviewer's verdict on a comparison: accept one of its labels
    (``accepted_label_id``), or adjudicate a label of their own (``preferred``,
    ``strength`` and, on a safety comparison, ``safety_a``/``safety_b``). ``reason`` says why.

    Appends: an earlier verdict stays as the audit trail and this one supersedes it.
    A reviewer never reviews a comparison they labelled. Raises ``ValidationError``
    naming the field; nothing is written then.
    """
    comparison = Comparison.objects.select_related("batch").get(pk=comparison.pk)
    _locked(comparison.batch)
    errors: dict[str, str] = {}
    reason = reason.strip()
    if not reason:
        errors["reason"] = "Say why: the verdict's reason is part of the audit trail."
    elif len(reason) > REASON_MAX_CHARS:
        errors["reason"] = f"Keep the reason under {REASON_MAX_CHARS} characters."
    elif (problem := text_problem(reason)) is not None:
        errors["reason"] = f"The reason {problem}."
    if Label.objects.filter(comparison=comparison, annotator=reviewer).exists():
        errors["reviewer"] = "You labelled this comparison: another reviewer must review it."
    fields: dict[str, str] = {}
    if accepted_label_id is not None:
        if preferred is not None:
            errors["preferred"] = "Accept a label or adjudicate one of your own, not both."
        label = Label.objects.filter(pk=accepted_label_id, comparison=comparison).first()
        if label is None:
            errors["accepted_label"] = (
                f"Comparison {comparison.pk} has no label {accepted_label_id}."
            )
        else:
            fields = {
                "preferred": label.preferred,
                "strength": label.strength,
                "safety_a": label.safety_a,
                "safety_b": label.safety_b,
                "safety_bin": label.safety_bin,
            }
        decision = ReviewVerdict.Decision.ACCEPT
    elif preferred is None:
        errors.setdefault(
            "preferred", "Accept one of the labels, or choose the better response yourself."
        )
        decision = ReviewVerdict.Decision.ADJUDICATE
    else:
        decision = ReviewVerdict.Decision.ADJUDICATE
        try:
            fields = label_fields(
                comparison.category,
                LabelInput(
                    preferred=preferred, strength=strength, safety_a=safety_a, safety_b=safety_b
                ),
            )
        except ValidationError as exc:
            errors.update({k: " ".join(v) for k, v in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    verdict = ReviewVerdict.objects.create(
        comparison=comparison,
        reviewer=reviewer,
        decision=decision,
        accepted_label_id=accepted_label_id,
        reason=reason,
        **fields,
    )
    logger.info(
        "verdict on comparison %s by %s: %s %s",
        comparison.pk,
        reviewer,
        decision,
        verdict.preferred,
    )
    return verdict
