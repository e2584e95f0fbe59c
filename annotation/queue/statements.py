"""Every SQL statement of the annotator queue, built from model metadata, in one place.

Plain SQL because each runs on every label: the ORM spent more CPU compiling them than
the database spends running them (measured in bench/README.md). Each builder returns the
statement's text for the current database vendor, cached (``prepared.cached_sql``);
``reads``, ``assignments`` and ``labels`` run them as prepared statements
(``prepared.prepared_execute``) under the names in ``finished()``.

To read a finished statement, open docs/queue-statements.md (PostgreSQL and SQLite text,
written by tests/annotation/test_queue_statements.py, which fails when it is out of date).
``tests/annotation/test_queue_plans.py`` checks their PostgreSQL plans.
"""

from __future__ import annotations

import hashlib
import re

from django.db import connection

from annotation.domain import Category, Choice, Strength
from annotation.models import (
    AnnotatorBatchCount,
    Assignment,
    Batch,
    Comparison,
    GoldComparison,
    Label,
    Prompt,
)
from annotation.models import Response as ResponseModel
from annotation.prepared import PLACEHOLDER, cached_sql, insert_sql

REMAINING_COUNT_CAP = 100

ASSIGNMENT_COLUMNS = (
    "id",
    "comparison_id",
    "annotator_id",
    "status",
    "left",
    "assigned_at",
    "finished_at",
    "skip_reason",
)


def queue_tables() -> dict[str, str]:
    """Table names of the queue's statements."""
    return {
        "assignment": Assignment._meta.db_table,
        "comparison": Comparison._meta.db_table,
        "batch": Batch._meta.db_table,
    }


def assignment_columns(alias: str) -> str:
    """``ASSIGNMENT_COLUMNS`` of the assignment table aliased ``alias``, quoted."""
    return ", ".join(f"{alias}.{connection.ops.quote_name(c)}" for c in ASSIGNMENT_COLUMNS)


# --- finding free work -------------------------------------------------------------------


