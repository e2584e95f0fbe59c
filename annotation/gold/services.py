"""Writes of gold comparisons and of a batch's quality settings (see docs/annotation.md,
"Quality control")."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.domain import Choice, Strength
from annotation.models import Batch, Comparison, GoldComparison, Label, ReviewVerdict

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

GOLD_RATE_MAX = 0.5


def answer_on_record(comparison: Comparison) -> tuple[str, str] | None:
    """The comparison's own answer, if it has one: its latest review verdict, else the
    side all its labels agree on. (side, in words) or None when it has neither."""
    verdict = ReviewVerdict.objects.filter(comparison=comparison).order_by("-id").first()
    if verdict is not None:
        return verdict.preferred, f"its review verdict ({verdict.get_decision_display().lower()})"
    sides = set(Label.objects.filter(comparison=comparison).values_list("preferred", flat=True))
    if len(sides) == 1:
        return sides.pop(), "all its labels"
    return None


@transaction.atomic
def gold_mark(
    *,
    comparison: Comparison,
    preferred: Choice | str,
    min_strength: Strength | str = "",
    note: str = "",
    by: User | None = None,
) -> GoldComparison:
    """Mark a comparison as gold: the expected preferred response (stored A/B terms) and
    optionally a minimum strength. Batches with a gold rate get a check of it at once
    (``batch_gold_sync``).

    Refused (ValidationError naming the field): a comparison that is itself a gold
    check, one already gold, one from an evaluation batch, and an expected answer that
    contradicts the comparison's own record (its latest review verdict, or else labels
    that all pick the other response).
    """
    try:
        preferred = Choice(preferred).value
    except ValueError:
        raise ValidationError(
            {"preferred": "Say which response is expected: 'A' or 'B'."}
        ) from None
    if min_strength:
        try:
            min_strength = Strength(min_strength).value
        except ValueError:
            choices = ", ".join(s.value for s in Strength)
            raise ValidationError({"min_strength": f"One of {choices}, or blank."}) from None
    comparison = Comparison.objects.select_related("batch").get(pk=comparison.pk)
    if comparison.is_gold:
        raise ValidationError(
            {"comparison": f"Comparison {comparison.pk} is a gold check; mark its source instead."}
        )
    if comparison.batch.is_evaluation:
        raise ValidationError(
            {
                "comparison": f"Comparison {comparison.pk} is in an evaluation batch; it measures a policy, not annotators."
            }
        )
    if GoldComparison.objects.filter(comparison=comparison).exists():
        raise ValidationError({"comparison": f"Comparison {comparison.pk} is already gold."})
    record = answer_on_record(comparison)
    if record is not None and record[0] != preferred:
        raise ValidationError(
            {
                "preferred": f"Comparison {comparison.pk}'s expected answer {preferred} contradicts"
                f" {record[1]}, which prefer {record[0]}."
            }
        )
    gold = GoldComparison.objects.create(
        comparison=comparison,
        preferred=preferred,
        min_strength=min_strength,
        note=note.strip(),
        created_by=by,
    )
    for batch in Batch.objects.filter(
        gold_rate__gt=0, status__in=[Batch.Status.DRAFT, Batch.Status.OPEN]
    ):
        batch_gold_sync(batch=batch)
    logger.info("comparison %s marked gold (%s) by %s", comparison.pk, preferred, by)
    return gold


@transaction.atomic
def batch_gold_sync(*, batch: Batch) -> int:
    """Give a draft or open batch with a gold rate a check of every active gold
    comparison it has none of: a copy of the comparison (same prompt and responses) in
    this batch, marked ``is_gold``. Only gold of the categories the batch's own work has
    (a lone safety task among helpfulness ones would stand out), never one whose pair
    the batch already holds. Returns how many checks it added."""
    if batch.gold_rate <= 0 or batch.status not in (Batch.Status.DRAFT, Batch.Status.OPEN):
        return 0
    own = Comparison.objects.filter(batch=batch, is_gold=False)
    categories = set(own.values_list("category", flat=True).distinct())
    held_hashes = set(Comparison.objects.filter(batch=batch).values_list("content_hash", flat=True))
    missing = (
        GoldComparison.objects.filter(is_active=True, comparison__category__in=categories)
        .exclude(checks__batch=batch)
        .select_related("comparison")
        .order_by("id")
    )
    checks = [
        Comparison(
            batch=batch,
            prompt_id=gold.comparison.prompt_id,
            response_a_id=gold.comparison.response_a_id,
            response_b_id=gold.comparison.response_b_id,
            category=gold.comparison.category,
            source=gold.comparison.source,
            external_id=gold.comparison.external_id,
            content_hash=gold.comparison.content_hash,
            is_gold=True,
            gold=gold,
        )
        for gold in missing
        if gold.comparison.content_hash not in held_hashes
    ]
    Comparison.objects.bulk_create(checks)
    return len(checks)


@transaction.atomic
def batch_quality_update(
    *,
    batch: Batch,
    by: User | None = None,
    gold_rate: float | None = None,
    gold_min_accuracy: float | None = None,
    gold_min_items: int | None = None,
    labels_per_comparison_max: int | None | str = "unchanged",
    queue_order: str | None = None,
) -> Batch:
    """Set a batch's quality settings (arguments left out stay as they are;
    ``labels_per_comparison_max=None`` turns adaptive overlap off). Refused on a frozen
    batch; an evaluation batch takes no gold (its labels are the evaluation).

    Back to arrival order, the comparisons' priorities return to 0; an uncertainty order
    is computed by a worker (``modeling.tasks.queue_priorities_refresh``) from the reward
    models of the batch's categories."""
    batch = Batch.objects.select_for_update().get(pk=batch.pk)
    if batch.is_frozen:
        raise ValidationError({"batch": f"Batch {batch.name!r} is frozen: it no longer changes."})
    errors: dict[str, str] = {}
    if gold_rate is not None:
        if not 0 <= gold_rate <= GOLD_RATE_MAX:
            errors["gold_rate"] = (
                f"Between 0 and {GOLD_RATE_MAX} (a share of tasks), not {gold_rate}."
            )
        elif gold_rate > 0 and batch.is_evaluation:
            errors["gold_rate"] = (
                "An evaluation batch takes no gold checks: its labels are the evaluation."
            )
        else:
            batch.gold_rate = gold_rate
    if gold_min_accuracy is not None:
        if not 0 <= gold_min_accuracy <= 1:
            errors["gold_min_accuracy"] = f"Between 0 and 1, not {gold_min_accuracy}."
        else:
            batch.gold_min_accuracy = gold_min_accuracy
    if gold_min_items is not None:
        if gold_min_items < 1:
            errors["gold_min_items"] = "At least 1."
        else:
            batch.gold_min_items = gold_min_items
    if labels_per_comparison_max != "unchanged":
        if labels_per_comparison_max is not None and (
            not isinstance(labels_per_comparison_max, int)
            or labels_per_comparison_max <= batch.labels_per_comparison
        ):
            errors["labels_per_comparison_max"] = (
                f"More than the base overlap ({batch.labels_per_comparison}), or blank for none."
            )
        else:
            batch.labels_per_comparison_max = labels_per_comparison_max
    order_changed = False
    if queue_order is not None:
        if queue_order not in Batch.QueueOrder.values:
            errors["queue_order"] = f"One of {', '.join(Batch.QueueOrder.values)}."
        else:
            order_changed = queue_order != batch.queue_order
            batch.queue_order = queue_order
    if errors:
        raise ValidationError(errors)
    if order_changed:
        Comparison.objects.filter(batch=batch).exclude(priority=0).update(priority=0.0)
        batch.priorities_computed_at = None
        batch.priorities_source = ""
    batch.save()
    batch_gold_sync(batch=batch)
    logger.info("batch %s quality settings changed by %s", batch.name, by)
    return batch


@transaction.atomic
def comparison_priorities_set(*, batch: Batch, priorities: dict[int, float], source: str) -> int:
    """Store the uncertainty order a worker computed: ``priorities`` maps comparison ids
    (of the batch's own work) to their score, higher first; the rest of the batch goes to
    0 (last). ``source`` says which reward models and how, for the admin. Ignored (0
    returned) when the batch is no longer ordered by uncertainty or is closed."""
    batch = Batch.objects.select_for_update().get(pk=batch.pk)
    if batch.queue_order == Batch.QueueOrder.ARRIVAL or batch.status not in (
        Batch.Status.DRAFT,
        Batch.Status.OPEN,
    ):
        return 0
    comparisons = list(Comparison.objects.filter(batch=batch, is_gold=False).only("id", "priority"))
    changed = []
    for c in comparisons:
        value = float(priorities.get(c.pk, 0.0))
        if c.priority != value:
            c.priority = value
            changed.append(c)
    Comparison.objects.bulk_update(changed, ["priority"], batch_size=1000)
    batch.priorities_computed_at = timezone.now()
    batch.priorities_source = source[:500]
    batch.save(update_fields=["priorities_computed_at", "priorities_source"])
    return len(changed)
