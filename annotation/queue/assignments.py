"""Handing out work: the one queue that the pages and the API both take tasks from,
skipping, expiry, and live annotation's direct hand-over."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.domain import Choice
from annotation.models import Assignment, Batch, Comparison, GoldComparison
from annotation.prepared import insert, instance_from_row, prepared_execute
from annotation.queue import reads, statements
from annotation.queue.statements import ASSIGNMENT_COLUMNS

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class AssignmentGone(ValidationError):
    """No such task among the annotator's own: it expired, its batch was closed, or it
    belongs to another annotator. One error for all three, so that nobody can tell
    another annotator's task from one that does not exist (a ValidationError)."""


def random_left() -> Choice:
    """Which stored response is shown on the left, drawn per assignment and recorded on
    it (a reload shows the recorded order; labels store it too)."""
    return random.choice((Choice.A, Choice.B))


def gold_draw() -> float:
    """The claim's uniform draw in [0, 1): a batch hands out a gold check when its
    ``gold_rate`` exceeds it (``statements.free_slots_sql``)."""
    return random.random()


def _assignment_from_row(row: tuple[Any, ...]) -> Assignment:
    return instance_from_row(Assignment, ASSIGNMENT_COLUMNS, row[: len(ASSIGNMENT_COLUMNS)])


def _assignment_current(annotator: User) -> Assignment | None:
    """The annotator's oldest unanswered task in an open batch.

    Plain SQL (a prepared statement on PostgreSQL) because it runs on every label: the
    ORM spent ~0.7 ms of CPU compiling this query; the row becomes the same model
    instance through ``Model.from_db``.
    """
    with connection.cursor() as cursor:
        prepared_execute(
            cursor,
            "pairwise_current",
            statements.assignment_current_sql(),
            reads.counts_params(annotator),
        )
        row = cursor.fetchone()
    return None if row is None else _assignment_from_row(row)


def _assignment_claim(annotator: User) -> Assignment | None:
    """Claim a free slot and record the assignment. Call inside a transaction."""
    with connection.cursor() as cursor:
        prepared_execute(
            cursor,
            "pairwise_claim",
            statements.comparison_claim_sql(),
            {"me": annotator.pk, "draw": gold_draw()},
        )
        row = cursor.fetchone()
    if row is None:
        return None
    assignment = Assignment(
        comparison_id=row[0], annotator=annotator, left=random_left(), assigned_at=timezone.now()
    )
    insert(assignment, "pairwise_assignment_insert")
    return assignment


def assignment_next(*, annotator: User) -> Assignment | None:
    """The annotator's current task, or a new claim on a comparison with a free slot.

    The one queue of Pairwise: the pages and the API both take work from here (as a
    task, through ``task_next``).

    Order: open batches by id (except those the annotator is paused on); inside a batch
    the comparisons with the fewest claims first, then the highest ``priority`` (reward-
    model uncertainty, when the batch is ordered by it; else all 0), then by id (FIFO for
    single-annotation batches, breadth-first when a comparison needs several labels). At
    the batch's ``gold_rate`` a gold check comes instead (``statements.free_slots_sql``).
    The claim walks the ``comparison_open_slots`` index (batch, is_gold, claims, priority,
    id) and stops at the first free row, so it costs the same at 100 or 100,000 open
    comparisons.

    Concurrency: on PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED
    inside the claiming UPDATE, and ``claims < labels_per_comparison`` is re-checked on the
    locked row, so two annotators asking at once never both take the last slot. The claim
    and the assignment are one transaction: no claim without its assignment.
    """
    current = _assignment_current(annotator)
    if current is not None:
        return current
    with transaction.atomic(savepoint=False):  # joins a caller's transaction as one unit
        return _assignment_claim(annotator)


def task_next(*, annotator: User) -> reads.Task | None:
    """``assignment_next`` as a task with its dialogue, responses and the annotator's
    counts (``reads.task_get``): what the API answers with, and the page shows. None when
    nothing is left.

    On PostgreSQL it is one statement (``statements.task_next_sql``): the current task if
    the annotator holds one, else claim a free slot and insert the assignment, then read
    the task and counts, in one round trip instead of four; a single statement is atomic.
    The counts come from the statement's snapshot, taken before its own claim: the
    claimed comparison still counts as free rather than in hand, so "remaining" (free +
    in hand) is the same. Elsewhere (SQLite): ``assignment_next`` then ``task_get``.
    """
    if connection.vendor != "postgresql":
        assignment = assignment_next(annotator=annotator)
        if assignment is None:
            return None
        return reads.task_get(assignment_id=assignment.pk, annotator=annotator)
    params = reads.counts_params(annotator)
    params["left"] = random_left().value
    params["draw"] = gold_draw()
    params["now"] = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_task_next", statements.task_next_sql(), params)
        row = cursor.fetchone()
    return None if row is None else reads.task_from_row(row)


