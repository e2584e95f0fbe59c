"""Pausing an annotator on a batch: by the gold rule after a gold check, or by an admin;
and resuming them. The only writes of ``AnnotatorBatchCount.paused``; each records an
``AnnotatorPauseEvent`` (who, why, the gold record then).

A paused annotator gets none of the batch's tasks (``statements.free_slots_sql``), and
their unanswered tasks in it go back to the pool at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F

from annotation.models import (
    AnnotatorBatchCount,
    AnnotatorPauseEvent,
    Assignment,
    Batch,
    Comparison,
)
from annotation.prepared import prepared_execute
from annotation.queue import statements

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def gold_rule_reason(*, batch: Batch, labels: int, correct: int) -> str:
    """The gold rule's reason, in words, as the annotator and the admin read it."""
    return (
        f"Gold accuracy {correct}/{labels} ({100 * correct / labels:.0f} %) is below this"
        f" batch's {100 * batch.gold_min_accuracy:.0f} % (checked after {batch.gold_min_items}"
        " gold checks)."
    )


def _release_in_hand(annotator: User, batch_id: int) -> int:
    """The annotator's unanswered tasks in the batch go back to the pool. Returns how many."""
    held = list(
        Assignment.objects.select_for_update()
        .filter(
            annotator=annotator, comparison__batch_id=batch_id, status=Assignment.Status.ASSIGNED
        )
        .values_list("pk", "comparison_id")
    )
    for pk, comparison_id in held:
        Assignment.objects.filter(pk=pk).delete()
        Comparison.objects.filter(pk=comparison_id).update(claims=F("claims") - 1)
    return len(held)


def annotator_pause_by_gold(*, annotator: User, batch: Batch) -> AnnotatorPauseEvent | None:
    """After a label on a gold check, in its transaction: pause the annotator on the batch
    if at least ``batch.gold_min_items`` gold checks since they were last resumed are
    fewer than ``batch.gold_min_accuracy`` right. ``batch`` needs ``id``, ``name`` and the
    gold settings. Returns the event when it paused them."""
    with connection.cursor() as cursor:
        prepared_execute(
            cursor,
            "pairwise_pause_by_gold",
            statements.annotator_pause_by_gold_sql(),
            [annotator.pk, batch.pk, batch.gold_min_items, batch.gold_min_accuracy],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    gold_labels, gold_correct, since_labels, since_correct = row
    _release_in_hand(annotator, batch.pk)
    return AnnotatorPauseEvent.objects.create(
        annotator=annotator,
        batch_id=batch.pk,
        paused=True,
        by=None,
        reason=gold_rule_reason(batch=batch, labels=since_labels, correct=since_correct),
        gold_labels=gold_labels,
        gold_correct=gold_correct,
    )


def _set_paused(
    *, annotator: User, batch: Batch, paused: bool, by: User, reason: str
) -> AnnotatorPauseEvent:
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why (it is recorded, and the annotator sees it)."})
    AnnotatorBatchCount.objects.get_or_create(annotator=annotator, batch=batch)
    count = AnnotatorBatchCount.objects.select_for_update().get(annotator=annotator, batch=batch)
    if count.paused == paused:
        state = "paused" if paused else "not paused"
        raise ValidationError(
            {"annotator": f"{annotator.username} is already {state} on {batch.name!r}."}
        )
    count.paused = paused
    fields = ["paused"]
    if not paused:  # the rule starts counting afresh
        count.gold_labels_since_resume = count.gold_correct_since_resume = 0
        fields += ["gold_labels_since_resume", "gold_correct_since_resume"]
    count.save(update_fields=fields)
    if paused:
        _release_in_hand(annotator, batch.pk)
    return AnnotatorPauseEvent.objects.create(
        annotator=annotator,
        batch=batch,
        paused=paused,
        by=by,
        reason=reason[:2000],
        gold_labels=count.gold_labels,
        gold_correct=count.gold_correct,
    )


@transaction.atomic
def annotator_pause(*, annotator: User, batch: Batch, by: User, reason: str) -> AnnotatorPauseEvent:
    """An admin pauses an annotator on a batch, saying why; their tasks in hand go back."""
    return _set_paused(annotator=annotator, batch=batch, paused=True, by=by, reason=reason)


@transaction.atomic
def annotator_resume(
    *, annotator: User, batch: Batch, by: User, reason: str
) -> AnnotatorPauseEvent:
    """An admin resumes a paused annotator on a batch, saying why. The gold rule counts
    afresh from here (their gold accuracy in all is kept), so it does not pause them
    again on the old record."""
    return _set_paused(annotator=annotator, batch=batch, paused=False, by=by, reason=reason)