def free_slots_sql(
    *, annotator_param: str, limit: int, lock: str = "", draw_param: str | None = None
) -> str:
    """``SELECT id`` of the first ``limit`` comparisons an annotator may claim, in queue
    order: open batch the annotator is not paused on, a slot left, never assigned to this
    annotator (``annotator_param`` is the placeholder of their id). ``lock`` (``FOR
    UPDATE … SKIP LOCKED``) locks what it returns. Shared by the claim and the remaining
    count.

    Queue order inside a batch: fewest claims, then highest ``priority`` (0 unless the
    batch is ordered by reward-model uncertainty), then id. With ``draw_param`` (the
    placeholder of a uniform draw in [0, 1)), a batch whose ``gold_rate`` exceeds the draw
    hands out one of its gold checks instead, if the annotator has one left and the batch
    still has work of its own for them (gold alone is no work); the remaining count has no
    draw and counts the batch's own work only. Gold checks have no overlap limit: every
    annotator may get each once.

    Adaptive overlap needs no condition here: a comparison that earns one more label has
    its ``claims`` lowered by one (``comparison_extend_sql``), so ``claims <
    labels_per_comparison`` stays an index bound.

    The statement must walk ``comparison_open_slots`` (batch, is_gold, claims, priority
    DESC, id) in order and stop at the limit, whatever the table sizes, or the claim costs
    O(batch). On PostgreSQL:

    - one index range per open batch (``LATERAL``, batches in id order): a join with the
      batch table let the planner scan all of an open batch's rows and sort them (its
      rows are ordered by claims and id only within one batch, which a join cannot
      tell), and closed batches' leftover rows are never walked;
    - "never assigned" is a scalar subquery with ``LIMIT 1``, not ``NOT EXISTS``: the
      latter becomes an anti-join that first reads the annotator's whole history
      (O(history) per claim), the former stays a per-row probe of
      ``assignment_once_per_annotator`` (comparison_id, annotator_id). It is written
      ``NOT COALESCE(…, FALSE)`` rather than ``(…) IS NULL``, which the planner rates at
      0.5 % selectivity, expecting few rows and choosing to read them all and sort;
    - "not paused" is the same kind of probe, once per open batch, of
      ``annotator_batch_count_once`` (annotator_id, batch_id);
    - the gold branch's ``draw < gold_rate`` is a one-time filter: at a 5 % rate, 95 % of
      claims never walk the gold rows. ``UNION ALL … LIMIT`` stops at the first branch
      that yields.

    ``tests/annotation/test_queue_plans.py`` checks the plans. SQLite has no ``LATERAL``;
    it runs the same conditions as one ordered join (its transactions are serialised).
    """
    tables = {
        **queue_tables(),
        "count": AnnotatorBatchCount._meta.db_table,
        "open": Batch.Status.OPEN.value,
        "me": annotator_param,
        "draw": draw_param,
        "limit": int(limit),
        "lock": lock,
    }

    def never_had(alias: str) -> str:
        return (
            "NOT COALESCE((SELECT TRUE FROM {assignment} a WHERE a.comparison_id = {c}.id"
            " AND a.annotator_id = {me} LIMIT 1), FALSE)"
        ).format(**tables, c=alias)

    not_paused = (
        "NOT COALESCE((SELECT n.paused FROM {count} n WHERE n.annotator_id = {me}"
        " AND n.batch_id = b.id), FALSE)"
    ).format(**tables)

    def own_work(c: str) -> str:
        return f"{c}.is_gold = FALSE AND {c}.claims < b.labels_per_comparison AND " + never_had(c)

    def gold_wanted(g: str) -> str:
        return (
            "{draw} < b.gold_rate AND {g}.is_gold = TRUE AND {never_had} AND EXISTS ("
            "SELECT 1 FROM {comparison} w WHERE w.batch_id = b.id AND {own_work})"
        ).format(**tables, g=g, never_had=never_had(g), own_work=own_work("w"))

    def order(c: str) -> str:
        return f"{c}.claims, {c}.priority DESC, {c}.id"

    if connection.vendor == "postgresql":
        own = (
            "SELECT c.id FROM {comparison} c WHERE c.batch_id = b.id AND {own_work}"
            " ORDER BY {order} LIMIT {limit}{lock}"
        ).format(**tables, own_work=own_work("c"), order=order("c"))
        if draw_param is not None:
            gold = (
                "SELECT c.id FROM {comparison} c WHERE c.batch_id = b.id AND {gold_wanted}"
                " ORDER BY {order} LIMIT 1{lock}"
            ).format(**tables, gold_wanted=gold_wanted("c"), order=order("c"))
            # Each branch's lock sits in a subquery of its own: PostgreSQL refuses FOR
            # UPDATE on a member of a UNION.
            own = (
                f"SELECT gx.id FROM ({gold}) gx UNION ALL SELECT ox.id FROM ({own}) ox"
                f" LIMIT {int(limit)}"
            )
        return (
            "SELECT x.id FROM {batch} b CROSS JOIN LATERAL ({own}) x"
            " WHERE b.status = '{open}' AND {not_paused} ORDER BY b.id LIMIT {limit}"
        ).format(**tables, own=own, not_paused=not_paused)
    free, order_in_batch = own_work("c"), order("c")
    if draw_param is not None:
        free = f"({free}) OR ({gold_wanted('c')})"
        order_in_batch = "c.is_gold DESC, " + order_in_batch
    return (
        "SELECT c.id FROM {comparison} c JOIN {batch} b ON b.id = c.batch_id"
        " WHERE b.status = '{open}' AND {not_paused} AND ({free})"
        " ORDER BY c.batch_id, {order_in_batch} LIMIT {limit}{lock}"
    ).format(**tables, not_paused=not_paused, free=free, order_in_batch=order_in_batch)


