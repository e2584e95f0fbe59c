"""Writes to preference data. Every state change is one atomic service call.

Views, API endpoints, admin actions, commands and tasks call these; none of them writes
models directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation import importers, selectors
from annotation.domain import Category, Choice, SafetyTag, Strength, Turn, safety_bin
from annotation.models import (
    AnnotatorBatchCount,
    Assignment,
    Batch,
    Comparison,
    Guideline,
    Label,
    Prompt,
    Response,
)
from annotation.permissions import ROLE_PERMISSIONS

logger = logging.getLogger(__name__)


# --- roles -----------------------------------------------------------------------------


def roles_ensure() -> None:
    """Create the annotator / researcher / admin groups with their permissions (idempotent)."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is not None:
                wanted.append(found)
        group.permissions.add(*wanted)


def user_set_role(*, user, role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; choose one of {sorted(ROLE_PERMISSIONS)}."}
        )
    roles_ensure()
    user.groups.add(Group.objects.get(name=role))
    if role == "admin":
        user.is_staff = True
        user.save(update_fields=["is_staff"])


# --- batches ---------------------------------------------------------------------------

ALLOWED_TRANSITIONS = {
    Batch.Status.DRAFT: {Batch.Status.OPEN},
    Batch.Status.OPEN: {Batch.Status.CLOSED},
    Batch.Status.CLOSED: {Batch.Status.OPEN, Batch.Status.FROZEN},
    Batch.Status.FROZEN: set(),
}


def batch_create(
    *,
    name: str,
    description: str = "",
    iteration: int = 0,
    labels_per_comparison: int = 1,
    created_by=None,
) -> Batch:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A batch needs a name."})
    if Batch.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A batch named {name!r} already exists."})
    if labels_per_comparison < 1:
        raise ValidationError({"labels_per_comparison": "Must be at least 1."})
    return Batch.objects.create(
        name=name,
        description=description,
        iteration=iteration,
        labels_per_comparison=labels_per_comparison,
        created_by=created_by,
    )


def batch_content_hash(batch: Batch) -> str:
    """SHA-256 over the batch's comparisons and labels in a canonical order.

    Streams rows; the same data gives the same hash on SQLite and PostgreSQL.
    """
    digest = hashlib.sha256()
    comparisons = (
        Comparison.objects.filter(batch=batch)
        .order_by("id")
        .values_list("id", "content_hash", "category")
    )
    for row in comparisons.iterator(chunk_size=2000):
        digest.update(json.dumps(["c", *row]).encode())
    labels = (
        Label.objects.filter(comparison__batch=batch)
        .order_by("id")
        .values_list(
            "id",
            "comparison_id",
            "annotator_id",
            "source_annotator",
            "preferred",
            "strength",
            "safety_a",
            "safety_b",
            "safety_bin",
            "comment",
            "left",
            "time_spent_ms",
        )
    )
    for row in labels.iterator(chunk_size=2000):
        digest.update(json.dumps(["l", *row]).encode())
    return digest.hexdigest()


@transaction.atomic
def batch_transition(*, batch: Batch, to: str, by=None) -> Batch:
    """Move a batch along draft → open → closed → frozen (closed may reopen).

    Freezing records the content hash; a frozen batch never changes again.
    """
    batch = Batch.objects.select_for_update().get(pk=batch.pk)
    to = Batch.Status(to)
    current = Batch.Status(batch.status)
    if to not in ALLOWED_TRANSITIONS[current]:
        raise ValidationError(
            {
                "status": f"Batch {batch.name!r} is {current.label.lower()}; it cannot become {to.label.lower()}."
            }
        )
    now = timezone.now()
    if to is Batch.Status.OPEN:
        if not batch.comparisons.exists():
            raise ValidationError({"status": f"Batch {batch.name!r} has no comparisons to open."})
        batch.opened_at = batch.opened_at or now
    elif to is Batch.Status.CLOSED:
        batch.closed_at = now
        # Work handed out but not done goes nowhere: release it.
        stale = Assignment.objects.filter(
            comparison__batch=batch, status=Assignment.Status.ASSIGNED
        )
        for comparison_id in stale.values_list("comparison_id", flat=True):
            Comparison.objects.filter(pk=comparison_id).update(claims=F("claims") - 1)
        stale.delete()
    elif to is Batch.Status.FROZEN:
        if not Label.objects.filter(comparison__batch=batch).exists():
            raise ValidationError(
                {"status": f"Batch {batch.name!r} has no labels; there is nothing to freeze."}
            )
        batch.frozen_at = now
        batch.freeze_hash = batch_content_hash(batch)
    batch.status = to
    batch.save()
    logger.info("batch %s → %s by %s", batch.name, to, by)
    return batch


