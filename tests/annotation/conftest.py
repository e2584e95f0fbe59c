"""Fixtures for the annotation tests."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache: cached rows (the active guidelines) would
    outlive the test database transaction that wrote them."""
    cache.clear()
    yield
    cache.clear()