@cached_sql
def comparison_claim_sql(guard: str = "") -> str:
    """One statement that claims a free slot: ``claims + 1`` on the first comparison of an
    open batch with a slot left that this annotator never had (or one of its gold
    checks, see ``free_slots_sql``); returns its id. Parameters ``me`` (the annotator's
    id) and ``draw`` (uniform in [0, 1), drawn per claim); ``guard`` (a condition ending
    in ``AND``) can stop the claim, as ``task_next_sql`` does.

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
        f"{free_slots_sql(annotator_param='%(me)s', limit=1, lock=lock, draw_param='%(draw)s')}"
        ") RETURNING id"
    )


# --- counts and the task ------------------------------------------------------------------


@cached_sql
def counts_sql(cap: int) -> str:
    """The annotator's counts (columns done, skipped, in_hand, free); parameters
    ``reads.counts_params``.

    One pass over the annotator's assignments gives done, skipped and in hand
    (PostgreSQL spent more time planning four subqueries than running them); "free"
    counts up to ``cap`` rows of ``free_slots_sql``, O(cap) rather than O(batch).
    """
    tables = {**queue_tables(), "count": AnnotatorBatchCount._meta.db_table}
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


def task_select_sql(*, source: str, where: str) -> str:
    """The task with counts, read from the assignment relation ``source`` (a table or a
    CTE with columns id, comparison_id, left, assigned_at; alias ``a``) filtered by
    ``where``; columns as ``reads.task_from_row`` reads them, parameters
    ``reads.counts_params``."""
    tables = {
        "assignment": source,
        "comparison": Comparison._meta.db_table,
        "batch": Batch._meta.db_table,
        "prompt": Prompt._meta.db_table,
        "response": ResponseModel._meta.db_table,
        "left": connection.ops.quote_name("left"),  # a keyword in SQL
    }
    task_sql = (
        "SELECT a.id, a.{left} AS shown_left, a.assigned_at, a.comparison_id, c.batch_id,"
        " b.name AS batch_name, c.category, p.turns, ra.text AS text_a, rb.text AS text_b"
        " FROM {assignment} a JOIN {comparison} c ON c.id = a.comparison_id"
        " JOIN {batch} b ON b.id = c.batch_id JOIN {prompt} p ON p.id = c.prompt_id"
        " JOIN {response} ra ON ra.id = c.response_a_id JOIN {response} rb ON rb.id = c.response_b_id"
    ).format(**tables) + where
    return f"SELECT t.*, k.* FROM ({task_sql}) t CROSS JOIN ({counts_sql(REMAINING_COUNT_CAP)}) k"


@cached_sql
def task_sql() -> str:
    """One of the annotator's own assignments as a task with counts (``reads.task_get``)."""
    return task_select_sql(
        source=Assignment._meta.db_table,
        where=" WHERE a.id = %(assignment)s AND a.annotator_id = %(me)s",
    )


# --- assignments -----------------------------------------------------------------------


@cached_sql
def assignment_current_sql() -> str:
    """The annotator's oldest unanswered task in an open batch (``ASSIGNMENT_COLUMNS``);
    parameters ``reads.counts_params``."""
    tables = {**queue_tables(), "columns": assignment_columns("a")}
    return (
        "SELECT {columns} FROM {assignment} a JOIN {comparison} c ON c.id = a.comparison_id"
        " JOIN {batch} b ON b.id = c.batch_id"
        " WHERE a.annotator_id = %(me)s AND a.status = %(assigned)s AND b.status = %(open)s"
        " ORDER BY a.assigned_at LIMIT 1"
    ).format(**tables)


# Columns ``assignment_for_update_sql`` returns after ``ASSIGNMENT_COLUMNS``: what labelling
# needs to know of the comparison, its gold answer (NULL unless a gold check) and its batch.
LOCKED_TASK_COLUMNS = (
    "c.category",
    "c.batch_id",
    "b.status AS batch_status",
    "b.name AS batch_name",
    "c.is_gold",
    "g.preferred AS gold_preferred",
    "g.min_strength AS gold_min_strength",
    "b.labels_per_comparison",
    "b.labels_per_comparison_max",
    "b.gold_min_accuracy",
    "b.gold_min_items",
)


