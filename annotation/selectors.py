"""Reads of preference data. Each returns querysets or plain values; no writes."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

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

# --- prepared statements for the hot path -------------------------------------------------------

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")
REPREPARE_FIRST = 16
REPREPARE_MAX = 4096


def cached_sql(build):
    """Cache what a statement builder returns, per database vendor and arguments.

    The hot-path statements are built from model metadata (table and column names,
    quoting, backend features): the same text every time, but ~0.1 ms of Python to build
    on every request. The vendor is part of the key because the text differs by backend.
    """
    built: dict = {}

    @functools.wraps(build)
    def get(*args):
        key = (connection.vendor, args)
        text = built.get(key)
        if text is None:
            text = built[key] = build(*args)
        return text

    return get


def prepared_execute(cursor, name: str, sql: str, params) -> None:
    """Run ``sql`` with ``params`` (a list for ``%s``, a dict for ``%(name)s``) on ``cursor``.

    On PostgreSQL the statement is a server-side prepared statement: ``PREPARE`` once per
    database connection (``CONN_MAX_AGE`` keeps connections), then ``EXECUTE name(...)``.
    psycopg2 has no prepared statements of its own, and PostgreSQL otherwise parses and
    plans every statement each time: ~1 ms of planning for the claim and for the task
    with counts, more than running them. After five executions PostgreSQL may switch to
    a generic plan, planned once per connection. Elsewhere (SQLite) ``sql`` runs as is.

    A cached plan reflects the table sizes of the moment it was made. A plan made while a
    table was nearly empty (a new database, a fresh batch) probes it by sequential scan,
    and keeps doing so as the table grows: measured, the task statement went from 0.6 ms
    to 20 ms within 4,000 labels. So each statement is prepared again after 16, 32, 64,
    … executions on a connection (doubling, then every ``REPREPARE_MAX`` executions):
    plans follow the data's growth, at the cost of a few extra plannings per thousand
    executions.

    The ``PREPARE`` goes through the driver's own cursor, so it does not show in Django's
    query log: the pinned query counts stay the same on both databases.
    """
    db = cursor.db  # the connection itself, not the thread-local proxy (cheaper to reach)
    if db.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    raw = db.connection
    prepared = getattr(db, "_pairwise_prepared", None)
    if prepared is None or prepared[0] is not raw:  # a new connection: nothing prepared yet
        prepared = (raw, {})
        db._pairwise_prepared = prepared
    text, order = _numbered(sql)
    state = prepared[1].get(name)  # [executions so far, executions at which to re-prepare]
    if state is None or state[0] >= state[1]:
        with raw.cursor() as setup:
            if state is not None:
                setup.execute(f"DEALLOCATE {name}")
            setup.execute(f"PREPARE {name} AS {text}")
        runs = 0 if state is None else state[0]
        state = prepared[1][name] = [
            runs,
            min(max(2 * runs, REPREPARE_FIRST), runs + REPREPARE_MAX),
        ]
    state[0] += 1
    values = [params[key] for key in order]
    cursor.execute(f"EXECUTE {name}({', '.join(['%s'] * len(values))})", values)


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> tuple[str, tuple]:
    """``sql`` with ``$1, $2, ...`` for its placeholders, and the parameter key of each
    (list indexes for ``%s``, names for ``%(name)s``; a repeated name is one parameter)."""
    order: list = []

    def number(match: re.Match) -> str:
        key = match.group(1)
        if key is None:
            key = len(order)
        elif key in order:
            return f"${order.index(key) + 1}"
        order.append(key)
        return f"${len(order)}"

    return _PLACEHOLDER.sub(number, sql), tuple(order)


def instance_from_row(model, attnames: tuple[str, ...], values) -> object:
    """A model instance from plain-SQL values (columns ``attnames``, in order), with the
    database's value converters applied as the ORM would (SQLite returns naive datetimes)."""
    values = list(values)
    for index, col, converters in _converters(model, attnames, connection.vendor):
        for converter in converters:
            values[index] = converter(values[index], col, connection)
    return model.from_db(connection.alias, attnames, values)


