"""Labelling: the one write path of a judgement, for the page, the API and live annotation.

``label_submit_and_next`` is the annotator's steady state (the page and the API's
label-and-next): store the label and hand out the next task in one transaction, with
one commit per label. On PostgreSQL the plain case is one round trip after
authentication: one function call (``statements.label_and_next_function``) that locks
the assignment, writes the label and reads the next task with the very statements
below, committed as one statement. Everything else (a repeat, a skipped task, a closed
batch, field errors, a gold check and its pause rule, a database without the function,
SQLite) takes the separate statements in a transaction: lock the assignment, the
label's three writes in one, the next task in one, the pause rule after a gold check
(``pauses.annotator_pause_by_gold``), and the commit.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotation.domain import Category, Choice, gold_label_correct
from annotation.models import Assignment, Batch, Comparison, Label
from annotation.prepared import insert, insert_values, mark_inserted, prepared_execute
from annotation.queue import reads, statements
from annotation.queue.assignments import assignment_for_update, gold_draw, random_left, task_next
from annotation.queue.pauses import annotator_pause_by_gold
from annotation.queue.rules import LabelInput, ShownLabelInput, label_fields

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


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
    if connection.vendor == "postgresql":
        written = _label_and_next_in_one_call(assignment_id, annotator, data)
        if written is not None:
            return written
    try:
        with transaction.atomic():
            label, created = _label_write(assignment_id, annotator, data)
            return label, created, task_next(annotator=annotator)
    except IntegrityError:
        if not data.idempotency_key:
            raise
    label = _label_for_repeated_key(assignment_id, annotator, data.idempotency_key)
    return label, False, task_next(annotator=annotator)


# --- the plain case in one round trip (PostgreSQL) ----------------------------------------


def _stored_variants(data: LabelInput | ShownLabelInput) -> dict[str, dict[str, dict]] | None:
    """``rules.label_fields`` of ``data`` for each category and each response that may be
    on the left ({category: {left: fields}}, a category missing when ``data`` breaks its
    rules), or None when no category takes it: the separate statements then answer."""
    try:
        stored = {left.value: data.in_stored_terms(left=left) for left in Choice}
    except ValueError:
        return None
    variants: dict[str, dict[str, dict]] = {}
    for category in Category:
        try:
            variants[category.value] = {
                left: label_fields(category, terms) for left, terms in stored.items()
            }
        except ValidationError:
            continue
    return variants or None


def label_and_next_params(
    assignment_id: int,
    annotator: User,
    data: LabelInput | ShownLabelInput,
    variants: dict,
    *,
    now: datetime,
) -> dict[str, Any]:
    """The inputs of ``statements.label_and_next_function`` (``LABEL_AND_NEXT_ARGS``)."""
    any_valid = next(iter(variants.values()))
    safety = variants.get(Category.SAFETY.value)
    params: dict[str, Any] = {
        **reads.counts_params(annotator),
        "assignment": assignment_id,
        "labelled": Assignment.Status.LABELLED.value,
        "now": now,
        "left": random_left().value,
        "draw": gold_draw(),
        "strength": any_valid["A"]["strength"],
        "helpfulness_valid": Category.HELPFULNESS.value in variants,
        "safety_valid": safety is not None,
        "comment": data.comment.strip(),
        "time_spent_ms": data.time_spent_ms,
        "idempotency_key": data.idempotency_key,
    }
    for left in ("a", "b"):
        fields = any_valid[left.upper()]
        params[f"preferred_if_{left}_left"] = fields["preferred"]
        for column in ("safety_a", "safety_b", "safety_bin"):
            params[f"{column}_if_{left}_left"] = (
                "" if safety is None else safety[left.upper()][column]
            )
    return params


def _function_missing() -> bool:
    """Whether this connection found the label-and-next function missing (see ``_call``)."""
    missing = getattr(connection, "_pairwise_function_missing", None)
    return missing is not None and missing is connection.connection


def _undefined_function(exc: BaseException) -> bool:
    """Whether ``exc`` (the driver's, or Django's wrapping it) is PostgreSQL's "function
    does not exist" (SQLSTATE 42883)."""
    return any(getattr(e, "pgcode", None) == "42883" for e in (exc, exc.__cause__) if e is not None)


def _label_and_next_in_one_call(
    assignment_id: int, annotator: User, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool, reads.Task | None] | None:
    """``label_submit_and_next`` in one round trip, or None when the function wrote
    nothing (any case but the plain one, see ``statements.label_and_next_function``)
    and the separate statements must answer."""
    variants = _stored_variants(data)
    if variants is None or _function_missing():
        return None
    _, _, call = statements.label_and_next_function()
    now = timezone.now()
    params = label_and_next_params(assignment_id, annotator, data, variants, now=now)
    try:
        if connection.in_atomic_block:  # inside a caller's transaction: a savepoint
            with transaction.atomic():
                row = _call(call, params)
        else:  # one statement, its own transaction
            row = _call(call, params)
    except IntegrityError:
        return None  # a repeated idempotency key: the separate statements tell which
    except Exception as exc:
        if not _undefined_function(exc):
            raise
        # A database migrated by another version of the code: the statement failed
        # alone (in its own transaction, or a savepoint), and this connection stops
        # asking.
        logger.warning(
            "The label-and-next function is missing: labels take the separate statements"
            " (run manage.py migrate to create it)."
        )
        connection._pairwise_function_missing = connection.connection  # type: ignore[attr-defined]
        return None
    written, label_id, comparison_id, batch_id, category, left, time_spent_ms, *task = row
    if not written:
        return None
    label = Label(
        comparison_id=comparison_id,
        annotator=annotator,
        comment=params["comment"],
        left=left,
        time_spent_ms=time_spent_ms,
        idempotency_key=data.idempotency_key,
        created_at=now,
        **variants[category][left],
    )
    label.comparison = Comparison(id=comparison_id, batch_id=batch_id, category=category)
    mark_inserted(label, label_id)
    return label, True, None if task[0] is None else reads.task_from_row(tuple(task))


def _call(call: str, params: dict[str, Any]) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_label_and_next", call, params, discard_plans=True)
        return cursor.fetchone()


def label_and_next_install(using: str = "default") -> str | None:
    """Create the label-and-next function on a PostgreSQL database (after ``migrate``:
    ``annotation.apps``) and drop its earlier versions. Returns its name."""
    if using != connection.alias or connection.vendor != "postgresql":
        return None
    name, create, _ = statements.label_and_next_function()
    with connection.cursor() as cursor:
        cursor.execute(create)
        cursor.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.proname LIKE 'pairwise\\_label\\_and\\_next\\_%%' AND p.proname <> %s",
            [name],
        )
        for (old,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION IF EXISTS {old}")
    connection._pairwise_function_missing = None  # type: ignore[attr-defined]
    return name