# --- prompts, responses, comparisons ----------------------------------------------------


def prompt_get_or_create(
    *, turns: tuple[Turn, ...] | list[Turn], source: str = "", created_by=None
) -> Prompt:
    content_hash = importers.turns_hash(turns)
    prompt, _ = Prompt.objects.get_or_create(
        content_hash=content_hash,
        defaults={
            "turns": [t.as_dict() for t in turns],
            "source": source,
            "created_by": created_by,
        },
    )
    return prompt


def _require_editable(batch: Batch) -> None:
    if batch.status not in (Batch.Status.DRAFT, Batch.Status.OPEN):
        raise ValidationError(
            {
                "batch": f"Batch {batch.name!r} is {batch.status}: comparisons can no longer be added."
            }
        )


@transaction.atomic
def comparison_create(
    *,
    batch: Batch,
    turns: tuple[Turn, ...] | list[Turn],
    response_a: importers.ResponseIn,
    response_b: importers.ResponseIn,
    category: Category | str,
    source: str = "",
    external_id: str = "",
    metadata: dict | None = None,
    created_by=None,
) -> Comparison:
    _require_editable(batch)
    category = Category(category)
    prompt = prompt_get_or_create(turns=turns, source=source, created_by=created_by)
    responses = [
        Response.objects.create(
            prompt=prompt,
            text=r.text,
            model_version=r.model_version,
            sampling=r.sampling,
            generated_at=r.generated_at,
        )
        for r in (response_a, response_b)
    ]
    content_hash = importers.comparison_hash(turns, response_a.text, response_b.text, category)
    try:
        with transaction.atomic():
            return Comparison.objects.create(
                batch=batch,
                prompt=prompt,
                response_a=responses[0],
                response_b=responses[1],
                category=category,
                source=source,
                external_id=external_id,
                content_hash=content_hash,
                metadata=metadata or {},
            )
    except IntegrityError:
        raise ValidationError(
            {"comparison": f"Batch {batch.name!r} already has this comparison."}
        ) from None


@dataclass
class ImportReport:
    """What an import did. ``skipped_invalid`` is non-empty only for an explicit partial import."""

    filename: str
    lines_read: int
    created: int = 0
    labels_created: int = 0
    duplicates_existing: int = 0
    skipped_invalid: list[importers.ImportProblem] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{self.created} comparison(s) imported from {self.filename} ({self.lines_read} lines)"
        ]
        if self.labels_created:
            parts.append(f"{self.labels_created} label(s)")
        if self.duplicates_existing:
            parts.append(f"{self.duplicates_existing} already in the batch, not duplicated")
        if self.skipped_invalid:
            parts.append(f"{len(self.skipped_invalid)} invalid row(s) skipped")
        return "; ".join(parts) + "."


def comparisons_import(
    *,
    batch: Batch,
    stream: IO[bytes],
    fmt: str,
    filename: str = "upload",
    category: Category | str | None = None,
    with_labels: bool = True,
    skip_invalid: bool = False,
    source: str = "",
    created_by=None,
) -> ImportReport:
    """Import a JSONL file into ``batch``: all of it or nothing.

    The whole file is parsed and validated before anything is written. With
    ``skip_invalid`` the invalid rows are left out and listed in the report instead
    (an explicit partial import). Rows already in the batch are not duplicated.
    """
    _require_editable(batch)
    try:
        parsed = importers.parse_file(
            stream,
            fmt=fmt,
            filename=filename,
            category=category,
            with_labels=with_labels,
            source=source,
        )
    except ValueError as exc:
        raise ValidationError({"format": str(exc)}) from None
    if parsed.problems and (not skip_invalid or not parsed.rows):
        raise importers.ImportFileError(filename, parsed.problems)
    report = ImportReport(
        filename=filename, lines_read=parsed.lines_read, skipped_invalid=parsed.problems
    )
    source = source or ("anthropic-hh" if fmt == "hh" else filename)
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        _require_editable(batch)
        existing = set(
            Comparison.objects.filter(
                batch=batch, content_hash__in=[r.content_hash for r in parsed.rows]
            ).values_list("content_hash", flat=True)
        )
        for row in parsed.rows:
            if row.content_hash in existing:
                report.duplicates_existing += 1
                continue
            comparison = comparison_create(
                batch=batch,
                turns=row.turns,
                response_a=row.response_a,
                response_b=row.response_b,
                category=row.category,
                source=source,
                external_id=row.external_id,
                metadata=row.metadata,
                created_by=created_by,
            )
            for label in row.labels:
                Label.objects.create(
                    comparison=comparison,
                    source_annotator=label.source_annotator,
                    preferred=label.preferred,
                    strength=label.strength,
                    comment=label.comment,
                )
                report.labels_created += 1
            report.created += 1
    logger.info("import into %s: %s", batch.name, report.summary())
    return report


