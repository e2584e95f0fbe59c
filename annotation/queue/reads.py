"""Reads of the annotator queue: the task as the annotator sees it, and their counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection

from annotation.models import Assignment, Batch, Guideline, Label
from annotation.prepared import prepared_execute
from annotation.queue import statements
from annotation.queue.statements import REMAINING_COUNT_CAP
from annotation.selectors import guideline_active

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class AnnotatorCounts:
    """Done and skipped (in open batches), and remaining: open tasks this annotator may
    still take, counted up to a cap (``remaining_capped`` says the cap was reached)."""

    done: int
    remaining: int
    remaining_capped: bool
    skipped: int


@dataclass(frozen=True)
class TaskResponse:
    """One of the two responses as the annotator sees it: a side, never the stored A/B."""

    side: str  # "left" or "right"
    text: str


@dataclass(frozen=True)
class Task:
    """An annotator's task in display order; which stored response is left stays server-side."""

    assignment_id: int
    comparison_id: int
    batch_id: int
    batch_name: str
    category: str
    turns: list[dict]
    left: TaskResponse
    right: TaskResponse
    assigned_at: datetime | str  # as the driver returns it: SQLite's is text
    guideline: Guideline | None
    counts: AnnotatorCounts


def counts_params(annotator: User) -> dict[str, Any]:
    """Parameters of ``statements.counts_sql`` (and of the task statements) for ``annotator``."""
    return {
        "me": annotator.pk,
        "open": Batch.Status.OPEN.value,
        "assigned": Assignment.Status.ASSIGNED.value,
    }


def task_get(*, assignment_id: int, annotator: User) -> Task | None:
    """The annotator's own assignment as a task (None if it is not theirs or is gone).

    One statement: the assignment with its dialogue and both responses, and the
    annotator's counts (see ``annotator_counts``); the guideline comes from its cache.
    Plain SQL because every label renders a task: the ORM spent ~1.2 ms of CPU compiling
    the five joins, ten times what PostgreSQL spends running them.
    """
    params = counts_params(annotator)
    params["assignment"] = assignment_id
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_task", statements.task_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return task_from_row(row)


def task_from_row(row: tuple[Any, ...]) -> Task:
    """A ``Task`` from a row of ``statements.task_select_sql``."""
    (
        pk,
        left,
        assigned_at,
        comparison_id,
        batch_id,
        batch_name,
        category,
        turns,
        text_a,
        text_b,
        *counts,
    ) = row
    texts = {"A": text_a, "B": text_b}
    shown_left, shown_right = ("A", "B") if left == "A" else ("B", "A")
    return Task(
        assignment_id=pk,
        comparison_id=comparison_id,
        batch_id=batch_id,
        batch_name=batch_name,
        category=category,
        turns=json.loads(turns) if isinstance(turns, str | bytes) else turns,
        left=TaskResponse("left", texts[shown_left]),
        right=TaskResponse("right", texts[shown_right]),
        assigned_at=assigned_at,
        guideline=guideline_active(category),
        counts=_counts_from_row(*counts, cap=REMAINING_COUNT_CAP),
    )


def annotator_counts(annotator: User, *, cap: int = REMAINING_COUNT_CAP) -> AnnotatorCounts:
    """Done, skipped and remaining for the task screen: one query, O(cap) rather than O(batch).

    An exact count of remaining tasks reads every open comparison (~100 ms at 20k rows on
    PostgreSQL, on every task fetch); nobody needs "12,345 left" exactly, so counting stops
    at ``cap`` and the screen shows "100+". Below the cap it is exact.

    "Done" and "skipped" come from the annotator's ``AnnotatorBatchCount`` rows of open
    batches (O(open batches), not O(history)): ``labels`` and ``assignments`` add to them
    in the transaction that labels or skips an assignment, the only writes of those
    statuses (imported labels have no user).

    Plain SQL because this runs on every task fetch: the ORM spends ~4 ms of CPU compiling
    the subqueries, and it cannot express COUNT over a LIMITed subquery without a join
    back to the whole table.
    """
    with connection.cursor() as cursor:
        prepared_execute(
            cursor,
            f"pairwise_counts_{cap:d}",
            statements.counts_sql(cap),
            counts_params(annotator),
        )
        return _counts_from_row(*cursor.fetchone(), cap=cap)


def _counts_from_row(
    done: int, skipped: int, in_hand: int, free: int, *, cap: int
) -> AnnotatorCounts:
    remaining = free + in_hand
    return AnnotatorCounts(
        done=done, remaining=min(remaining, cap), remaining_capped=remaining >= cap, skipped=skipped
    )


def label_get_by_idempotency_key(*, annotator: User, key: str) -> Label | None:
    """The annotator's label submitted under ``key`` (a client's Idempotency-Key), if any."""
    if not key:
        return None
    return Label.objects.filter(annotator=annotator, idempotency_key=key).first()
