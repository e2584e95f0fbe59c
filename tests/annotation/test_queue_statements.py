"""Every finished SQL statement of the annotator queue, on a page a reader can open.

``docs/queue-statements.md`` shows each statement the queue (and the token and permission
reads of ``annotation.auth``) runs, as PostgreSQL and SQLite receive it, rendered here
from the builders in ``annotation/queue/statements.py``. The test fails when the page and
the code disagree; after changing a statement, rewrite the page with

    PAIRWISE_WRITE_STATEMENTS=1 python -m pytest tests/annotation/test_queue_statements.py

and read the diff: it is the change PostgreSQL will plan.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import sqlparse
from django.conf import settings
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper

from annotation import auth, prepared
from annotation.queue import statements

PAGE = Path(settings.BASE_DIR) / "docs" / "queue-statements.md"
INTRO = """\
# The annotator queue's SQL, as the database receives it

Written by `tests/annotation/test_queue_statements.py` from the builders in
`annotation/queue/statements.py` and `annotation/auth.py`; that test fails when this page
is out of date (rewrite it with `PAIRWISE_WRITE_STATEMENTS=1 python -m pytest
tests/annotation/test_queue_statements.py`). Why each statement is written the way it is:
the builders' docstrings, and `bench/README.md`.

On PostgreSQL every statement is a server-side prepared statement
(`annotation.prepared.prepared_execute`): `PREPARE name AS …` once per connection (and
again after 16, 32, 64, … executions), then `EXECUTE name(…)`; the text below is the
prepared one, with its parameters numbered. SQLite runs the text with the driver's
placeholders. A label from the page or the API costs, on PostgreSQL, the token (or the
permissions) read and `pairwise_label_and_next`: one call of a function that runs the
statements of `pairwise_lock`, `pairwise_label_write` and `pairwise_task_next` (a gold
check, a repeat or an error takes them one by one, with the pause rule after a gold check).
"""


def _wrapper(cls, engine: str):
    """A database wrapper of another vendor that never connects: enough to build SQL text."""
    return cls({**connection.settings_dict, "ENGINE": engine, "NAME": "render"}, "render")


def _finished(wrapper) -> list[tuple[str, str, str]]:
    """``statements.finished()`` and the auth reads, built as for ``wrapper``'s vendor."""
    with (
        mock.patch.object(prepared, "connection", wrapper),
        mock.patch.object(statements, "connection", wrapper),
        mock.patch.object(auth, "connection", wrapper),
    ):
        return [
            ("pairwise_token", "the API token, its user and permissions", auth.token_user_sql()[0]),
            ("pairwise_permissions", "a page user's permissions", auth.permissions_sql("%s")),
            *statements.finished(),
        ]


def _pretty(sql: str) -> str:
    return sqlparse.format(sql, reindent=True, keyword_case="upper").strip()


def render() -> str:
    parts = [INTRO]
    vendors = [
        ("PostgreSQL", _wrapper(PostgreSQLWrapper, "django.db.backends.postgresql"), True),
        ("SQLite", _wrapper(SQLiteWrapper, "django.db.backends.sqlite3"), False),
    ]
    for title, wrapper, numbered in vendors:
        parts.append(f"\n## {title}\n")
        for name, what, sql in _finished(wrapper):
            parts.append(f"\n### `{name}`: {what}\n")
            if numbered:
                sql, order = prepared.numbered(sql)
                if order and all(isinstance(key, str) for key in order):  # named, not positional
                    keys = ", ".join(f"${n} = {key}" for n, key in enumerate(order, start=1))
                    parts.append(f"\nParameters: {keys}.\n")
            parts.append(f"\n```sql\n{_pretty(sql)}\n```\n")
    return "".join(parts)


def test_the_page_shows_every_finished_statement():
    text = render()
    if os.environ.get("PAIRWISE_WRITE_STATEMENTS"):
        PAGE.write_text(text)
    assert PAGE.read_text() == text, (
        "docs/queue-statements.md is out of date: rewrite it with "
        "PAIRWISE_WRITE_STATEMENTS=1 python -m pytest tests/annotation/test_queue_statements.py"
    )


def test_each_vendor_gets_its_own_statements():
    """What the page shows is each vendor's own text: PostgreSQL walks one index range per
    open batch and writes a label in one statement; SQLite has neither."""
    pg = dict((name, sql) for name, _, sql in _finished(_wrapper(PostgreSQLWrapper, "x")))
    lite = dict((name, sql) for name, _, sql in _finished(_wrapper(SQLiteWrapper, "x")))
    assert "CROSS JOIN LATERAL" in pg["pairwise_claim"] and "SKIP LOCKED" in pg["pairwise_claim"]
    assert "LATERAL" not in lite["pairwise_claim"] and "LOCKED" not in lite["pairwise_claim"]
    assert "pairwise_label_write" in pg and "pairwise_label_write" not in lite
    assert {"pairwise_label_insert", "pairwise_task_next"} & set(pg) == {"pairwise_task_next"}
    assert "string_agg" in pg["pairwise_token"] and "group_concat" in lite["pairwise_token"]


def test_the_page_renders_what_this_database_runs():
    """The rendering for a vendor is the text the live connection of that vendor runs."""
    own = {name: sql for name, _, sql in statements.finished()}
    if connection.vendor == "postgresql":
        wrapper = _wrapper(PostgreSQLWrapper, "django.db.backends.postgresql")
    else:
        wrapper = _wrapper(SQLiteWrapper, "django.db.backends.sqlite3")
    rendered = {name: sql for name, _, sql in _finished(wrapper) if name in own}
    assert rendered == own
