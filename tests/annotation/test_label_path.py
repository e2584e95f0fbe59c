"""One path for a label: the page and the API label through ``labels.label_submit_and_next``
at the same cost, with the rules of ``queue.rules``; bad input is a 4xx naming the field
(or the header), and nothing is written; another annotator's task answers exactly as a
task that does not exist."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from annotation.domain import Category
from annotation.models import Assignment, Comparison, Label
from annotation.queue import assignments, labels, rules
from tests.factories import UserFactory, open_batch_with

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
BODY = {"preferred_side": "left", "strength": "better"}


def api_client(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def label_post(**over) -> dict:
    return {"choice": "left", "strength": "better", "comment": "", "time_spent_ms": "", **over}


def error_fields(response) -> set[str]:
    """The fields an API 400 names (the body is ``{"detail", "errors": {field: [...]}}``)."""
    body = response.json()
    return set(body.get("errors", body))


def nothing_written(task_id: int) -> bool:
    """No label, the task still in hand, and nothing else claimed."""
    return (
        not Label.objects.exists()
        and Assignment.objects.get(pk=task_id).status == Assignment.Status.ASSIGNED
        and Assignment.objects.count() == 1
    )


# --- the page and the API take one path, at one cost -----------------------------------


def _statement_kinds(queries) -> list[str]:
    """Each query as what it is: a prepared statement's name, or its first keyword."""
    kinds = []
    for query in queries:
        sql = query["sql"]
        kinds.append(sql.split("(")[0] if sql.startswith("EXECUTE") else sql.split()[0])
    return kinds


def _authentication_and_work(queries) -> tuple[list[str], list[str]]:
    """A label request's statements split at its transaction: who is asking, then the label."""
    kinds = _statement_kinds(queries)
    start = kinds.index("SAVEPOINT")  # the test's transaction: BEGIN shows as a savepoint
    return kinds[:start], kinds[start:]


@pytest.mark.postgres
def test_page_label_costs_what_the_api_label_and_next_costs(client, annotator):
    """The page's label goes through the API's label-and-next service: after
    authentication, the same statements in the same order, and as many; the next task
    comes from the same one statement, not from a second read of the assignment."""
    open_batch_with(8)
    services.guideline_publish(category=Category.HELPFULNESS, title="Be useful", body="Help.")
    api = api_client(annotator)
    client.force_login(annotator)
    task_id = api.get("/api/v1/tasks/next/").json()["assignment_id"]
    measured = {}
    for round_ in range(2):  # the first round warms the guideline cache
        url = f"/api/v1/tasks/{task_id}/label-and-next/"
        with CaptureQueriesContext(connection) as api_queries:
            answer = api.post(url, BODY, format="json", HTTP_IDEMPOTENCY_KEY=f"api-{round_}")
        assert answer.status_code == 201
        with CaptureQueriesContext(connection) as page_queries:
            page = client.post(
                reverse("annotate_label", args=[answer.json()["next"]["assignment_id"]]),
                label_post(idempotency_key=f"page-{round_}"),
                **HTMX,
            )
        assert page.status_code == 200 and "Label saved." in page.content.decode()
        task_id = page.context["task"].assignment_id
        measured = {
            "api": _authentication_and_work(api_queries.captured_queries),
            "page": _authentication_and_work(page_queries.captured_queries),
        }
    (api_auth, api_work), (page_auth, page_work) = measured["api"], measured["page"]
    assert len(page_work) == len(api_work) == 3
    # One call of the label-and-next function (in a savepoint inside the test's
    # transaction; in production, a statement of its own).
    assert page_work == api_work == ["SAVEPOINT", "EXECUTE pairwise_label_and_next", "RELEASE"]
    # Who is asking: the API reads token, user and permissions in one statement; the page
    # reads its session and user as Django does, then the permissions in one statement.
    assert api_auth == ["EXECUTE pairwise_token"]
    assert page_auth == ["SELECT", "SELECT", "EXECUTE pairwise_permissions"]
    assert Label.objects.filter(annotator=annotator).count() == 4


def test_page_and_api_store_the_same_label_for_the_same_judgement(client, annotator):
    """The page's left/right goes through the service's translation, as the API's does."""
    open_batch_with(2, category=Category.SAFETY)
    api = api_client(annotator)
    client.force_login(annotator)
    first = api.get("/api/v1/tasks/next/").json()["assignment_id"]
    tags = {"safety_left": "safe", "safety_right": "unsafe"}
    answer = api.post(
        f"/api/v1/tasks/{first}/label-and-next/", {**BODY, **tags}, format="json"
    ).json()
    second = answer["next"]["assignment_id"]
    page = client.post(reverse("annotate_label", args=[second]), label_post(**tags), **HTMX)
    assert page.status_code == 200
    by_api, by_page = (Label.objects.get(comparison__assignments__pk=pk) for pk in (first, second))
    for label, pk in ((by_api, first), (by_page, second)):
        left = Assignment.objects.get(pk=pk).left
        assert (label.preferred, label.left) == (left, left)
        assert getattr(label, f"safety_{left.lower()}") == "safe"
        assert label.safety_bin == "preferred_safe_other_unsafe"


# --- a comment the database cannot store (NUL, lone surrogate) ---------------------------

UNSTORABLE = {
    "NUL": ('"a\\u0000b"', "NUL character"),
    "lone surrogate": ('"a\\ud800b"', "lone surrogate"),
}


