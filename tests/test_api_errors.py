"""One error body for the whole API (config/api_errors.py), JSON even where no view answers."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from config.api_errors import error_body

pytestmark = pytest.mark.django_db


def test_nested_field_errors_are_flattened_to_dotted_names():
    body = error_body({"items": [{}, {"dialogue": ["This list may not be empty."]}]})
    assert body == {
        "detail": "items.1.dialogue: This list may not be empty.",
        "errors": {"items.1.dialogue": ["This list may not be empty."]},
    }
    assert error_body(["Send either dialogue and response, or items."]) == {
        "detail": "Send either dialogue and response, or items.",
        "errors": {"non_field_errors": ["Send either dialogue and response, or items."]},
    }
    assert error_body("Not found.") == {"detail": "Not found."}


def test_unknown_api_urls_answer_json_404_and_pages_keep_html(researcher):
    client = Client()
    client.force_login(researcher)
    for url in ("/api/v1/no-such-thing/", "/api/nothing", "/api/v1/tasks/abc/label/"):
        resp = client.get(url)
        assert resp.status_code == 404 and resp["Content-Type"] == "application/json"
        assert resp.json() == {"detail": f"No API endpoint at {url}."}
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and "Nothing here" in page.content.decode()


def test_anonymous_and_wrong_method_share_the_shape(researcher):
    anonymous = APIClient().get("/api/v1/comparisons/")
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"detail"}
    client = APIClient()
    client.force_authenticate(researcher)
    wrong = client.delete("/api/v1/comparisons/")
    assert wrong.status_code == 405 and wrong.json() == {"detail": 'Method "DELETE" not allowed.'}


def test_a_service_validation_error_is_a_400_naming_the_field(admin_user, monkeypatch):
    from annotation import services

    def refuse(**kwargs):
        raise ValidationError({"labels_per_comparison": "Too many for this batch."})

    monkeypatch.setattr(services, "batch_create", refuse)
    client = APIClient()
    client.force_authenticate(admin_user)
    resp = client.post("/api/v1/batches/", {"name": "week 9"}, format="json")
    assert resp.status_code == 400
    assert resp.json() == {
        "detail": "labels_per_comparison: Too many for this batch.",
        "errors": {"labels_per_comparison": ["Too many for this batch."]},
    }


def test_a_crash_under_api_is_a_json_500_without_internals(researcher, monkeypatch):
    from modeling import selectors

    def crash():
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(selectors, "model_version_list", crash)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(researcher)
    resp = client.get("/api/v1/models/")
    assert resp.status_code == 500 and resp["Content-Type"] == "application/json"
    assert "secret" not in resp.content.decode()
    assert resp.json()["detail"].startswith("Server error")


def test_list_filters_hold_ids_to_the_column_range(researcher):
    client = APIClient()
    client.force_authenticate(researcher)
    for value in ("-1.6790340230160505e+24", "9223372036854775808", "1.5"):
        resp = client.get("/api/v1/comparisons/", {"batch": value})
        assert resp.status_code == 400 and "batch" in resp.json()["errors"], value
    assert client.get("/api/v1/comparisons/", {"batch": "9223372036854775807"}).status_code == 200