@functools.cache
def _converters(model, attnames: tuple[str, ...], vendor: str) -> list[tuple[int, object, list]]:
    """(index, column, converters) for each of ``attnames`` that the backend converts."""
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    found = []
    for index, attname in enumerate(attnames):
        col = by_attname[attname].get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if converters:
            found.append((index, col, converters))
    return found


def token_user(key: str):
    """(user, token) for an API token key, or None: one prepared statement instead of the
    ORM's ``select_related`` read (~0.5 ms of CPU to compile, on every API request), with
    the user's permissions (``user_permission_names``) in the same round trip."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    sql, token_cols, user_cols = _token_user_sql()
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_token", sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    token = instance_from_row(Token, token_cols, row[: len(token_cols)])
    user = instance_from_row(User, user_cols, row[len(token_cols) : -1])
    if not user.is_superuser:
        # ModelBackend's per-request permission cache (see api.PreloadedPermissionsMixin):
        # read in the same statement, so a token request costs one query, not two.
        user._perm_cache = set(row[-1].split(",")) if row[-1] else set()
    token.user = user
    return user, token


@cached_sql
def _token_user_sql() -> tuple[str, tuple, tuple]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    token_cols = tuple(f.attname for f in Token._meta.concrete_fields)
    user_cols = tuple(f.attname for f in User._meta.concrete_fields)
    q = connection.ops.quote_name
    aggregate = "string_agg" if connection.vendor == "postgresql" else "group_concat"
    perms = _permissions_sql(f"u.{q(User._meta.pk.column)}")
    perms_sql = f"(SELECT {aggregate}(x.app_label || '.' || x.codename, ',') FROM ({perms}) x)"
    sql = "SELECT {}, {}, {} FROM {} t JOIN {} u ON u.{} = t.{} WHERE t.{} = %s".format(
        ", ".join(
            f"t.{q(Token._meta.get_field(c.removesuffix('_id') if c.endswith('_id') else c).column)}"
            for c in token_cols
        ),
        ", ".join(f"u.{q(User._meta.get_field(c).column)}" for c in user_cols),
        perms_sql,
        q(Token._meta.db_table),
        q(User._meta.db_table),
        q(User._meta.pk.column),
        q(Token._meta.get_field("user").column),
        q(Token._meta.pk.column),
    )
    return sql, token_cols, user_cols


def batch_list() -> QuerySet[Batch]:
    return Batch.objects.annotate(
        n_comparisons=Count("comparisons", distinct=True),
    ).order_by("-created_at")


@dataclass(frozen=True)
class BatchProgress:
    comparisons: int
    labels_wanted: int
    labels: int
    in_progress: int
    skipped: int
    helpfulness: int
    safety: int
    annotators: int

    @property
    def percent(self) -> int:
        return int(100 * self.labels / self.labels_wanted) if self.labels_wanted else 0

    @property
    def remaining(self) -> int:
        return max(self.labels_wanted - self.labels, 0)


def batch_progress(batch: Batch) -> BatchProgress:
    counts = Comparison.objects.filter(batch=batch).aggregate(
        total=Count("id"),
        helpfulness=Count("id", filter=Q(category="helpfulness")),
        safety=Count("id", filter=Q(category="safety")),
    )
    labels = Label.objects.filter(comparison__batch=batch)
    assignments = Assignment.objects.filter(comparison__batch=batch)
    return BatchProgress(
        comparisons=counts["total"],
        labels_wanted=counts["total"] * batch.labels_per_comparison,
        labels=labels.count(),
        in_progress=assignments.filter(status=Assignment.Status.ASSIGNED).count(),
        skipped=assignments.filter(status=Assignment.Status.SKIPPED).count(),
        helpfulness=counts["helpfulness"],
        safety=counts["safety"],
        annotators=labels.exclude(annotator=None).values("annotator").distinct().count(),
    )


GUIDELINE_CACHE_SECONDS = 60


def _guideline_cache_key(category: str) -> str:
    return f"pairwise:guideline-active:{category}"


def guideline_active(category: str) -> Guideline | None:
    """The category's newest active guideline, cached: every task screen shows it.

    ``services.guideline_publish`` clears the entry. With a cache shared by all processes
    (Redis) a new version shows at once; with the default per-process cache other
    processes show it within ``GUIDELINE_CACHE_SECONDS`` (as do edits made in the admin).
    """
    key = _guideline_cache_key(category)
    cached = cache.get(key)
    if cached is not None:
        return cached[0]
    guideline = (
        Guideline.objects.filter(category=category, is_active=True).order_by("-version").first()
    )
    cache.set(key, (guideline,), GUIDELINE_CACHE_SECONDS)  # a tuple, so "none yet" is cached too
    return guideline


def guideline_cache_clear(category: str) -> None:
    cache.delete(_guideline_cache_key(category))


def assignment_get(*, assignment_id: int, annotator) -> Assignment | None:
    """An annotator's own assignment; other annotators' assignments do not exist for them."""
    return (
        Assignment.objects.select_related(
            "comparison__prompt",
            "comparison__response_a",
            "comparison__response_b",
            "comparison__batch",
        )
        .filter(pk=assignment_id, annotator=annotator)
        .first()
    )


def label_list_for(annotator) -> QuerySet[Label]:
    """An annotator's own labels, newest first. Never other annotators' labels."""
    return (
        Label.objects.filter(annotator=annotator)
        .select_related("comparison__batch", "comparison__prompt")
        .order_by("-created_at")
    )


def assignment_exists(assignment_id: int) -> bool:
    """Whether a task with this id exists at all (for anyone): tells "not yours" from "gone"."""
    return Assignment.objects.filter(pk=assignment_id).exists()


def comparison_list_for_batch(batch: Batch) -> QuerySet[Comparison]:
    """A batch's comparisons for the admin page, with their prompt, responses and label count."""
    return (
        Comparison.objects.filter(batch=batch)
        .select_related("prompt", "response_a", "response_b")
        .annotate(n_labels=Count("labels"))
        .order_by("id")
    )


