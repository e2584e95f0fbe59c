"""``<id:name>`` in every app's URLs: a database id, 1 to ``columns.ID_MAX``.

Django's ``<int:...>`` matches any number of digits, and a number beyond the id column
overflows in the database driver (a 500). An id outside the column's range names no row,
so it does not match, and the URL answers 404 like any other unknown id.

Importing this module registers the converter; every urls module that uses ``<id:...>``
imports it.
"""

from __future__ import annotations

from django.urls import register_converter

from annotation.columns import ID_MAX


class DatabaseIdConverter:
    regex = "[0-9]{1,19}"  # ID_MAX has 19 digits

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= ID_MAX:
            raise ValueError(f"{value} is not a database id")  # no match: 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(DatabaseIdConverter, "id")
