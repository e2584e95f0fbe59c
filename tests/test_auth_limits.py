"""Sign-in is rate-limited per username and address (config/auth.py): guessing stops at 10."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann(db):
    return get_user_model().objects.create_user("ann", password="right-password-123")


def test_token_endpoint_refuses_the_11th_attempt_with_429(ann):
    client = APIClient()
    for _ in range(10):
        wrong = client.post("/api/v1/auth/token/", {"username": "ann", "password": "wrong"})
        assert wrong.status_code == 400 and "errors" in wrong.json()
    refused = client.post(
        "/api/v1/auth/token/", {"username": "ann", "password": "right-password-123"}
    )
    assert refused.status_code == 429 and "token" not in refused.json()
    assert refused.json()["detail"].startswith("Too many sign-in attempts for this username")
    assert int(refused["Retry-After"]) > 0
    # Another username from the same address is counted apart.
    other = client.post("/api/v1/auth/token/", {"username": "bob", "password": "x"})
    assert other.status_code == 400


def test_login_page_refuses_the_11th_attempt_with_429(ann):
    client = Client()
    for _ in range(10):
        wrong = client.post("/accounts/login/", {"username": "ann", "password": "wrong"})
        assert wrong.status_code == 200 and "_auth_user_id" not in client.session
    refused = client.post("/accounts/login/", {"username": "ANN", "password": "right-password-123"})
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert "Too many sign-in attempts" in refused.content.decode()
    other = Client(REMOTE_ADDR="10.0.0.9")  # another address is counted apart
    assert other.post("/accounts/login/", {"username": "ann", "password": "right-password-123"})[
        "Location"
    ].endswith("/")


def test_admin_login_goes_through_the_limited_login(client):
    resp = client.get("/admin/login/?next=/admin/")
    assert resp.status_code == 302 and resp["Location"] == "/accounts/login/?next=/admin/"