# --- guidelines ------------------------------------------------------------------------


@transaction.atomic
def guideline_publish(*, category: Category | str, title: str, body: str) -> Guideline:
    """Publish a new version of a category's guidelines; older versions stay for the record."""
    category = Category(category)
    last = Guideline.objects.filter(category=category).order_by("-version").first()
    Guideline.objects.filter(category=category).update(is_active=False)
    guideline = Guideline.objects.create(
        category=category, title=title, body=body, version=(last.version + 1 if last else 1)
    )
    # Now for this process, and again at commit so no reader re-caches the old version.
    selectors.guideline_cache_clear(category)
    transaction.on_commit(lambda: selectors.guideline_cache_clear(category))
    return guideline


# --- the annotator queue -----------------------------------------------------------------


def _random_left() -> Choice:
    """Which stored response is shown on the left, drawn per assignment and recorded on
    it (a reload shows the recorded order; labels store it too)."""
    return random.choice((Choice.A, Choice.B))


@selectors.cached_sql
def _comparison_claim_sql(annotator_param: str = "%s", guard: str = "") -> str:
    """One statement that claims a free slot: ``claims + 1`` on the first comparison of an
    open batch with a slot left that this annotator never had; returns its id.
    ``annotator_param`` is the placeholder of the annotator's id; ``guard`` (a condition
    ending in ``AND``) can stop the claim, as ``_task_next_sql`` does.

    Plain SQL because the ORM cannot return the updated row (``update()`` returns a count),
    which would cost a second statement per claim. SQLite takes it as is (RETURNING since
    3.35; its transactions are IMMEDIATE, so claims are serialised); PostgreSQL adds the
    row lock.
    """
    lock = (
        " FOR UPDATE OF c SKIP LOCKED"
        if connection.features.has_select_for_update_skip_locked
        else ""
    )
    return (
        f"UPDATE {Comparison._meta.db_table} SET claims = claims + 1 WHERE {guard}id = ("
        f"{selectors.free_slots_sql(annotator_param=annotator_param, limit=1, lock=lock)}"
        ") RETURNING id"
    )


_ASSIGNMENT_COLUMNS = (
    "id",
    "comparison_id",
    "annotator_id",
    "status",
    "left",
    "assigned_at",
    "finished_at",
    "skip_reason",
)


def _queue_tables() -> dict[str, str]:
    """Table names of the queue's plain-SQL statements."""
    return {
        "assignment": Assignment._meta.db_table,
        "comparison": Comparison._meta.db_table,
        "batch": Batch._meta.db_table,
    }


def _assignment_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{connection.ops.quote_name(c)}" for c in _ASSIGNMENT_COLUMNS)


def _assignment_from_row(row) -> Assignment:
    return selectors.instance_from_row(
        Assignment, _ASSIGNMENT_COLUMNS, row[: len(_ASSIGNMENT_COLUMNS)]
    )


def _assignment_current(annotator) -> Assignment | None:
    """The annotator's oldest unanswered task in an open batch.

    Plain SQL (a prepared statement on PostgreSQL) because it runs on every label: the
    ORM spent ~0.7 ms of CPU compiling this query; the row becomes the same model
    instance through ``Model.from_db``.
    """
    with connection.cursor() as cursor:
        selectors.prepared_execute(
            cursor,
            "pairwise_current",
            _assignment_current_sql(),
            selectors.counts_params(annotator),
        )
        row = cursor.fetchone()
    return None if row is None else _assignment_from_row(row)


