"""Plain SQL on the hot path: statements built once per database vendor, run as
server-side prepared statements on PostgreSQL, rows turned back into model instances.

Generic plumbing, nothing about the queue: ``annotation.queue.statements`` and
``annotation.auth`` build their statements with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Model

Built = TypeVar("Built")
M = TypeVar("M", bound=Model)

PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")
REPREPARE_FIRST = 16
REPREPARE_MAX = 4096


def cached_sql(build: Callable[..., Built]) -> Callable[..., Built]:
    """Cache what a statement builder returns, per database vendor and arguments.

    The hot-path statements are built from model metadata (table and column names,
    quoting, backend features): the same text every time, but ~0.1 ms of Python to build
    on every request. The vendor is part of the key because the text differs by backend.
    """
    built: dict[tuple[str, tuple[Any, ...]], Built] = {}

    @functools.wraps(build)
    def get(*args: Any) -> Built:
        key = (connection.vendor, args)
        text = built.get(key)
        if text is None:
            text = built[key] = build(*args)
        return text

    return get


def prepared_execute(
    cursor: CursorWrapper,
    name: str,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any],
    *,
    discard_plans: bool = False,
) -> None:
    """Run ``sql`` with ``params`` (a list for ``%s``, a dict for ``%(name)s``) on ``cursor``.

    On PostgreSQL the statement is a server-side prepared statement: ``PREPARE`` once per
    database connection (``CONN_MAX_AGE`` keeps connections), then ``EXECUTE name(...)``.
    psycopg2 has no prepared statements of its own, and PostgreSQL otherwise parses and
    plans every statement each time: ~1 ms of planning for the claim and for the task
    with counts, more than running them. The settings make PostgreSQL plan it once,
    generically (``plan_cache_mode``). Elsewhere (SQLite) ``sql`` runs as is.

    A cached plan reflects the table sizes of the moment it was made. A plan made while a
    table was nearly empty (a new database, a fresh batch) probes it by sequential scan,
    and keeps doing so as the table grows: measured, the task statement went from 0.6 ms
    to 20 ms within 4,000 labels. So each statement is prepared again after 16, 32, 64,
    … executions on a connection (doubling, then every ``REPREPARE_MAX`` executions):
    plans follow the data's growth, at the cost of a few extra plannings per thousand
    executions. ``discard_plans``: the statement calls a PL/pgSQL function, whose own
    statements PostgreSQL plans and caches on the connection out of our reach; preparing
    it again then discards every cached plan of the connection (``DISCARD PLANS``), the
    function's included, and each is planned afresh at its next run.

    The ``PREPARE`` goes through the driver's own cursor, so it does not show in Django's
    query log: the pinned query counts stay the same on both databases.
    """
    db = cursor.db  # the connection itself, not the thread-local proxy (cheaper to reach)
    if db.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    raw = db.connection
    # (raw connection, {statement name: [executions so far, executions at which to re-prepare]})
    prepared: tuple[Any, dict[str, list[int]]] | None = getattr(db, "_pairwise_prepared", None)
    if prepared is None or prepared[0] is not raw:  # a new connection: nothing prepared yet
        prepared = (raw, {})
        db._pairwise_prepared = prepared
    text, order = numbered(sql)
    state = prepared[1].get(name)
    if state is None or state[0] >= state[1]:
        with raw.cursor() as setup:
            if state is not None:
                if discard_plans:
                    setup.execute("DISCARD PLANS")
                setup.execute(f"DEALLOCATE {name}")
            setup.execute(f"PREPARE {name} AS {text}")
        runs = 0 if state is None else state[0]
        state = prepared[1][name] = [
            runs,
            min(max(2 * runs, REPREPARE_FIRST), runs + REPREPARE_MAX),
        ]
    state[0] += 1
    lookup: Any = params  # a list (int keys) or a dict (str keys)
    values = [lookup[key] for key in order]
    cursor.execute(f"EXECUTE {name}({', '.join(['%s'] * len(values))})", values)


@functools.lru_cache(maxsize=64)
def numbered(sql: str) -> tuple[str, tuple[int | str, ...]]:
    """``sql`` with ``$1, $2, ...`` for its placeholders, and the parameter key of each
    (list indexes for ``%s``, names for ``%(name)s``; a repeated name is one parameter)."""
    order: list[int | str] = []

    def number(match: re.Match[str]) -> str:
        key: int | str | None = match.group(1)
        if key is None:
            key = len(order)
        elif key in order:
            return f"${order.index(key) + 1}"
        order.append(key)
        return f"${len(order)}"

    return PLACEHOLDER.sub(number, sql), tuple(order)


def instance_from_row(model: type[M], attnames: tuple[str, ...], values: Sequence[Any]) -> M:
    """A model instance from plain-SQL values (columns ``attnames``, in order), with the
    database's value converters applied as the ORM would (SQLite returns naive datetimes)."""
    values = list(values)
    for index, col, converters in _converters(model, attnames, connection.vendor):
        for converter in converters:
            values[index] = converter(values[index], col, connection)
    return model.from_db(connection.alias, attnames, values)


@functools.cache
def _converters(
    model: type[Model], attnames: tuple[str, ...], vendor: str
) -> list[tuple[int, Any, list[Any]]]:
    """(index, column, converters) for each of ``attnames`` that the backend converts."""
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    found = []
    for index, attname in enumerate(attnames):
        col = by_attname[attname].get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if converters:
            found.append((index, col, converters))
    return found


# --- inserts -------------------------------------------------------------------------------


def insert(obj: Model, name: str) -> None:
    """Insert a new model instance with one plain-SQL statement (prepared on PostgreSQL),
    setting its primary key: what ``Model.objects.create`` does, without the ~0.4 ms of
    CPU the ORM spends compiling each insert. ``auto_now_add`` fields must be set by the
    caller."""
    sql, returning = insert_sql(type(obj))
    with connection.cursor() as cursor:
        prepared_execute(cursor, name, sql, insert_values(obj))
        mark_inserted(obj, cursor.fetchone()[0] if returning else cursor.lastrowid)


def insert_values(obj: Model) -> list[Any]:
    """``insert_sql``'s parameters for ``obj``: every concrete column but the primary key."""
    opts = obj._meta
    return [
        f.get_db_prep_save(getattr(obj, f.attname), connection)
        for f in opts.concrete_fields
        if f is not opts.pk
    ]


def mark_inserted(obj: Model, pk: Any) -> None:
    """Record on ``obj`` that it was saved with primary key ``pk``, as ``save()`` would."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias


@cached_sql
def insert_sql(model: type[Model]) -> tuple[str, bool]:
    """``insert``'s statement for ``model``, and whether it returns the new primary key."""
    opts = model._meta
    fields = [f for f in opts.concrete_fields if f is not opts.pk]
    columns = ", ".join(connection.ops.quote_name(column_of(f)) for f in fields)
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        opts.db_table, columns, ", ".join(["%s"] * len(fields))
    )
    returning = connection.features.can_return_columns_from_insert
    if returning:
        sql += " RETURNING " + connection.ops.quote_name(column_of(opts.pk))
    return sql, returning


def column_of(field: Any) -> str:
    """A concrete field's column name (the stubs allow None, for fields without a column)."""
    column = field.column
    assert isinstance(column, str), field
    return column
