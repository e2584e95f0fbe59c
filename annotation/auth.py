"""Who is asking, in one statement: an API token with its user and their permissions, and
a user's permissions by themselves (for pages, which authenticate by session).

Plain SQL (prepared on PostgreSQL) because every request on the annotator's hot path runs
it: the ORM spends more CPU compiling these reads than PostgreSQL spends answering them
(``select_related`` for the token, two queries in ModelBackend for the permissions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connection

from annotation.prepared import cached_sql, column_of, instance_from_row, prepared_execute

if TYPE_CHECKING:
    from rest_framework.authtoken.models import Token


def token_user(key: str) -> tuple[Any, Token] | None:
    """(user, token) for an API token key, or None: one prepared statement instead of the
    ORM's ``select_related`` read (~0.5 ms of CPU to compile, on every API request), with
    the user's permissions (``user_permission_names``) in the same round trip."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    sql, token_cols, user_cols = token_user_sql()
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_token", sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    token = instance_from_row(Token, token_cols, row[: len(token_cols)])
    user: Any = instance_from_row(User, user_cols, row[len(token_cols) : -1])
    if not user.is_superuser:
        # ModelBackend's per-request permission cache (see ``permissions_preload``): read
        # in the same statement, so a token request costs one query, not two.
        user._perm_cache = set(row[-1].split(",")) if row[-1] else set()
    token.user = user
    return user, token


@cached_sql
def token_user_sql() -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """``token_user``'s statement, and the token's and the user's columns in its rows."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    token_fields, user_fields = Token._meta.concrete_fields, User._meta.concrete_fields
    token_cols = tuple(f.attname for f in token_fields)
    user_cols = tuple(f.attname for f in user_fields)
    q = connection.ops.quote_name
    aggregate = "string_agg" if connection.vendor == "postgresql" else "group_concat"
    user_pk = q(column_of(User._meta.pk))
    perms = permissions_sql(f"u.{user_pk}")
    perms_sql = f"(SELECT {aggregate}(x.app_label || '.' || x.codename, ',') FROM ({perms}) x)"
    sql = "SELECT {}, {}, {} FROM {} t JOIN {} u ON u.{} = t.{} WHERE t.{} = %s".format(
        ", ".join(f"t.{q(column_of(f))}" for f in token_fields),
        ", ".join(f"u.{q(column_of(f))}" for f in user_fields),
        perms_sql,
        q(Token._meta.db_table),
        q(User._meta.db_table),
        user_pk,
        q(column_of(Token._meta.get_field("user"))),
        q(column_of(Token._meta.pk)),
    )
    return sql, token_cols, user_cols


@cached_sql
def permissions_sql(user_ref: str) -> str:
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


def user_permission_names(user: Any) -> set[str]:
    """``"app_label.codename"`` of every permission the user has, directly or by group.

    One query, in plain SQL because every API request runs it: the ORM spends more CPU
    compiling this query than PostgreSQL spends answering it (ModelBackend makes two).
    """
    sql = permissions_sql("%s")
    with connection.cursor() as cursor:
        prepared_execute(cursor, "pairwise_permissions", sql, [user.pk, user.pk])
        return {f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()}


def permissions_preload(user: Any) -> None:
    """Load the user's permissions in one query before ``has_perm`` is asked (Django's
    ModelBackend would make two).

    It fills ``_perm_cache``, the per-request cache ModelBackend reads first
    (``ModelBackend.get_all_permissions``); the cache lives and dies with this request's
    user object, so permission changes apply from the next request on. Nothing to do for
    anonymous users, superusers (every permission) or a user already loaded.
    """
    if user.is_authenticated and not user.is_superuser and not hasattr(user, "_perm_cache"):
        user._perm_cache = user_permission_names(user)