@cached_sql
def assignment_for_update_sql() -> str:
    """An assignment by id (``ASSIGNMENT_COLUMNS``, then ``LOCKED_TASK_COLUMNS``), with
    the assignment's row locked. The comparison's row is not: only adaptive overlap needs
    it (``comparison_lock_sql``, taken after this in batches that use it), and locking it
    on every label cost a row write per label."""
    tables = {
        **queue_tables(),
        "gold": GoldComparison._meta.db_table,
        "columns": assignment_columns("a"),
        "task": ", ".join(LOCKED_TASK_COLUMNS),
    }
    lock = " FOR UPDATE OF a" if connection.vendor == "postgresql" else ""
    return (
        "SELECT {columns}, {task} FROM {assignment} a JOIN {comparison} c ON c.id = a.comparison_id"
        " JOIN {batch} b ON b.id = c.batch_id LEFT JOIN {gold} g ON g.id = c.gold_id"
        " WHERE a.id = %s" + lock
    ).format(**tables)


@cached_sql
def comparison_lock_sql() -> str:
    """PostgreSQL, adaptive overlap only: lock the comparison's row (``NO KEY UPDATE``:
    other annotators' claims skip it, inserts that reference it do not wait) before the
    label's write, so the labels of one comparison are written one at a time and
    ``comparison_extend_sql`` counts every label committed before it. Parameter: the
    comparison's id."""
    return f"SELECT 1 FROM {Comparison._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"