@pytest.mark.parametrize("endpoint", ["label", "label-and-next"])
@pytest.mark.parametrize("kind", list(UNSTORABLE))
def test_api_refuses_an_unstorable_comment_naming_the_comment(annotator, endpoint, kind):
    open_batch_with(2)
    api = api_client(annotator)
    task_id = api.get("/api/v1/tasks/next/").json()["assignment_id"]
    comment, words = UNSTORABLE[kind]
    raw = '{"preferred_side": "left", "strength": "better", "comment": ' + comment + "}"
    answer = api.post(
        f"/api/v1/tasks/{task_id}/{endpoint}/", data=raw, content_type="application/json"
    )
    assert answer.status_code == 400
    assert error_fields(answer) == {"comment"}
    assert words in json.dumps(answer.json()["errors"]["comment"])
    assert nothing_written(task_id)


def test_page_refuses_a_nul_in_the_comment_as_a_form_error(client, annotator):
    """(A browser's form data cannot carry a lone surrogate: Django decodes it as UTF-8.)"""
    open_batch_with(2)
    client.force_login(annotator)
    task = client.get(reverse("annotate")).context["task"]
    page = client.post(
        reverse("annotate_label", args=[task.assignment_id]),
        label_post(comment="a\x00b"),
        **HTMX,
    )
    assert page.status_code == 422
    assert page.context["form"].errors == {
        "comment": ["The comment contains a NUL character (\\u0000) at position 1."]
    }
    assert "NUL character" in page.content.decode()
    assert page.context["task"].assignment_id == task.assignment_id  # the same task, kept
    assert nothing_written(task.assignment_id)


def test_services_refuse_an_unstorable_comment_from_any_caller(annotator):
    """Callers that build the input themselves (live annotation, the demo loop) meet the
    same rule in the service."""
    open_batch_with(1)
    task = assignments.assignment_next(annotator=annotator)
    for comment in ("a\x00b", "a\ud800b"):
        with pytest.raises(ValidationError) as refused:
            labels.label_submit(
                assignment_id=task.pk,
                annotator=annotator,
                data=rules.LabelInput("A", "better", comment=comment),
            )
        assert set(refused.value.message_dict) == {"comment"}
    assert nothing_written(task.pk)


# --- Idempotency-Key: refused when too long, never cut -----------------------------------


def test_long_idempotency_keys_are_refused_not_cut(annotator):
    """Two keys sharing their first 100 characters once collided (the second label 409):
    now a key longer than the column is a 400 naming the header, and nothing is written;
    keys of up to 100 characters work as before."""
    open_batch_with(3)
    api = api_client(annotator)
    task_id = api.get("/api/v1/tasks/next/").json()["assignment_id"]
    prefix = "k" * rules.IDEMPOTENCY_KEY_MAX_CHARS
    for key in (prefix + "1", prefix + "2"):
        for endpoint in ("label", "label-and-next"):
            answer = api.post(
                f"/api/v1/tasks/{task_id}/{endpoint}/",
                BODY,
                format="json",
                HTTP_IDEMPOTENCY_KEY=key,
            )
            assert answer.status_code == 400
            assert error_fields(answer) == {"Idempotency-Key"}
            assert "101 characters" in answer.json()["errors"]["Idempotency-Key"][0]
            assert nothing_written(task_id)
    # Keys of the column's width are whole, so two that differ only at the end differ.
    first = api.post(
        f"/api/v1/tasks/{task_id}/label-and-next/",
        BODY,
        format="json",
        HTTP_IDEMPOTENCY_KEY=prefix[:-1] + "1",
    )
    assert first.status_code == 201
    second = api.post(
        f"/api/v1/tasks/{first.json()['next']['assignment_id']}/label/",
        BODY,
        format="json",
        HTTP_IDEMPOTENCY_KEY=prefix[:-1] + "2",
    )
    assert second.status_code == 201
    assert sorted(Label.objects.values_list("idempotency_key", flat=True)) == [
        prefix[:-1] + "1",
        prefix[:-1] + "2",
    ]


# --- no existence oracle on the task endpoints -------------------------------------------


def test_api_answers_another_annotators_task_exactly_as_a_missing_one(annotator):
    open_batch_with(2)
    other = UserFactory(role="annotator")
    theirs = assignments.assignment_next(annotator=other)
    api = api_client(annotator)
    api.get("/api/v1/tasks/next/")
    missing = Assignment.objects.order_by("-pk").first().pk + 1000
    posts = [
        ("label", BODY, {}, 404),
        ("label", BODY, {"HTTP_IDEMPOTENCY_KEY": "k-1"}, 404),
        ("label-and-next", BODY, {}, 404),
        ("skip", {"reason": "not mine"}, {}, 404),
        # An invalid body is refused before any task is looked at: the same 400 for both.
        ("label", {"preferred_side": "left"}, {}, 400),
    ]
    for endpoint, body, headers, expected in posts:
        answers = [
            api.post(f"/api/v1/tasks/{pk}/{endpoint}/", body, format="json", **headers)
            for pk in (theirs.pk, missing)
        ]
        assert [a.status_code for a in answers] == [expected] * 2, (endpoint, body)
        assert answers[0].json() == answers[1].json()
    assert not Label.objects.exists()
    assert Assignment.objects.get(pk=theirs.pk).status == Assignment.Status.ASSIGNED
    assert Comparison.objects.get(pk=theirs.comparison_id).claims == 1
