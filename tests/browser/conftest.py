"""Headless Chromium for the browser tests (Debian's chromium; Playwright's own download
does not work offline)."""

import os

import pytest
from django.db import connections

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between browser steps are plain synchronous reads, which Django's check would block.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("PAIRWISE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser():
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
        # ORM calls made while Playwright's loop runs get their own connections (Django keys
        # them by context): close them here, or PostgreSQL refuses to drop the test database.
        connections.close_all()