def assignment_for_update(assignment_id: int, annotator: User) -> Assignment:
    """The annotator's assignment, row-locked, with its comparison (``category``,
    ``batch_id``, ``is_gold`` and, for a gold check, ``gold`` with the expected answer)
    and batch (``status``, ``name``, overlap and gold settings) as unsaved in-memory
    instances. Call inside a transaction. Raises ``AssignmentGone`` when it does not exist
    or is another annotator's.

    One plain-SQL statement (prepared on PostgreSQL): the ORM spent ~0.9 ms of CPU
    compiling ``select_for_update().select_related("comparison__batch")``. The assignment
    row is locked (``statements.assignment_for_update_sql``).
    """
    with connection.cursor() as cursor:
        prepared_execute(
            cursor, "pairwise_lock", statements.assignment_for_update_sql(), [assignment_id]
        )
        row = cursor.fetchone()
    if row is None or row[ASSIGNMENT_COLUMNS.index("annotator_id")] != annotator.pk:
        raise AssignmentGone({"assignment": "This task is not among yours (it may have expired)."})
    assignment = _assignment_from_row(row)
    (
        category,
        batch_id,
        batch_status,
        batch_name,
        is_gold,
        gold_preferred,
        gold_min_strength,
        labels_per_comparison,
        labels_per_comparison_max,
        gold_min_accuracy,
        gold_min_items,
    ) = row[len(ASSIGNMENT_COLUMNS) :]
    batch = Batch(
        id=batch_id,
        status=batch_status,
        name=batch_name,
        labels_per_comparison=labels_per_comparison,
        labels_per_comparison_max=labels_per_comparison_max,
        gold_min_accuracy=gold_min_accuracy,
        gold_min_items=gold_min_items,
    )
    gold = (
        GoldComparison(preferred=gold_preferred, min_strength=gold_min_strength)
        if is_gold
        else None
    )
    assignment.comparison = Comparison(
        id=assignment.comparison_id,
        category=category,
        batch=batch,
        is_gold=bool(is_gold),
        gold=gold,
    )
    return assignment


def count_finished(annotator_id: int, batch_id: int, *, done: int = 0, skipped: int = 0) -> None:
    """Add to the annotator's done / skipped counter of a batch, in the caller's transaction."""
    with connection.cursor() as cursor:
        prepared_execute(
            cursor,
            "pairwise_count_finished",
            statements.count_finished_sql(),
            statements.count_finished_params(annotator_id, batch_id, done=done, skipped=skipped),
        )


@transaction.atomic
def assignment_skip(*, assignment_id: int, annotator: User, reason: str) -> Assignment:
    """Skip a task with a reason; it goes back to the pool for others, never to this annotator."""
    reason = reason.strip()
    if not reason:
        raise ValidationError(
            {"reason": "Say why you are skipping (e.g. 'not my language', 'broken prompt')."}
        )
    assignment = assignment_for_update(assignment_id, annotator)
    if assignment.status == Assignment.Status.SKIPPED:
        return assignment
    if assignment.status == Assignment.Status.LABELLED:
        raise ValidationError({"assignment": "This task is already labelled."})
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason[:500]
    assignment.finished_at = timezone.now()
    assignment.save(update_fields=["status", "skip_reason", "finished_at"])
    Comparison.objects.filter(pk=assignment.comparison_id).update(claims=F("claims") - 1)
    count_finished(annotator.pk, assignment.comparison.batch_id, skipped=1)
    return assignment


def assignments_release_expired(*, ttl_seconds: int | None = None) -> int:
    """Return unanswered tasks older than the TTL to the pool. Returns how many."""
    ttl = ttl_seconds if ttl_seconds is not None else settings.ASSIGNMENT_TTL_SECONDS
    cutoff = timezone.now() - timedelta(seconds=ttl)
    released = 0
    with transaction.atomic():
        stale = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(status=Assignment.Status.ASSIGNED, assigned_at__lt=cutoff)
            .values_list("pk", "comparison_id")
        )
        for pk, comparison_id in stale:
            Assignment.objects.filter(pk=pk).delete()
            Comparison.objects.filter(pk=comparison_id).update(claims=F("claims") - 1)
            released += 1
    return released


@transaction.atomic
def assignment_create_for(
    *, comparison: Comparison, annotator: User, left: Choice | str = Choice.A
) -> Assignment:
    """Hand one specific comparison to one annotator (live annotation: they wrote its prompt).

    Counts as a claim, so the queue does not give it to anyone else."""
    comparison = Comparison.objects.select_for_update().get(pk=comparison.pk)
    assignment, created = Assignment.objects.get_or_create(
        comparison=comparison, annotator=annotator, defaults={"left": Choice(left).value}
    )
    if created:
        Comparison.objects.filter(pk=comparison.pk).update(claims=F("claims") + 1)
    return assignment