@selectors.cached_sql
def _assignment_current_sql() -> str:
    """``_assignment_current``'s statement; parameters ``selectors.counts_params``."""
    tables = {**_queue_tables(), "columns": _assignment_columns("a")}
    return (
        "SELECT {columns} FROM {assignment} a JOIN {comparison} c ON c.id = a.comparison_id"
        " JOIN {batch} b ON b.id = c.batch_id"
        " WHERE a.annotator_id = %(me)s AND a.status = %(assigned)s AND b.status = %(open)s"
        " ORDER BY a.assigned_at LIMIT 1"
    ).format(**tables)


def _insert(obj, name: str) -> None:
    """Insert a new model instance with one plain-SQL statement (prepared on PostgreSQL),
    setting its primary key: what ``Model.objects.create`` does for these two models,
    without the ~0.4 ms of CPU the ORM spends compiling each insert. ``auto_now_add``
    fields must be set by the caller."""
    sql, returning = _insert_sql(type(obj))
    with connection.cursor() as cursor:
        selectors.prepared_execute(cursor, name, sql, _insert_values(obj))
        _inserted(obj, cursor.fetchone()[0] if returning else cursor.lastrowid)


def _insert_values(obj) -> list:
    opts = obj._meta
    return [
        f.get_db_prep_save(getattr(obj, f.attname), connection)
        for f in opts.concrete_fields
        if f is not opts.pk
    ]


def _inserted(obj, pk) -> None:
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias


@selectors.cached_sql
def _insert_sql(model) -> tuple[str, bool]:
    """``_insert``'s statement for ``model``, and whether it returns the new primary key."""
    opts = model._meta
    fields = [f for f in opts.concrete_fields if f is not opts.pk]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        opts.db_table, columns, ", ".join(["%s"] * len(fields))
    )
    returning = connection.features.can_return_columns_from_insert
    if returning:
        sql += " RETURNING " + connection.ops.quote_name(opts.pk.column)
    return sql, returning


@selectors.cached_sql
def _count_finished_sql() -> str:
    """Add to the annotator's done / skipped counter of a batch (``AnnotatorBatchCount``):
    one upsert, in the transaction that labels or skips the assignment. Parameters:
    annotator id, batch id, done, skipped."""
    table = AnnotatorBatchCount._meta.db_table
    return (
        f"INSERT INTO {table} (annotator_id, batch_id, done, skipped) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (annotator_id, batch_id) DO UPDATE"
        f" SET done = {table}.done + excluded.done, skipped = {table}.skipped + excluded.skipped"
    )


def _count_finished(annotator_id: int, batch_id: int, *, done: int = 0, skipped: int = 0) -> None:
    with connection.cursor() as cursor:
        selectors.prepared_execute(
            cursor,
            "pairwise_count_finished",
            _count_finished_sql(),
            [annotator_id, batch_id, done, skipped],
        )


