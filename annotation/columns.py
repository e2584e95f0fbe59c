"""The ranges of the integer columns Pairwise stores, the same on every database.

PostgreSQL's ranges are the narrowest (SQLite keeps any 64-bit integer), so input is held
to these before it reaches a query: a number beyond them is a 400 naming the field (or a
404 for an id in a URL), never an overflow inside the database driver.
"""

from __future__ import annotations

INTEGER_MAX = 2**31 - 1
"""IntegerField and PositiveIntegerField: PostgreSQL ``integer``."""

ID_MAX = 2**63 - 1
"""Every table's id: ``settings.DEFAULT_AUTO_FIELD`` is BigAutoField, PostgreSQL ``bigint``."""
