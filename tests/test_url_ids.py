"""Ids in URLs: every route takes ``<id:...>``, and an id beyond the id column is a 404."""

import re

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.converters import IntConverter

from annotation.columns import ID_MAX
from annotation.url_converters import DatabaseIdConverter

PROJECT_APPS = ("annotation", "modeling", "rlhf")


def _routes(patterns=None, prefix=""):
    """(route, converters) of every URL pattern of the project's apps."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            yield from _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            converters = {**getattr(entry.pattern, "converters", {})}
            yield route, converters


def _id_routes():
    return [route for route, conv in _routes() if "<id:" in route]


def _path(route: str, id_value: int) -> str:
    path = re.sub(r"<id:\w+>", str(id_value), route)
    return "/" + re.sub(r"<str:\w+>", "name", path)


def test_no_route_takes_an_unbounded_int():
    routes = list(_routes())
    assert len(_id_routes()) >= 25  # every app's pages and API
    unbounded = [r for r, conv in routes if any(isinstance(c, IntConverter) for c in conv.values())]
    assert unbounded == []
    for route, conv in routes:
        for name in re.findall(r"<id:(\w+)>", route):
            assert isinstance(conv[name], DatabaseIdConverter), route


def test_id_range_is_the_id_columns_range():
    # ID_MAX is bigint's: every table's id must be a BigAutoField (settings.DEFAULT_AUTO_FIELD).
    for model in apps.get_models():
        if model._meta.app_label in PROJECT_APPS:
            assert model._meta.pk.get_internal_type() == "BigAutoField", model
    assert resolve(f"/api/v1/tasks/{ID_MAX}/label/").kwargs == {"assignment_id": ID_MAX}


@pytest.mark.django_db
def test_ids_beyond_the_column_are_404_on_every_route(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.org", "pw"))
    for route in _id_routes():
        for method in (client.get, client.post):
            beyond = method(_path(route, ID_MAX + 1))
            assert beyond.status_code == 404, (route, beyond.status_code)
            # The largest id is a real id: the view runs, finds nothing, and says so.
            largest = method(_path(route, ID_MAX))
            assert largest.status_code < 500, (route, largest.status_code)
    for bad in ("0", "99999999999999999999999999999"):
        assert client.get(f"/api/v1/tasks/{bad}/label/").status_code == 404
        assert client.get(f"/rlhf/live/{bad}/").status_code == 404


def test_the_schema_declares_path_ids_as_bounded_integers():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    ids = [
        p["schema"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for p in operation.get("parameters", [])
        if p["in"] == "path" and p["name"].endswith("_id")
    ]
    assert len(ids) >= 12
    assert all(
        s == {"type": "integer", "format": "int64", "minimum": 1, "maximum": ID_MAX} for s in ids
    )
