"""Labelling: the one write path of a judgement, for the page, the API and live annotation.

``label_submit_and_next`` is the annotator's steady state (the page and the API's
label-and-next): store the label and hand out the next task in one transaction, with
one commit per label. On PostgreSQL that is four statements after authentication: lock
the assignment, the label's three writes in one, the next task in one, and the commit.
A label on a gold check adds one: the pause rule (``pauses.annotator_pause_by_gold``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotation.domain import gold_label_correct
from annotation.models import Assignment, Batch, Label
from annotation.prepared import insert, insert_values, mark_inserted, prepared_execute
from annotation.queue import reads, statements
from annotation.queue.assignments import assignment_for_update, task_next
from annotation.queue.pauses import annotator_pause_by_gold
from annotation.queue.rules import LabelInput, ShownLabelInput, label_fields

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class IdempotencyKeyReused(Exception):
    """The client sent an Idempotency-Key it already used for a different task."""


def _label_write(
    assignment_id: int, annotator: User, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool]:
    """Lock the assignment, insert the label, mark the assignment labelled. Call inside a
    transaction; an IntegrityError means the idempotency key was used before."""
    assignment = assignment_for_update(assignment_id, annotator)
    if assignment.status == Assignment.Status.LABELLED:
        return Label.objects.get(comparison_id=assignment.comparison_id, annotator=annotator), False
    if assignment.status == Assignment.Status.SKIPPED:
        raise ValidationError({"assignment": "You skipped this task; it cannot be labelled now."})
    comparison = assignment.comparison
    if comparison.batch.status != Batch.Status.OPEN:
        raise ValidationError(
            {
                "batch": f"Batch {comparison.batch.name!r} is {comparison.batch.status}: labels are closed."
            }
        )
    try:
        fields = label_fields(comparison.category, data.in_stored_terms(left=assignment.left))
    except ValidationError as exc:
        raise ValidationError(
            data.errors_in_own_terms(exc.message_dict, left=assignment.left)
        ) from None
    now = timezone.now()
    time_spent = data.time_spent_ms
    if time_spent is None:
        time_spent = int((now - assignment.assigned_at).total_seconds() * 1000)
    label = Label(
        comparison=comparison,
        annotator=annotator,
        comment=data.comment.strip(),
        left=assignment.left,
        time_spent_ms=time_spent,
        idempotency_key=data.idempotency_key,
        created_at=now,
        **fields,
    )
    assignment.status = Assignment.Status.LABELLED
    assignment.finished_at = now
    batch = comparison.batch
    gold = comparison.gold if comparison.is_gold else None
    correct = gold is not None and gold_label_correct(
        expected=gold.preferred,
        min_strength=gold.min_strength,
        preferred=label.preferred,
        strength=label.strength,
    )
    adaptive = (
        not comparison.is_gold
        and batch.labels_per_comparison_max is not None
        and batch.labels_per_comparison_max > batch.labels_per_comparison
    )
    # On PostgreSQL the label insert, the assignment's status, adaptive overlap's check and
    # the counters are one statement (data-modifying CTEs); SQLite has none: three or four.
    update_params = [
        assignment.status.value,
        connection.ops.adapt_datetimefield_value(now),
        assignment.pk,
    ]
    extend_params = [
        comparison.pk,
        batch.labels_per_comparison,
        batch.labels_per_comparison_max,
        batch.labels_per_comparison,
        label.strength,
        label.preferred,
    ]
    count_params = statements.count_finished_params(
        annotator.pk, comparison.batch_id, done=1, gold=int(gold is not None), correct=int(correct)
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            if adaptive:  # the labels of one comparison, one at a time
                prepared_execute(
                    cursor,
                    "pairwise_comparison_lock",
                    statements.comparison_lock_sql(),
                    [comparison.pk],
                )
            prepared_execute(
                cursor,
                "pairwise_label_write_adaptive" if adaptive else "pairwise_label_write",
                statements.label_write_sql(adaptive),
                insert_values(label)
                + update_params
                + (extend_params if adaptive else [])
                + count_params,
            )
            mark_inserted(label, cursor.fetchone()[0])
    else:
        if adaptive:  # before the insert: it counts the comparison's other labels
            with connection.cursor() as cursor:
                cursor.execute(statements.comparison_extend_sql(), extend_params)
        insert(label, "pairwise_label_insert")
        with connection.cursor() as cursor:
            cursor.execute(statements.labelled_sql(), update_params)
            cursor.execute(statements.count_finished_sql(), count_params)
    if gold is not None:
        annotator_pause_by_gold(annotator=annotator, batch=batch)
    return label, True


def _label_for_repeated_key(assignment_id: int, annotator: User, key: str) -> Label:
    """After the insert hit ``label_idempotency_key_once_per_annotator``: the earlier label
    if it was for this very task, else ``IdempotencyKeyReused``."""
    earlier = reads.label_get_by_idempotency_key(annotator=annotator, key=key)
    if earlier is None:
        raise IntegrityError("label insert failed, and not on its idempotency key")
    if not Assignment.objects.filter(
        pk=assignment_id, annotator=annotator, comparison_id=earlier.comparison_id
    ).exists():
        raise IdempotencyKeyReused(key)
    return earlier


def label_submit(
    *, assignment_id: int, annotator: User, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool]:
    """Record the annotator's label for their assignment. Returns (label, created).

    Idempotent: submitting again for the same assignment (double click, client retry)
    returns the first label and creates nothing. An idempotency key (``data``'s) the
    annotator already used on another task raises ``IdempotencyKeyReused``: a retry must
    never label a different comparison. The key is checked by a unique index, so the
    check costs nothing until a key repeats.

    Raises ``assignments.AssignmentGone`` (a ValidationError) when the task is not among
    the annotator's own, and a ValidationError naming the fields that break
    ``rules.label_fields``; nothing is written then.
    """
    try:
        with transaction.atomic():
            return _label_write(assignment_id, annotator, data)
    except IntegrityError:
        if not data.idempotency_key:
            raise
    return _label_for_repeated_key(assignment_id, annotator, data.idempotency_key), False


def label_submit_and_next(
    *, assignment_id: int, annotator: User, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool, reads.Task | None]:
    """``label_submit`` then ``assignments.task_next`` in one transaction: one commit per
    label. What the page and the API's label-and-next both call.

    Returns (label, created, the next task or None). Same rules as the two calls; the
    next task is only claimed once the label is valid and stored (or was stored before).
    """
    try:
        with transaction.atomic():
            label, created = _label_write(assignment_id, annotator, data)
            return label, created, task_next(annotator=annotator)
    except IntegrityError:
        if not data.idempotency_key:
            raise
    label = _label_for_repeated_key(assignment_id, annotator, data.idempotency_key)
    return label, False, task_next(annotator=annotator)