# --- the REST API's reads ------------------------------------------------------------------


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
    assigned_at: object
    guideline: Guideline | None
    counts: AnnotatorCounts


def task_get(*, assignment_id: int, annotator) -> Task | None:
    """The annotator's own assignment as a task (None if it is not theirs or is gone).

    One statement: the assignment with its dialogue and both responses, and the
    annotator's counts (see ``annotator_counts``); the guideline comes from its cache.
    Plain SQL because every label renders a task: the ORM spent ~1.2 ms of CPU compiling
    the five joins, ten times what PostgreSQL spends running them.
    """
    params = counts_params(annotator)
    params["assignment"] = assignment_id
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_task", _task_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return task_from_row(row)


@cached_sql
def _task_sql() -> str:
    return task_select_sql(
        source=Assignment._meta.db_table,
        where=" WHERE a.id = %(assignment)s AND a.annotator_id = %(me)s",
    )


def task_select_sql(*, source: str, where: str) -> str:
    """The task with counts, read from the assignment relation ``source`` (a table or a
    CTE with columns id, comparison_id, left, assigned_at; alias ``a``) filtered by
    ``where``; columns as ``task_from_row`` reads them, parameters ``counts_params``."""
    tables = {
        "assignment": source,
        "comparison": Comparison._meta.db_table,
        "batch": Batch._meta.db_table,
        "prompt": Prompt._meta.db_table,
        "response": Response._meta.db_table,
        "left": connection.ops.quote_name("left"),  # a keyword in SQL
    }
    task_sql = (
        "SELECT a.id, a.{left} AS shown_left, a.assigned_at, a.comparison_id, c.batch_id,"
        " b.name AS batch_name, c.category, p.turns, ra.text AS text_a, rb.text AS text_b"
        " FROM {assignment} a JOIN {comparison} c ON c.id = a.comparison_id"
        " JOIN {batch} b ON b.id = c.batch_id JOIN {prompt} p ON p.id = c.prompt_id"
        " JOIN {response} ra ON ra.id = c.response_a_id JOIN {response} rb ON rb.id = c.response_b_id"
    ).format(**tables) + where
    return f"SELECT t.*, k.* FROM ({task_sql}) t CROSS JOIN ({_counts_sql(REMAINING_COUNT_CAP)}) k"


