"""Denied and missing pages are the app's own pages, not bare server text."""

import pytest


@pytest.mark.django_db
def test_forbidden_and_missing_pages_are_finished_pages(client, researcher):
    client.force_login(researcher)
    denied = client.get("/batches/")
    assert denied.status_code == 403
    assert "You can't open this page" in denied.content.decode()
    assert 'href="/data/"' in denied.content.decode()  # the researcher's own navigation
    missing = client.get("/no-such-page/")
    assert missing.status_code == 404
    assert "Nothing here" in missing.content.decode()
