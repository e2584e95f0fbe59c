"""/api/docs/ works offline: Swagger UI's files come from this server, not a CDN."""

import re

import pytest

pytestmark = pytest.mark.django_db


def test_swagger_ui_is_served_from_our_own_static_files(client, researcher):
    client.force_login(researcher)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
    assert assets and all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets), assets
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content) if served.streaming else served.content