def task_from_row(row) -> Task:
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


def label_get_by_idempotency_key(*, annotator, key: str) -> Label | None:
    """The annotator's label submitted under ``key`` (a client's Idempotency-Key), if any."""
    if not key:
        return None
    return Label.objects.filter(annotator=annotator, idempotency_key=key[:100]).first()


def comparison_list(*, batch_id: int | None = None) -> QuerySet[Comparison]:
    """Comparisons with their dialogue, responses and batch, for listing (no N+1)."""
    qs = Comparison.objects.select_related("batch", "prompt", "response_a", "response_b").annotate(
        n_labels=Count("labels")
    )
    if batch_id is not None:
        qs = qs.filter(batch_id=batch_id)
    return qs.order_by("id")


def batch_list_with_progress() -> QuerySet[Batch]:
    """Batches with their progress counts in one query (subqueries, not joins that multiply).

    Annotates ``n_comparisons``, ``n_labels``, ``n_in_progress``, ``n_skipped``.
    """

    def count_of(qs: QuerySet) -> Subquery:
        return Subquery(
            qs.filter(comparison__batch=OuterRef("pk"))
            .order_by()
            .values("comparison__batch")
            .annotate(n=Count("pk"))
            .values("n")[:1]
        )

    n_comparisons = Subquery(
        Comparison.objects.filter(batch=OuterRef("pk"))
        .order_by()
        .values("batch")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return Batch.objects.annotate(
        n_comparisons=Coalesce(n_comparisons, 0),
        n_labels=Coalesce(count_of(Label.objects.all()), 0),
        n_in_progress=Coalesce(
            count_of(Assignment.objects.filter(status=Assignment.Status.ASSIGNED)), 0
        ),
        n_skipped=Coalesce(
            count_of(Assignment.objects.filter(status=Assignment.Status.SKIPPED)), 0
        ),
    ).order_by("-created_at")


@dataclass(frozen=True)
class AnnotatorCounts:
    """Done and skipped (in open batches), and remaining: open tasks this annotator may
    still take, counted up to a cap (``remaining_capped`` says the cap was reached)."""

    done: int
    remaining: int
    remaining_capped: bool
    skipped: int


REMAINING_COUNT_CAP = 100


def annotator_counts(annotator, *, cap: int = REMAINING_COUNT_CAP) -> AnnotatorCounts:
    """Done, skipped and remaining for the task screen: one query, O(cap) rather than O(batch).

    An exact count of remaining tasks reads every open comparison (~100 ms at 20k rows on
    PostgreSQL, on every task fetch); nobody needs "12,345 left" exactly, so counting stops
    at ``cap`` and the screen shows "100+". Below the cap it is exact.

    "Done" and "skipped" come from the annotator's ``AnnotatorBatchCount`` rows of open
    batches (O(open batches), not O(history)): ``services`` adds to them in the
    transaction that labels or skips an assignment, the only writes of those statuses
    (imported labels have no user).

    Plain SQL because this runs on every task fetch: the ORM spends ~4 ms of CPU compiling
    the subqueries, and it cannot express COUNT over a LIMITed subquery without a join
    back to the whole table. One pass over the annotator's assignments gives done,
    skipped and in hand (PostgreSQL spent more time planning four subqueries than
    running them).
    """
    with connection.cursor() as cursor:
        prepared_execute(
            cursor, f"pairwise_counts_{cap:d}", _counts_sql(cap), counts_params(annotator)
        )
        return _counts_from_row(*cursor.fetchone(), cap=cap)


def free_slots_sql(*, annotator_param: str, limit: int, lock: str = "") -> str:
    """``SELECT id`` of the first ``limit`` comparisons an annotator may claim, in queue
    order: open batch, a slot left, never assigned to this annotator (``annotator_param``
    is the placeholder of their id). ``lock`` (``FOR UPDATE … SKIP LOCKED``) locks what it
    returns. Shared by the claim (``services``) and the remaining count.

    The statement must walk ``comparison_open_slots`` (batch, claims, id) in order and stop
    at the limit, whatever the table sizes, or the claim costs O(batch). On PostgreSQL:

    - one index range per open batch (``LATERAL``, batches in id order): a join with the
      batch table let the planner scan all of an open batch's rows and sort them (its
      rows are ordered by claims and id only within one batch, which a join cannot
      tell), and closed batches' leftover rows are never walked;
    - "never assigned" is a scalar subquery with ``LIMIT 1``, not ``NOT EXISTS``: the
      latter becomes an anti-join that first reads the annotator's whole history
      (O(history) per claim), the former stays a per-row probe of
      ``assignment_once_per_annotator`` (comparison_id, annotator_id). It is written
      ``NOT COALESCE(…, FALSE)`` rather than ``(…) IS NULL``, which the planner rates at
      0.5 % selectivity, expecting few rows and choosing to read them all and sort.

    ``tests/annotation/test_queue_plans.py`` checks the plans. SQLite has no ``LATERAL``;
    it runs the same conditions as one ordered join (its transactions are serialised).
    """
    tables = {
        "comparison": Comparison._meta.db_table,
        "batch": Batch._meta.db_table,
        "assignment": Assignment._meta.db_table,
        "open": Batch.Status.OPEN.value,
        "me": annotator_param,
        "limit": int(limit),
        "lock": lock,
    }
    never_had = (
        "NOT COALESCE((SELECT TRUE FROM {assignment} a WHERE a.comparison_id = c.id"
        " AND a.annotator_id = {me} LIMIT 1), FALSE)"
    ).format(**tables)
    if connection.vendor == "postgresql":
        return (
            "SELECT x.id FROM {batch} b CROSS JOIN LATERAL ("
            "SELECT c.id FROM {comparison} c WHERE c.batch_id = b.id"
            " AND c.claims < b.labels_per_comparison AND {never_had}"
            " ORDER BY c.claims, c.id LIMIT {limit}{lock}) x"
            " WHERE b.status = '{open}' ORDER BY b.id LIMIT {limit}"
        ).format(**tables, never_had=never_had)
    return (
        "SELECT c.id FROM {comparison} c JOIN {batch} b ON b.id = c.batch_id"
        " WHERE b.status = '{open}' AND c.claims < b.labels_per_comparison AND {never_had}"
        " ORDER BY c.batch_id, c.claims, c.id LIMIT {limit}{lock}"
    ).format(**tables, never_had=never_had)


def counts_params(annotator) -> dict:
    """Parameters of ``_counts_sql`` (and of ``task_select_sql``) for ``annotator``."""
    return {
        "me": annotator.pk,
        "open": Batch.Status.OPEN.value,
        "assigned": Assignment.Status.ASSIGNED.value,
    }


@cached_sql
def _counts_sql(cap: int) -> str:
    """``annotator_counts``' statement (columns done, skipped, in_hand, free); its
    parameters are ``counts_params``."""
    tables = {
        "comparison": Comparison._meta.db_table,
        "batch": Batch._meta.db_table,
        "assignment": Assignment._meta.db_table,
    }
    tables["count"] = AnnotatorBatchCount._meta.db_table
    sql = (
        "SELECT COALESCE((SELECT SUM(n.done) FROM {count} n JOIN {batch} b ON b.id = n.batch_id"
        "   WHERE n.annotator_id = %(me)s AND b.status = %(open)s), 0) AS done,"
        " COALESCE((SELECT SUM(n.skipped) FROM {count} n JOIN {batch} b ON b.id = n.batch_id"
        "   WHERE n.annotator_id = %(me)s AND b.status = %(open)s), 0) AS skipped,"
        " (SELECT COUNT(*) FROM {assignment} x JOIN {comparison} c ON c.id = x.comparison_id"
        "   JOIN {batch} b ON b.id = c.batch_id WHERE x.annotator_id = %(me)s"
        "   AND x.status = %(assigned)s AND b.status = %(open)s) AS in_hand,"
        " (SELECT COUNT(*) FROM ({free}) free) AS free"
    ).format(**tables, free=free_slots_sql(annotator_param="%(me)s", limit=cap))
    # The cap is part of the statement's text, not a parameter: with ``LIMIT $n`` the
    # generic plan guesses 10 % of the table and PostgreSQL re-plans on every execution.
    return sql


def _counts_from_row(
    done: int, skipped: int, in_hand: int, free: int, *, cap: int
) -> AnnotatorCounts:
    remaining = free + in_hand
    return AnnotatorCounts(
        done=done, remaining=min(remaining, cap), remaining_capped=remaining >= cap, skipped=skipped
    )


@cached_sql
def _permissions_sql(user_ref: str) -> str:
    """``app_label, codename`` of the permissions of the user whose id is ``user_ref`` (a
    placeholder, or a column of an outer query), directly or by group."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    User = get_user_model()
    tables = {
        "permission": Permission._meta.db_table,
        "content_type": ContentType._meta.db_table,
        "user_permissions": User.user_permissions.through._meta.db_table,
        "group_permissions": Group.permissions.through._meta.db_table,
        "user_groups": User.groups.through._meta.db_table,
        "me": user_ref,
    }
    return (
        "SELECT ct.app_label, p.codename FROM {permission} p"
        " JOIN {content_type} ct ON ct.id = p.content_type_id"
        " WHERE p.id IN (SELECT permission_id FROM {user_permissions} WHERE user_id = {me}"
        " UNION SELECT gp.permission_id FROM {group_permissions} gp"
        " JOIN {user_groups} ug ON ug.group_id = gp.group_id WHERE ug.user_id = {me})"
    ).format(**tables)


def user_permission_names(user) -> set[str]:
    """``"app_label.codename"`` of every permission the user has, directly or by group.

    One query, in plain SQL because every API request runs it: the ORM spends more CPU
    compiling this query than PostgreSQL spends answering it (ModelBackend makes two).
    """
    sql = _permissions_sql("%s")
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_permissions", sql, [user.pk, user.pk])
        return {f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()}


def preference_pairs_frozen(*, batch_ids: list[int]):
    """Every label of the given FROZEN batches as a ``domain.PreferencePair`` (chosen =
    the preferred response), in label order; raises ``ValueError`` naming any batch that is
    not frozen. Strength stays blank ("") for unrated imported labels."""
    from annotation.domain import Category, PreferencePair, SafetyBin, Turn

    batches = list(Batch.objects.filter(pk__in=batch_ids).values_list("id", "name", "status"))
    missing = set(batch_ids) - {b[0] for b in batches}
    if missing:
        raise ValueError(f"no batch with id(s) {sorted(missing)}")
    not_frozen = [name for _, name, status in batches if status != Batch.Status.FROZEN]
    if not_frozen:
        raise ValueError(f"only frozen batches train models; not frozen: {', '.join(not_frozen)}")
    rows = (
        Label.objects.filter(comparison__batch_id__in=batch_ids)
        .order_by("id")
        .values_list(
            "preferred",
            "strength",
            "safety_bin",
            "comparison__category",
            "comparison__source",
            "comparison__prompt__turns",
            "comparison__response_a__text",
            "comparison__response_b__text",
        )
    )
    pairs = []
    for preferred, strength, bin_, category, source, turns, text_a, text_b in rows.iterator(
        chunk_size=2000
    ):
        chosen, rejected = (text_a, text_b) if preferred == "A" else (text_b, text_a)
        pairs.append(
            PreferencePair(
                context=tuple(Turn(t["role"], t["content"]) for t in turns),
                chosen=chosen,
                rejected=rejected,
                strength=strength,  # type: ignore[arg-type]  # "" = unrated
                category=Category(category),
                safety_bin=SafetyBin(bin_) if bin_ else None,
                source=source,
            )
        )
    return pairs