def _assignment_claim(annotator) -> Assignment | None:
    """Claim a free slot and record the assignment. Call inside a transaction."""
    with connection.cursor() as cursor:
        selectors.prepared_execute(
            cursor,
            "pairwise_claim",
            _comparison_claim_sql(),
            [annotator.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    assignment = Assignment(
        comparison_id=row[0], annotator=annotator, left=_random_left(), assigned_at=timezone.now()
    )
    _insert(assignment, "pairwise_assignment_insert")
    return assignment


def assignment_next(*, annotator) -> Assignment | None:
    """The annotator's current task, or a new claim on a comparison with a free slot.

    The one queue of Pairwise: the pages and the API both take work from here.

    Order: open batches by id; inside a batch the comparisons with the fewest claims first,
    then by id (FIFO for single-annotation batches, breadth-first when a comparison needs
    several labels). The claim walks the ``comparison_open_slots`` index (batch, claims,
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


def task_next(*, annotator) -> selectors.Task | None:
    """``assignment_next`` as a task with its dialogue, responses and the annotator's
    counts (``selectors.task_get``): what the API answers with. None when nothing is left.

    On PostgreSQL it is one statement (data-modifying CTEs): the current task if the
    annotator holds one, else claim a free slot and insert the assignment, then read the
    task and counts, in one round trip instead of four; a single statement is atomic.
    The counts come from the statement's snapshot, taken before its own claim: the
    claimed comparison still counts as free rather than in hand, so "remaining" (free +
    in hand) is the same. Elsewhere (SQLite): ``assignment_next`` then ``task_get``.
    """
    if connection.vendor != "postgresql":
        assignment = assignment_next(annotator=annotator)
        if assignment is None:
            return None
        return selectors.task_get(assignment_id=assignment.pk, annotator=annotator)
    params = selectors.counts_params(annotator)
    params["left"] = _random_left().value
    params["now"] = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        selectors.prepared_execute(cursor, "pairwise_task_next", _task_next_sql(), params)
        row = cursor.fetchone()
    return None if row is None else selectors.task_from_row(row)


@selectors.cached_sql
def _task_next_sql() -> str:
    """``task_next``'s statement on PostgreSQL: ``_assignment_current``, else
    ``_comparison_claim_sql`` and the assignment insert, then ``selectors.task_get``'s
    read of whichever it is. The claim's ``WHERE NOT EXISTS (current task)`` is a one-time
    filter: when the annotator holds a task, the free-slot walk never runs (nothing is
    locked)."""
    tables = {
        **_queue_tables(),
        "left": connection.ops.quote_name("left"),
        "current": _assignment_current_sql(),
        "claim": _comparison_claim_sql("%(me)s", "NOT EXISTS (SELECT 1 FROM current_task) AND "),
    }
    ctes = (
        "WITH current_task AS ("
        "SELECT cur.id, cur.comparison_id, cur.{left}, cur.assigned_at FROM ({current}) cur),"
        " claimed AS ({claim}),"
        " created AS (INSERT INTO {assignment}"
        " (comparison_id, annotator_id, status, {left}, assigned_at, finished_at, skip_reason)"
        " SELECT id, %(me)s, %(assigned)s, %(left)s, %(now)s, NULL, '' FROM claimed"
        " RETURNING id, comparison_id, {left}, assigned_at),"
        " next_task AS (SELECT * FROM current_task UNION ALL SELECT * FROM created) "
    ).format(**tables)
    return ctes + selectors.task_select_sql(source="next_task", where="")


class AssignmentGone(ValidationError):
    """The task no longer exists: it expired, or its batch was closed (a ValidationError)."""


class AssignmentNotYours(PermissionDenied):
    """The task belongs to another annotator."""


class IdempotencyKeyReused(Exception):
    """The client sent an Idempotency-Key it already used for a different task."""


def _assignment_for_update(assignment_id: int, annotator) -> Assignment:
    """The assignment, row-locked, with its comparison (``category``, ``batch_id``) and
    batch (``status``, ``name``) as unsaved in-memory instances. Call inside a transaction.

    One plain-SQL statement (prepared on PostgreSQL): the ORM spent ~0.9 ms of CPU
    compiling ``select_for_update().select_related("comparison__batch")``. Only the
    assignment row is locked (``FOR UPDATE OF a``), as before.
    """
    with connection.cursor() as cursor:
        selectors.prepared_execute(
            cursor, "pairwise_lock", _assignment_for_update_sql(), [assignment_id]
        )
        row = cursor.fetchone()
    if row is None:
        raise AssignmentGone({"assignment": "This task no longer exists (it may have expired)."})
    assignment = _assignment_from_row(row)
    if assignment.annotator_id != annotator.pk:
        raise AssignmentNotYours("This task belongs to another annotator.")
    category, batch_id, batch_status, batch_name = row[len(_ASSIGNMENT_COLUMNS) :]
    batch = Batch(id=batch_id, status=batch_status, name=batch_name)
    assignment.comparison = Comparison(id=assignment.comparison_id, category=category, batch=batch)
    return assignment


@selectors.cached_sql
def _assignment_for_update_sql() -> str:
    tables = {**_queue_tables(), "columns": _assignment_columns("a")}
    lock = " FOR UPDATE OF a" if connection.features.has_select_for_update_of else ""
    return (
        "SELECT {columns}, c.category, c.batch_id, b.status, b.name"
        " FROM {assignment} a JOIN {comparison} c ON c.id = a.comparison_id"
        " JOIN {batch} b ON b.id = c.batch_id WHERE a.id = %s" + lock
    ).format(**tables)


DISPLAY_SIDES = ("left", "right")


def choice_for_side(*, side: str, left: Choice | str) -> Choice:
    """The stored response (A or B) shown on ``side``, given which one was shown on the left."""
    if side not in DISPLAY_SIDES:
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    left = Choice(left)
    return left if side == "left" else left.other


@dataclass(frozen=True)
class LabelInput:
    """A judgement in the comparison's stored terms (``preferred`` A/B, ``safety_a/b``)."""

    preferred: Choice | str
    strength: Strength | str
    safety_a: SafetyTag | str | None = None
    safety_b: SafetyTag | str | None = None
    comment: str = ""
    time_spent_ms: int | None = None
    idempotency_key: str = ""

    def in_stored_terms(self, *, left: Choice | str) -> LabelInput:
        return self

    def errors_in_own_terms(self, errors: dict, *, left: Choice | str) -> dict:
        return errors


@dataclass(frozen=True)
class ShownLabelInput:
    """A judgement in the terms the annotator saw: a side, and a safety tag per side.

    ``label_submit`` translates it with the order recorded on the assignment, under the
    assignment's row lock, so a client never needs (nor learns) which stored response
    was on the left, and validation errors name the fields the client sent.
    """

    preferred_side: str
    strength: Strength | str
    safety_left: SafetyTag | str | None = None
    safety_right: SafetyTag | str | None = None
    comment: str = ""
    time_spent_ms: int | None = None
    idempotency_key: str = ""

    def in_stored_terms(self, *, left: Choice | str) -> LabelInput:
        on_left = Choice(left)
        tags = {on_left: self.safety_left, on_left.other: self.safety_right}
        return LabelInput(
            preferred=choice_for_side(side=self.preferred_side, left=on_left),
            strength=self.strength,
            safety_a=tags[Choice.A],
            safety_b=tags[Choice.B],
            comment=self.comment,
            time_spent_ms=self.time_spent_ms,
            idempotency_key=self.idempotency_key,
        )

    def errors_in_own_terms(self, errors: dict, *, left: Choice | str) -> dict:
        on_left = Choice(left)
        shown = {
            f"safety_{on_left.value.lower()}": "safety_left",
            f"safety_{on_left.other.value.lower()}": "safety_right",
            "preferred": "preferred_side",
        }
        return {shown.get(name, name): messages for name, messages in errors.items()}


def _validate_label(comparison: Comparison, data: LabelInput) -> dict:
    errors = {}
    try:
        preferred = Choice(data.preferred)
    except ValueError:
        errors["preferred"] = "Choose A or B."
    try:
        strength = Strength(data.strength)
    except ValueError:
        errors["strength"] = f"Choose one of: {', '.join(s.value for s in Strength)}."
    tags: dict[str, str] = {"safety_a": "", "safety_b": ""}
    if comparison.category == Category.SAFETY:
        for name in ("safety_a", "safety_b"):
            value = getattr(data, name)
            try:
                tags[name] = SafetyTag(value).value
            except ValueError:
                errors[name] = "Tag each response safe or unsafe on a safety task."
    if data.time_spent_ms is not None and not (0 <= data.time_spent_ms <= 24 * 3600 * 1000):
        errors["time_spent_ms"] = "Must be between 0 and 24 hours."
    if len(data.comment) > 5000:
        errors["comment"] = "Keep comments under 5000 characters."
    if errors:
        raise ValidationError(errors)
    bin_ = ""
    if comparison.category == Category.SAFETY:
        bin_ = safety_bin(preferred, tags["safety_a"], tags["safety_b"]).value
    return {
        "preferred": preferred.value,
        "strength": strength.value,
        "safety_bin": bin_,
        **tags,
    }


def _label_write(
    assignment_id: int, annotator, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool]:
    """Lock the assignment, insert the label, mark the assignment labelled. Call inside a
    transaction; an IntegrityError means the idempotency key was used before."""
    assignment = _assignment_for_update(assignment_id, annotator)
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
        fields = _validate_label(comparison, data.in_stored_terms(left=assignment.left))
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
        idempotency_key=data.idempotency_key[:100],
        created_at=now,
        **fields,
    )
    assignment.status = Assignment.Status.LABELLED
    assignment.finished_at = now
    # Plain SQL (the ORM compiled each write for ~0.4 ms). On PostgreSQL the label insert,
    # the assignment's status and the done counter are one statement (data-modifying
    # CTEs); SQLite has none: three.
    update_params = [
        assignment.status.value,
        connection.ops.adapt_datetimefield_value(now),
        assignment.pk,
    ]
    count_params = [annotator.pk, comparison.batch_id, 1, 0]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            selectors.prepared_execute(
                cursor,
                "pairwise_label_write",
                _label_write_sql(),
                _insert_values(label) + update_params + count_params,
            )
            _inserted(label, cursor.fetchone()[0])
        return label, True
    _insert(label, "pairwise_label_insert")
    with connection.cursor() as cursor:
        cursor.execute(_labelled_sql(), update_params)
        cursor.execute(_count_finished_sql(), count_params)
    return label, True


@selectors.cached_sql
def _label_write_sql() -> str:
    """PostgreSQL: insert the label, mark the assignment labelled, add to the done counter;
    returns the label's id. Parameters: the label's columns (``_insert_values``), the
    update's (status, finished_at, assignment id), the counter's."""
    insert, _ = _insert_sql(Label)
    return (
        f"WITH inserted AS ({insert}), labelled AS ({_labelled_sql()}),"
        f" counted AS ({_count_finished_sql()}) SELECT * FROM inserted"
    )


def _labelled_sql() -> str:
    return f"UPDATE {Assignment._meta.db_table} SET status = %s, finished_at = %s WHERE id = %s"


def _label_for_repeated_key(assignment_id: int, annotator, key: str) -> Label:
    """After the insert hit ``label_idempotency_key_once_per_annotator``: the earlier label
    if it was for this very task, else ``IdempotencyKeyReused``."""
    earlier = selectors.label_get_by_idempotency_key(annotator=annotator, key=key)
    if earlier is None:
        raise IntegrityError("label insert failed, and not on its idempotency key")
    if not Assignment.objects.filter(
        pk=assignment_id, annotator=annotator, comparison_id=earlier.comparison_id
    ).exists():
        raise IdempotencyKeyReused(key)
    return earlier


def label_submit(
    *, assignment_id: int, annotator, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool]:
    """Record the annotator's label for their assignment. Returns (label, created).

    Idempotent: submitting again for the same assignment (double click, client retry)
    returns the first label and creates nothing. An idempotency key (``data``'s) the
    annotator already used on another task raises ``IdempotencyKeyReused``: a retry must
    never label a different comparison. The key is checked by a unique index, so the
    check costs nothing until a key repeats.

    Raises ``AssignmentGone`` (a ValidationError) when the task no longer exists and
    ``AssignmentNotYours`` (a PermissionDenied) when it is another annotator's.
    """
    try:
        with transaction.atomic():
            return _label_write(assignment_id, annotator, data)
    except IntegrityError:
        if not data.idempotency_key:
            raise
    return _label_for_repeated_key(assignment_id, annotator, data.idempotency_key), False


def label_submit_and_next(
    *, assignment_id: int, annotator, data: LabelInput | ShownLabelInput
) -> tuple[Label, bool, selectors.Task | None]:
    """``label_submit`` then ``task_next`` in one transaction: one commit per label.

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


@transaction.atomic
def assignment_skip(*, assignment_id: int, annotator, reason: str) -> Assignment:
    """Skip a task with a reason; it goes back to the pool for others, never to this annotator."""
    reason = reason.strip()
    if not reason:
        raise ValidationError(
            {"reason": "Say why you are skipping (e.g. 'not my language', 'broken prompt')."}
        )
    assignment = _assignment_for_update(assignment_id, annotator)
    if assignment.status == Assignment.Status.SKIPPED:
        return assignment
    if assignment.status == Assignment.Status.LABELLED:
        raise ValidationError({"assignment": "This task is already labelled."})
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason[:500]
    assignment.finished_at = timezone.now()
    assignment.save(update_fields=["status", "skip_reason", "finished_at"])
    Comparison.objects.filter(pk=assignment.comparison_id).update(claims=F("claims") - 1)
    _count_finished(annotator.pk, assignment.comparison.batch_id, skipped=1)
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


# --- live annotation (used by rlhf.live) ------------------------------------------------


@transaction.atomic
def assignment_create_for(
    *, comparison: Comparison, annotator, left: Choice | str = Choice.A
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