@cached_sql
def task_next_sql() -> str:
    """PostgreSQL: ``assignment_current_sql``, else ``comparison_claim_sql`` and the
    assignment's insert, then ``task_select_sql``'s read of whichever it is, in one
    statement (data-modifying CTEs). The claim's ``WHERE NOT EXISTS (current task)`` is a
    one-time filter: when the annotator holds a task, the free-slot walk never runs
    (nothing is locked). Parameters: ``reads.counts_params`` plus ``left``, ``now`` and
    ``draw``."""
    tables = {
        **queue_tables(),
        "left": connection.ops.quote_name("left"),
        "current": assignment_current_sql(),
        "claim": comparison_claim_sql("NOT EXISTS (SELECT 1 FROM current_task) AND "),
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
    return ctes + task_select_sql(source="next_task", where="")


# --- finishing an assignment -------------------------------------------------------------


@cached_sql
def count_finished_sql() -> str:
    """Add to the annotator's counters of a batch (``AnnotatorBatchCount``): done,
    skipped, and gold checks labelled and right (in all, and since last resumed): one
    upsert, in the transaction that labels or skips the assignment. Parameters:
    ``count_finished_params``."""
    table = AnnotatorBatchCount._meta.db_table
    return (
        f"INSERT INTO {table} (annotator_id, batch_id, done, skipped, gold_labels, gold_correct,"
        " gold_labels_since_resume, gold_correct_since_resume, paused)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, FALSE)"
        " ON CONFLICT (annotator_id, batch_id) DO UPDATE"
        f" SET done = {table}.done + excluded.done, skipped = {table}.skipped + excluded.skipped,"
        f" gold_labels = {table}.gold_labels + excluded.gold_labels,"
        f" gold_correct = {table}.gold_correct + excluded.gold_correct,"
        f" gold_labels_since_resume = {table}.gold_labels_since_resume + excluded.gold_labels,"
        f" gold_correct_since_resume = {table}.gold_correct_since_resume + excluded.gold_correct"
    )


def count_finished_params(
    annotator_id: int,
    batch_id: int,
    *,
    done: int = 0,
    skipped: int = 0,
    gold: int = 0,
    correct: int = 0,
) -> list[int]:
    """``count_finished_sql``'s parameters: what to add to each counter."""
    return [annotator_id, batch_id, done, skipped, gold, correct, gold, correct]


def labelled_sql() -> str:
    """Mark an assignment labelled. Parameters: status, finished_at, assignment id."""
    return f"UPDATE {Assignment._meta.db_table} SET status = %s, finished_at = %s WHERE id = %s"


def comparison_extend_sql() -> str:
    """Adaptive overlap: ask for one more label of a comparison (``extra_labels + 1``)
    when the label being written is the last one it wanted and the labels disagree
    (different sides, or any says Negligibly better / Unsure), up to the batch's maximum.
    ``claims`` drops by one with it, so the slot is free again and the claim's
    ``claims < labels_per_comparison`` stays an index bound.

    The label being written is not among the rows it reads (PostgreSQL: a data-modifying
    CTE's insert is invisible to its siblings; SQLite runs this before the insert): its
    side and strength are parameters. Call holding the comparison's row lock
    (``comparison_lock_sql``). Parameters: comparison id, base overlap, maximum,
    base overlap, the new label's strength, its preferred side.
    """
    tables = {
        "comparison": Comparison._meta.db_table,
        "label": Label._meta.db_table,
        "unsure": Strength.NEGLIGIBLY_BETTER_OR_UNSURE.value,
    }
    return (
        "UPDATE {comparison} SET claims = claims - 1, extra_labels = extra_labels + 1"
        " WHERE id = %s AND is_gold = FALSE AND %s + extra_labels < %s"
        " AND (SELECT COUNT(*) FROM {label} l WHERE l.comparison_id = {comparison}.id) + 1"
        " >= %s + extra_labels"
        " AND (%s = '{unsure}' OR EXISTS (SELECT 1 FROM {label} l"
        " WHERE l.comparison_id = {comparison}.id AND (l.preferred <> %s OR l.strength = '{unsure}')))"
    ).format(**tables)


@cached_sql
def label_write_sql(adaptive: bool = False) -> str:
    """PostgreSQL: insert the label, mark the assignment labelled, (``adaptive``: ask for
    one more label if they disagree), add to the counters; returns the label's id.
    Parameters: the label's columns (``prepared.insert_values``), ``labelled_sql``'s,
    (``comparison_extend_sql``'s), ``count_finished_sql``'s."""
    insert, _ = insert_sql(Label)
    extended = f" extended AS ({comparison_extend_sql()})," if adaptive else ""
    return (
        f"WITH inserted AS ({insert}), labelled AS ({labelled_sql()}),{extended}"
        f" counted AS ({count_finished_sql()}) SELECT * FROM inserted"
    )


@cached_sql
def annotator_pause_by_gold_sql() -> str:
    """Pause an annotator on a batch if the gold rule says so and they are not paused
    already: at least ``min items`` gold checks since last resumed, and fewer right than
    ``min accuracy`` of them. Returns their gold counters (in all, and since resumed)
    when it paused them, no row otherwise. Parameters: annotator id, batch id, min
    items, min accuracy."""
    table = AnnotatorBatchCount._meta.db_table
    return (
        f"UPDATE {table} SET paused = TRUE WHERE annotator_id = %s AND batch_id = %s"
        " AND paused = FALSE AND gold_labels_since_resume >= %s"
        # The cast: a prepared statement would type the parameter from the column
        # (integer), and 0.7 would arrive as 1.
        " AND gold_correct_since_resume < CAST(%s AS DOUBLE PRECISION) * gold_labels_since_resume"
        " RETURNING gold_labels, gold_correct, gold_labels_since_resume, gold_correct_since_resume"
    )


# --- a label and the next task in one round trip (PostgreSQL) --------------------------------

# The function's inputs: (name, SQL type). The label comes in both stored forms, one per
# response that may be on the left, with its validity per category: the function picks
# by the locked assignment's order and category (``labels.label_and_next_params``).
LABEL_AND_NEXT_ARGS = (
    ("assignment", "bigint"),
    ("me", "integer"),
    ("open", "text"),
    ("assigned", "text"),
    ("labelled", "text"),
    ("now", "timestamptz"),
    ("left", "text"),
    ("draw", "double precision"),
    ("strength", "text"),
    ("preferred_if_a_left", "text"),
    ("preferred_if_b_left", "text"),
    ("safety_a_if_a_left", "text"),
    ("safety_b_if_a_left", "text"),
    ("safety_bin_if_a_left", "text"),
    ("safety_a_if_b_left", "text"),
    ("safety_b_if_b_left", "text"),
    ("safety_bin_if_b_left", "text"),
    ("helpfulness_valid", "boolean"),
    ("safety_valid", "boolean"),
    ("comment", "text"),
    ("time_spent_ms", "integer"),
    ("idempotency_key", "text"),
)
# Its one row: whether it wrote the label, the label's server-side values, then the next
# task's columns in ``task_select_sql``'s order (NULLs when the queue has nothing for them).
LABEL_AND_NEXT_RESULT = (
    ("written", "boolean"),
    ("label_id", "bigint"),
    ("comparison_id", "bigint"),
    ("batch_id", "bigint"),
    ("category", "text"),
    ("left", "text"),
    ("time_spent_ms", "integer"),
    ("task_id", "bigint"),
    ("task_left", "text"),
    ("task_assigned_at", "timestamptz"),
    ("task_comparison_id", "bigint"),
    ("task_batch_id", "bigint"),
    ("task_batch_name", "text"),
    ("task_category", "text"),
    ("task_turns", "jsonb"),
    ("task_text_a", "text"),
    ("task_text_b", "text"),
    ("task_done", "bigint"),
    ("task_skipped", "bigint"),
    ("task_in_hand", "bigint"),
    ("task_free", "bigint"),
)


def in_plpgsql(sql: str, values: list[str] | dict[str, str]) -> str:
    """``sql`` with each placeholder (``%s`` in order, or ``%(name)s``) replaced by a
    PL/pgSQL expression from ``values``: a statement of this module as static SQL in a
    function body, whose plan PostgreSQL caches like a prepared statement's."""
    positional = iter(values) if isinstance(values, list) else None

    def expression(match: re.Match[str]) -> str:
        if match.group(1) is None:
            assert positional is not None, sql
            return next(positional)
        assert isinstance(values, dict), sql
        return values[match.group(1)]

    text = PLACEHOLDER.sub(expression, sql)
    if positional is not None:
        assert next(positional, None) is None, "more values than placeholders"
    return text


def _into(sql: str, before: str, target: str) -> str:
    """``sql`` with ``INTO target`` (PL/pgSQL) inserted before the one ``before``."""
    assert sql.count(before) == 1, (before, sql)
    return sql.replace(before, f" INTO {target}{before}")


def _label_insert_values() -> list[str]:
    """The label insert's values (``insert_sql(Label)``'s columns) inside the function:
    the judgement as picked for the assignment, the rest from the lock and the inputs;
    any other column gets its model default."""
    chosen = {
        "comparison_id": "v_lock.comparison_id",
        "annotator_id": "p_me",
        "preferred": "v_preferred",
        "strength": "p_strength",
        "safety_a": "v_safety_a",
        "safety_b": "v_safety_b",
        "safety_bin": "v_safety_bin",
        "comment": "p_comment",
        "left": 'v_lock."left"',
        "time_spent_ms": "v_time_spent_ms",
        "idempotency_key": "p_idempotency_key",
        "created_at": "p_now",
    }
    opts = Label._meta
    values = []
    for field in opts.concrete_fields:
        if field is opts.pk:
            continue
        if field.attname in chosen:
            values.append(chosen[field.attname])
            continue
        values.append(_literal(field.get_db_prep_save(field.get_default(), connection)))
    return values


def _literal(value: object) -> str:
    """A column default as an SQL literal (text, numbers, booleans, NULL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for a default of type {type(value).__name__}")


@cached_sql
def label_and_next_function() -> tuple[str, str, str]:
    """PostgreSQL: (name, ``CREATE FUNCTION`` text, call) of the function that does what
    ``labels._label_write`` then ``assignments.task_next`` do, in one round trip: lock the
    assignment (``assignment_for_update_sql``), (adaptive overlap: lock the comparison,
    ``comparison_lock_sql``), write the label (``label_write_sql``), then the next task
    (``task_next_sql``): these very statements, as static SQL with cached plans. Each
    runs with a snapshot of its own (READ COMMITTED, a volatile function), as in the
    transaction of separate statements it replaces, so adaptive overlap counts every
    label committed before its lock, and the next task sees this label.

    It writes only the plain case: the annotator's own assigned task, in an open batch,
    not a gold check, valid for its category. Anything else returns ``written`` false
    having changed nothing, and ``labels`` takes the separate statements, which answer
    every other case (a repeat, a skipped task, a closed batch, field errors, the gold
    pause rule) as they always have. Called in autocommit, one statement is one
    transaction: no BEGIN and COMMIT round trips either.

    The name carries a hash of the text, so code and database never disagree about what
    the function does: ``labels.label_and_next_install`` creates it after ``migrate``,
    and a database without it takes the separate statements.
    """
    args = {name: f"p_{name}" for name, _ in LABEL_AND_NEXT_ARGS}
    lock = in_plpgsql(_into(assignment_for_update_sql(), " FROM ", "v_lock"), [args["assignment"]])
    comparison_lock = "PERFORM" + in_plpgsql(
        comparison_lock_sql(), ["v_lock.comparison_id"]
    ).removeprefix("SELECT")
    update_params = [args["labelled"], args["now"], args["assignment"]]
    extend_params = [
        "v_lock.comparison_id",
        "v_lock.labels_per_comparison",
        "v_lock.labels_per_comparison_max",
        "v_lock.labels_per_comparison",
        args["strength"],
        "v_preferred",
    ]
    count_params = [
        "p_me",
        "v_lock.batch_id",
        *(str(n) for n in count_finished_params(0, 0, done=1)[2:]),
    ]

    def write(adaptive: bool) -> str:
        return in_plpgsql(
            _into(label_write_sql(adaptive), " FROM inserted", "o_label_id"),
            _label_insert_values()
            + update_params
            + (extend_params if adaptive else [])
            + count_params,
        )

    # The next task's columns straight into the task_* outputs (NULLs when there is none).
    task = in_plpgsql(
        _into(
            task_next_sql(),
            " FROM (SELECT a.id",
            ", ".join(f"o_{out}" for out, _ in LABEL_AND_NEXT_RESULT[7:]),
        ),
        {key: args[key] for key in ("me", "open", "assigned", "left", "now", "draw")},
    )
    safety = Category.SAFETY.value
    a = Choice.A.value
    body = f"""
DECLARE
  v_lock record;
  v_preferred text;
  v_safety_a text := '';
  v_safety_b text := '';
  v_safety_bin text := '';
  v_time_spent_ms integer;
BEGIN
  o_written := FALSE;
  {lock};
  IF NOT FOUND OR v_lock.annotator_id <> p_me OR v_lock.status <> p_assigned
      OR v_lock.batch_status <> p_open OR v_lock.is_gold
      OR NOT (CASE WHEN v_lock.category = '{safety}' THEN p_safety_valid
               ELSE p_helpfulness_valid END) THEN
    RETURN;  -- nothing written: the separate statements answer
  END IF;
  IF v_lock."left" = '{a}' THEN
    v_preferred := p_preferred_if_a_left;
  ELSE
    v_preferred := p_preferred_if_b_left;
  END IF;
  IF v_lock.category = '{safety}' THEN
    IF v_lock."left" = '{a}' THEN
      v_safety_a := p_safety_a_if_a_left;
      v_safety_b := p_safety_b_if_a_left;
      v_safety_bin := p_safety_bin_if_a_left;
    ELSE
      v_safety_a := p_safety_a_if_b_left;
      v_safety_b := p_safety_b_if_b_left;
      v_safety_bin := p_safety_bin_if_b_left;
    END IF;
  END IF;
  v_time_spent_ms := COALESCE(
    p_time_spent_ms, trunc(extract(epoch FROM p_now - v_lock.assigned_at) * 1000)::integer
  );
  IF v_lock.labels_per_comparison_max IS NOT NULL
      AND v_lock.labels_per_comparison_max > v_lock.labels_per_comparison THEN
    {comparison_lock};
    {write(True)};
  ELSE
    {write(False)};
  END IF;
  o_written := TRUE;
  o_comparison_id := v_lock.comparison_id;
  o_batch_id := v_lock.batch_id;
  o_category := v_lock.category;
  o_left := v_lock."left";
  o_time_spent_ms := v_time_spent_ms;
  {task};
END
"""
    signature = ", ".join(f"p_{name} {kind}" for name, kind in LABEL_AND_NEXT_ARGS)
    outputs = ", ".join(f"OUT o_{name} {kind}" for name, kind in LABEL_AND_NEXT_RESULT)
    digest = hashlib.sha256((signature + outputs + body).encode()).hexdigest()[:12]
    name = f"pairwise_label_and_next_{digest}"
    create = (
        f"CREATE OR REPLACE FUNCTION {name}({signature}, {outputs})"
        f" LANGUAGE plpgsql AS $pairwise${body}$pairwise$"
    )
    call = "SELECT * FROM {}({})".format(
        name, ", ".join(f"%({arg})s" for arg, _ in LABEL_AND_NEXT_ARGS)
    )
    return name, create, call


# --- what runs -----------------------------------------------------------------------------


def finished() -> list[tuple[str, str, str]]:
    """(prepared statement name, what it does, text) of every statement the queue runs on
    the current database vendor, in the order of a label's life."""
    postgresql = connection.vendor == "postgresql"
    found = [
        ("pairwise_current", "the annotator's task in hand", assignment_current_sql()),
        ("pairwise_claim", "claim a free comparison", comparison_claim_sql()),
        ("pairwise_assignment_insert", "record the claim", insert_sql(Assignment)[0]),
    ]
    if postgresql:
        found.append(("pairwise_task_next", "the next task, one statement", task_next_sql()))
    found += [
        ("pairwise_task", "a task with counts", task_sql()),
        (
            f"pairwise_counts_{REMAINING_COUNT_CAP}",
            "the annotator's counts",
            counts_sql(REMAINING_COUNT_CAP),
        ),
        ("pairwise_lock", "lock the assignment to label or skip", assignment_for_update_sql()),
    ]
    if postgresql:
        found.append(
            (
                "pairwise_comparison_lock",
                "adaptive overlap: lock the comparison",
                comparison_lock_sql(),
            )
        )
        name, create, call = label_and_next_function()
        found.append(
            (
                "pairwise_label_and_next",
                "a plain label and the next task, one call of the function below",
                call,
            )
        )
        found.append(
            ("(created after migrate)", "the function: the statements below, in one", create)
        )
        found.append(("pairwise_label_write", "the label's three writes", label_write_sql()))
        found.append(
            (
                "pairwise_label_write_adaptive",
                "the label's writes in a batch with adaptive overlap",
                label_write_sql(True),
            )
        )
    else:
        found += [
            ("(not prepared)", "adaptive overlap: one more label?", comparison_extend_sql()),
            ("pairwise_label_insert", "insert the label", insert_sql(Label)[0]),
            ("(not prepared)", "mark the assignment labelled", labelled_sql()),
        ]
    found.append(("pairwise_count_finished", "the annotator's counters", count_finished_sql()))
    found.append(
        ("pairwise_pause_by_gold", "after a gold check: pause?", annotator_pause_by_gold_sql())
    )
    return found
