"""The REST API: auth, roles, the annotator cycle, idempotency, batches, import, schema."""

import io
import json
import threading

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import auth, services
from annotation.domain import Category
from annotation.models import Assignment, Batch, Comparison, Label
from annotation.queue import assignments, labels, reads, rules
from tests.factories import BatchFactory, UserFactory, make_comparison, open_batch_with

pytestmark = pytest.mark.django_db

LABEL = {"preferred_side": "left", "strength": "better"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def ann(annotator):
    return client_for(annotator)


def jsonl(*rows) -> io.BytesIO:
    data = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()
    f = io.BytesIO(data)
    f.name = "upload.jsonl"
    return f


# --- auth and roles ----------------------------------------------------------------------


def test_token_is_obtained_with_password_and_authenticates(annotator):
    client = APIClient()
    got = client.post("/api/v1/auth/token/", {"username": "ann", "password": "pw-for-tests-123"})
    assert got.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {got.json()['token']}")
    assert client.get("/api/v1/labels/").status_code == 200
    assert (
        APIClient()
        .post("/api/v1/auth/token/", {"username": "ann", "password": "wrong"})
        .status_code
        == 400
    )


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/api/v1/tasks/next/"),
        ("post", "/api/v1/tasks/1/label/"),
        ("get", "/api/v1/labels/"),
        ("get", "/api/v1/batches/"),
        ("get", "/api/v1/comparisons/"),
    ],
)
def test_anonymous_gets_401(method, url):
    assert getattr(APIClient(), method)(url).status_code == 401


def test_token_auth_rejects_unknown_keys_and_inactive_users(annotator, ann):
    """The hot path's token read (``api.FastTokenAuthentication``) keeps DRF's rules."""
    open_batch_with(2)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert bad.get("/api/v1/tasks/next/").status_code == 401
    got = ann.get("/api/v1/tasks/next/")
    assert got.status_code == 200
    url = f"/api/v1/tasks/{got.json()['assignment_id']}/label-and-next/"
    annotator.is_active = False
    annotator.save(update_fields=["is_active"])
    assert ann.post(url, LABEL, format="json").status_code == 401
    assert Label.objects.count() == 0


def test_session_auth_works_too(annotator):
    client = APIClient()
    client.force_login(annotator)
    assert client.get("/api/v1/labels/").status_code == 200


def test_annotator_cannot_manage_batches_or_import_or_list_comparisons(ann):
    batch = BatchFactory()
    assert ann.get("/api/v1/batches/").status_code == 403
    assert ann.post("/api/v1/batches/", {"name": "mine"}).status_code == 403
    assert (
        ann.post(f"/api/v1/batches/{batch.pk}/transition/", {"status": "open"}).status_code == 403
    )
    upload = jsonl(
        {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello",
            "rejected": "\n\nHuman: hi\n\nAssistant: go",
        }
    )
    resp = ann.post(
        f"/api/v1/batches/{batch.pk}/import/",
        {"file": upload, "format": "hh", "category": "helpfulness"},
    )
    assert resp.status_code == 403
    assert ann.get("/api/v1/comparisons/").status_code == 403
    assert Batch.objects.count() == 1 and Comparison.objects.count() == 0


def test_researcher_lists_comparisons_but_cannot_annotate(researcher):
    batch = open_batch_with(2)
    client = client_for(researcher)
    assert client.get("/api/v1/tasks/next/").status_code == 403
    got = client.get(f"/api/v1/comparisons/?batch={batch.pk}&category=helpfulness")
    assert got.status_code == 200 and got.json()["count"] == 2
    assert client.get("/api/v1/comparisons/?category=safety").json()["count"] == 0
    assert client.get(f"/api/v1/batches/{batch.pk}/comparisons/").json()["count"] == 2


# --- the annotator cycle -----------------------------------------------------------------


def test_full_cycle_next_label_next(annotator, ann):
    open_batch_with(2)
    services.guideline_publish(
        category="helpfulness", title="Be helpful", body="Prefer the useful one."
    )
    first = ann.get("/api/v1/tasks/next/")
    assert first.status_code == 200
    task = first.json()
    assert task["category"] == "helpfulness" and task["turns"][-1]["role"] == "user"
    assert set(task["responses"]) == {"left", "right"}
    assert task["guideline"]["title"] == "Be helpful"
    assert task["counts"] == {"done": 0, "remaining": 2, "remaining_capped": False, "skipped": 0}
    # Texts only: nothing tells the client which stored response (A/B) is on the left.
    assert task["responses"]["left"].keys() == {"text"} and "response_a" not in task

    assert (
        ann.get("/api/v1/tasks/next/").json()["assignment_id"] == task["assignment_id"]
    )  # resumes
    labelled = ann.post(f"/api/v1/tasks/{task['assignment_id']}/label/", LABEL, format="json")
    assert labelled.status_code == 201
    body = labelled.json()
    assignment = Assignment.objects.get(pk=task["assignment_id"])
    # "left" is translated to the stored A/B on the server.
    assert body["preferred"] == assignment.left and body["preferred_side"] == "left"
    shown_left = assignment.comparison.response(assignment.left).text
    assert task["responses"]["left"]["text"] == shown_left

    second = ann.get("/api/v1/tasks/next/").json()
    assert second["assignment_id"] != task["assignment_id"]
    assert second["counts"]["done"] == 1
    ann.post(
        f"/api/v1/tasks/{second['assignment_id']}/label/",
        {"preferred": "B", "strength": "slightly_better"},
        format="json",
    )
    assert ann.get("/api/v1/tasks/next/").status_code == 204
    own = ann.get("/api/v1/labels/").json()
    assert own["count"] == 2 and {r["preferred"] for r in own["results"]} >= {"B"}


def test_safety_task_takes_display_side_tags(annotator, ann):
    open_batch_with(1, category=Category.SAFETY)
    task = ann.get("/api/v1/tasks/next/").json()
    url = f"/api/v1/tasks/{task['assignment_id']}/label/"
    missing = ann.post(url, LABEL, format="json")
    assert missing.status_code == 400
    assert set(missing.json()["errors"]) == {"safety_left", "safety_right"}
    stored_terms = ann.post(url, {"preferred": "A", "strength": "better"}, format="json")
    assert set(stored_terms.json()["errors"]) == {"safety_a", "safety_b"}
    resp = ann.post(url, {**LABEL, "safety_left": "safe", "safety_right": "unsafe"}, format="json")
    assert resp.status_code == 201
    label = Label.objects.get()
    left = Assignment.objects.get().left
    assert label.preferred == left
    assert getattr(label, f"safety_{left.lower()}") == "safe"
    assert label.safety_bin == "preferred_safe_other_unsafe"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"strength": "better"}, "preferred_side"),
        ({"preferred_side": "middle", "strength": "better"}, "preferred_side"),
        ({"preferred_side": "left", "strength": "a bit"}, "strength"),
        ({"preferred_side": "left", "strength": "better", "time_spent_ms": -5}, "time_spent_ms"),
        ({"preferred_side": "left", "preferred": "A", "strength": "better"}, "preferred"),
    ],
)
def test_label_validation_names_the_field(annotator, ann, body, field):
    open_batch_with(1)
    task = ann.get("/api/v1/tasks/next/").json()
    resp = ann.post(f"/api/v1/tasks/{task['assignment_id']}/label/", body, format="json")
    assert resp.status_code == 400 and field in resp.json()["errors"]
    assert field in resp.json()["detail"]
    assert Label.objects.count() == 0


def test_double_submit_returns_first_label_with_200(annotator, ann):
    open_batch_with(1)
    task = ann.get("/api/v1/tasks/next/").json()
    url = f"/api/v1/tasks/{task['assignment_id']}/label/"
    first = ann.post(url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = ann.post(
        url, {"preferred_side": "right", "strength": "significantly_better"}, format="json"
    )
    retry = ann.post(url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code, retry.status_code) == (201, 200, 200)
    assert first.json() == again.json() == retry.json()
    assert Label.objects.count() == 1


def test_idempotency_key_reused_for_another_task_is_409(annotator, ann):
    open_batch_with(2)
    one = ann.get("/api/v1/tasks/next/").json()
    assert (
        ann.post(
            f"/api/v1/tasks/{one['assignment_id']}/label/",
            LABEL,
            format="json",
            HTTP_IDEMPOTENCY_KEY="k",
        ).status_code
        == 201
    )
    two = ann.get("/api/v1/tasks/next/").json()
    resp = ann.post(
        f"/api/v1/tasks/{two['assignment_id']}/label/",
        LABEL,
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert resp.status_code == 409
    assert Label.objects.count() == 1


def test_others_tasks_are_404_and_labels_invisible(annotator, ann):
    open_batch_with(2)
    other = UserFactory(role="annotator")
    theirs = client_for(other).get("/api/v1/tasks/next/").json()
    client_for(other).post(f"/api/v1/tasks/{theirs['assignment_id']}/label/", LABEL, format="json")
    theirs2 = client_for(other).get("/api/v1/tasks/next/").json()
    for aid in (theirs["assignment_id"], theirs2["assignment_id"], 999_999):
        assert ann.post(f"/api/v1/tasks/{aid}/label/", LABEL, format="json").status_code == 404
        assert (
            ann.post(f"/api/v1/tasks/{aid}/skip/", {"reason": "x"}, format="json").status_code
            == 404
        )
    assert ann.get("/api/v1/labels/").json()["count"] == 0
    assert (
        Label.objects.count() == 1
        and Assignment.objects.get(pk=theirs2["assignment_id"]).status == "assigned"
    )


def test_skip_needs_reason_and_returns_task_to_pool(annotator, ann):
    open_batch_with(1)
    task = ann.get("/api/v1/tasks/next/").json()
    url = f"/api/v1/tasks/{task['assignment_id']}/skip/"
    assert "reason" in ann.post(url, {"reason": ""}, format="json").json()["errors"]
    assert ann.post(url, {"reason": "not my language"}, format="json").json()["status"] == "skipped"
    assert ann.get("/api/v1/tasks/next/").status_code == 204
    assert client_for(UserFactory(role="annotator")).get("/api/v1/tasks/next/").status_code == 200


def test_no_labels_once_the_batch_is_closed(annotator, ann):
    batch = open_batch_with(2)
    task = ann.get("/api/v1/tasks/next/").json()
    services.batch_transition(batch=batch, to="closed")
    resp = ann.post(f"/api/v1/tasks/{task['assignment_id']}/label/", LABEL, format="json")
    assert resp.status_code == 404  # closing released the unanswered task
    assert ann.get("/api/v1/tasks/next/").status_code == 204
    assert Label.objects.count() == 0


def _statements(request) -> tuple[object, list[str]]:
    """The response of ``request()`` and the SQL it ran, read before the next request
    resets Django's query log."""
    with CaptureQueriesContext(connection) as captured:
        response = request()
    return response, [q["sql"][:120] for q in captured.captured_queries]


def test_cycle_query_counts_are_pinned(annotator, ann):
    """N+1 guard: the cycle's queries are fixed, whatever the dialogue, batch or history."""
    open_batch_with(12)
    services.guideline_publish(category="helpfulness", title="Be helpful", body="Prefer it.")
    for n in range(3):
        claimed, claim = _statements(lambda: ann.get("/api/v1/tasks/next/"))
        task = claimed.json()
        resumed, resume = _statements(lambda: ann.get("/api/v1/tasks/next/"))
        assert resumed.json()["assignment_id"] == task["assignment_id"]
        url = f"/api/v1/tasks/{task['assignment_id']}/label/"
        labelled, label = _statements(
            lambda url=url, n=n: ann.post(
                url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY=f"key-{n}"
            )
        )
        assert labelled.status_code == 201
        task = ann.get("/api/v1/tasks/next/").json()
        url = f"/api/v1/tasks/{task['assignment_id']}/label-and-next/"
        got, label_next = _statements(
            lambda url=url, n=n: ann.post(
                url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY=f"key-next-{n}"
            )
        )
        assert got.status_code == 201 and got.json()["next"] is not None
        held = got.json()["next"]["assignment_id"]
        ann.post(f"/api/v1/tasks/{held}/label/", LABEL, format="json")  # next round claims
        sql = {"claim": claim, "resume": resume, "label": label, "label_next": label_next}
        # Every request: token with the caller's permissions (one query, see
        # auth.token_user and api.PreloadedPermissionsMixin).
        # Transactions show as SAVEPOINT/RELEASE here (the test runs inside one); in
        # production they are BEGIN/COMMIT (psycopg2 sends BEGIN with the first statement).
        # claim: on PostgreSQL one statement (assignments.task_next: current task, else claim
        #        and insert the assignment, then the task with dialogue, responses and
        #        counts); on SQLite current task, BEGIN, claim a free comparison (one
        #        UPDATE ... RETURNING), insert the assignment, COMMIT, the task. The
        #        guideline comes from the cache after the first task.
        # resume: the same statement (PostgreSQL); current task, the task (SQLite).
        # label: BEGIN, lock the assignment, insert the label, mark the assignment
        #        labelled, add to the annotator's done counter (an upsert), COMMIT; on
        #        PostgreSQL the three writes are one statement.
        # label_next: on PostgreSQL one function call that runs label's and claim's
        #        statements (statements.label_and_next_function; here in a savepoint, in
        #        production its own transaction); on SQLite label's, then the claim's
        #        statements in the same transaction.
        guideline = 1 if n == 0 else 0
        if connection.vendor == "postgresql":
            expected = {"claim": 2 + guideline, "resume": 2, "label": 5, "label_next": 4}
        else:
            # (the claim's transaction shows nothing here: it joins the test's own)
            expected = {"claim": 5 + guideline, "resume": 3, "label": 7, "label_next": 11}
        assert {name: len(q) for name, q in sql.items()} == expected, sql


# --- the combined submit --------------------------------------------------------------------


def test_label_and_next_is_the_whole_cycle_in_one_request(annotator, ann):
    open_batch_with(3)
    task = ann.get("/api/v1/tasks/next/").json()
    seen = [task["assignment_id"]]
    while task is not None:
        url = f"/api/v1/tasks/{task['assignment_id']}/label-and-next/"
        resp = ann.post(url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{len(seen)}")
        assert resp.status_code == 201
        body = resp.json()
        assignment = Assignment.objects.get(pk=task["assignment_id"])
        assert body["label"]["preferred"] == assignment.left  # "left" → stored A/B
        assert body["label"]["preferred_side"] == "left"
        task = body["next"]
        if task is not None:
            assert task["assignment_id"] not in seen
            assert task["responses"]["left"].keys() == {"text"} and "left" not in task
            assert task["counts"]["done"] == len(seen)
            seen.append(task["assignment_id"])
    assert len(seen) == 3 and Label.objects.count() == 3
    assert ann.get("/api/v1/tasks/next/").status_code == 204


def test_label_and_next_retry_returns_the_same_label_and_next_task(annotator, ann):
    open_batch_with(3)
    task = ann.get("/api/v1/tasks/next/").json()
    url = f"/api/v1/tasks/{task['assignment_id']}/label-and-next/"
    first = ann.post(url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    retry = ann.post(url, LABEL, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json()["label"] == retry.json()["label"]
    assert first.json()["next"]["assignment_id"] == retry.json()["next"]["assignment_id"]
    assert Label.objects.count() == 1 and Assignment.objects.count() == 2
    # The same key on the next task is a client bug, not a retry.
    nxt = first.json()["next"]["assignment_id"]
    reused = ann.post(
        f"/api/v1/tasks/{nxt}/label-and-next/", LABEL, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert reused.status_code == 409 and Label.objects.count() == 1
    assert Assignment.objects.get(pk=nxt).status == "assigned"


def test_label_and_next_keeps_validation_and_ownership(annotator, ann):
    open_batch_with(1, category=Category.SAFETY)
    other = UserFactory(role="annotator")
    open_batch_with(1)
    task = ann.get("/api/v1/tasks/next/").json()
    assert task["category"] == "safety"
    url = f"/api/v1/tasks/{task['assignment_id']}/label-and-next/"
    missing = ann.post(url, LABEL, format="json")
    assert missing.status_code == 400
    assert set(missing.json()["errors"]) == {"safety_left", "safety_right"}
    assert Assignment.objects.count() == 1  # nothing claimed for an invalid label
    theirs = client_for(other).get("/api/v1/tasks/next/").json()["assignment_id"]
    assert (
        ann.post(f"/api/v1/tasks/{theirs}/label-and-next/", LABEL, format="json").status_code == 404
    )
    ok = ann.post(url, {**LABEL, "safety_left": "safe", "safety_right": "unsafe"}, format="json")
    assert ok.status_code == 201 and ok.json()["next"] is None  # the other one is taken
    assert ok.json()["label"]["safety_bin"] == "preferred_safe_other_unsafe"


def test_hot_path_json_equals_the_serializers(annotator, ann):
    """The cycle renders plain dicts (serializers.task_data/label_data) for speed; the
    serializers document the schema. Both must give the same JSON."""
    from annotation.serializers import LabelSerializer, TaskSerializer, label_data, task_data

    open_batch_with(1, category=Category.SAFETY)
    open_batch_with(1)
    services.guideline_publish(category="safety", title="Be safe", body="Prefer safe.")
    for _ in range(2):
        a = assignments.assignment_next(annotator=annotator)
        task = reads.task_get(assignment_id=a.pk, annotator=annotator)
        assert task_data(task) == TaskSerializer(task).data
        data = rules.ShownLabelInput(
            "right", "better", safety_left="safe", safety_right="unsafe", comment="ok"
        )
        label, _ = labels.label_submit(assignment_id=a.pk, annotator=annotator, data=data)
        assert label_data(label) == LabelSerializer(label).data
        assert label_data(label)["preferred_side"] == "right"


# --- the queue behind the pages and the API -------------------------------------------------


def test_queue_spreads_multi_annotation_batches_breadth_first():
    open_batch_with(2, labels_per_comparison=2)
    users = [UserFactory(role="annotator") for _ in range(5)]
    got = [assignments.assignment_next(annotator=u) for u in users]
    assert all(got[:4]) and got[4] is None  # 2 comparisons x 2 slots
    assert assignments.assignment_next(annotator=users[0]).pk == got[0].pk  # resumes
    for u, a in zip(users, got[:4], strict=False):
        assert a.annotator_id == u.pk
    # Fewest claims first: the first two annotators get different comparisons.
    assert got[0].comparison_id != got[1].comparison_id
    by_comparison = {}
    for a in got[:4]:
        by_comparison.setdefault(a.comparison_id, set()).add(a.annotator_id)
    assert len(by_comparison) == 2 and all(len(v) == 2 for v in by_comparison.values())
    assert set(Comparison.objects.values_list("claims", flat=True)) == {2}


@pytest.mark.parametrize("cap", [3, 1000])
def test_counts_are_exact_below_the_cap(annotator, cap):

    open_batch_with(5)
    a = assignments.assignment_next(annotator=annotator)
    labels.label_submit(
        assignment_id=a.pk, annotator=annotator, data=rules.LabelInput("A", "better")
    )
    b = assignments.assignment_next(annotator=annotator)
    assignments.assignment_skip(assignment_id=b.pk, annotator=annotator, reason="broken prompt")
    assignments.assignment_next(annotator=annotator)
    counts = reads.annotator_counts(annotator, cap=cap)
    assert (counts.done, counts.skipped) == (1, 1)
    # 5 comparisons: 1 labelled, 1 skipped, 1 in hand, 2 free.
    assert (counts.remaining, counts.remaining_capped) == ((3, True) if cap == 3 else (3, False))


def test_preloaded_permissions_equal_djangos(researcher):
    from django.contrib.auth.models import Permission

    researcher.user_permissions.add(Permission.objects.get(codename="view_batch"))
    fresh = type(researcher).objects.get(pk=researcher.pk)
    assert auth.user_permission_names(fresh) == fresh.get_all_permissions()
    assert "annotation.view_batch" in auth.user_permission_names(fresh)


# --- batches and import ------------------------------------------------------------------


def test_batch_create_list_transition_with_progress(admin_user):
    client = client_for(admin_user)
    created = client.post(
        "/api/v1/batches/", {"name": "week 1", "labels_per_comparison": 2}, format="json"
    )
    assert created.status_code == 201
    batch_id = created.json()["id"]
    again = client.post("/api/v1/batches/", {"name": "week 1"}, format="json").json()
    assert again["errors"].keys() == {"name"} and again["detail"].startswith("name: ")
    bad = client.post(f"/api/v1/batches/{batch_id}/transition/", {"status": "open"}, format="json")
    assert bad.status_code == 400 and "status" in bad.json()["errors"]  # no comparisons yet
    for _ in range(3):
        make_comparison(Batch.objects.get(pk=batch_id))
    opened = client.post(
        f"/api/v1/batches/{batch_id}/transition/", {"status": "open"}, format="json"
    )
    assert opened.status_code == 200 and opened.json()["status"] == "open"
    task = client.get("/api/v1/tasks/next/").json()  # admins may annotate too
    client.post(f"/api/v1/tasks/{task['assignment_id']}/label/", LABEL, format="json")
    progress = client.get(f"/api/v1/batches/{batch_id}/").json()["progress"]
    assert progress == {
        "comparisons": 3,
        "labels_wanted": 6,
        "labels": 1,
        "in_progress": 0,
        "skipped": 0,
        "percent": 16,
    }
    BatchFactory()
    with CaptureQueriesContext(connection) as listed:
        rows = client.get("/api/v1/batches/").json()["results"]
    assert len(rows) == 2 and len(listed) <= 6  # auth + count + one page query: no N+1


def test_import_hh_reports_counts(admin_user):
    client = client_for(admin_user)
    batch = BatchFactory()
    upload = jsonl(
        {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello there",
            "rejected": "\n\nHuman: hi\n\nAssistant: go away",
        },
        {
            "chosen": "\n\nHuman: 2+2?\n\nAssistant: 4",
            "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5",
        },
    )
    resp = client.post(
        f"/api/v1/batches/{batch.pk}/import/",
        {"file": upload, "format": "hh", "category": "helpfulness"},
    )
    assert resp.status_code == 201, resp.json()
    assert resp.json()["created"] == 2 and resp.json()["labels_created"] == 2
    assert Comparison.objects.filter(batch=batch).count() == 2


def test_import_errors_name_line_and_field_and_write_nothing(admin_user):
    client = client_for(admin_user)
    batch = BatchFactory()
    upload = jsonl(
        {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello",
            "rejected": "\n\nHuman: hi\n\nAssistant: go",
        },
        "{not json",
        {"chosen": "\n\nHuman: hi\n\nAssistant: x"},
    )
    resp = client.post(
        f"/api/v1/batches/{batch.pk}/import/",
        {"file": upload, "format": "hh", "category": "helpfulness"},
    )
    assert resp.status_code == 400
    problems = resp.json()["problems"]
    assert [p["line"] for p in problems] == [2, 3]
    assert problems[1]["field"] == "rejected"
    assert Comparison.objects.count() == 0 and Label.objects.count() == 0
    missing = client.post(f"/api/v1/batches/{batch.pk}/import/", {"format": "hh"})
    assert missing.status_code == 400 and "file" in missing.json()["errors"]


def test_import_skip_invalid_is_explicit(admin_user):
    client = client_for(admin_user)
    batch = BatchFactory()
    upload = jsonl(
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, "[]"
    )
    resp = client.post(
        f"/api/v1/batches/{batch.pk}/import/",
        {"file": upload, "format": "hh", "category": "safety", "skip_invalid": "true"},
    )
    assert resp.status_code == 201
    assert resp.json()["created"] == 1 and resp.json()["skipped_invalid"][0]["line"] == 2


# --- schema ------------------------------------------------------------------------------


def test_openapi_schema_is_valid_and_lists_the_api(annotator):
    from drf_spectacular.validation import validate_schema

    client = APIClient()
    client.force_login(annotator)
    resp = client.get("/api/schema/?format=json")
    assert resp.status_code == 200
    schema = json.loads(resp.content)
    validate_schema(schema)
    for p in [
        "/api/v1/tasks/next/",
        "/api/v1/tasks/{assignment_id}/label/",
        "/api/v1/tasks/{assignment_id}/label-and-next/",
        "/api/v1/tasks/{assignment_id}/skip/",
        "/api/v1/labels/",
        "/api/v1/batches/",
        "/api/v1/batches/{batch_id}/transition/",
        "/api/v1/batches/{batch_id}/import/",
        "/api/v1/comparisons/",
        "/api/v1/auth/token/",
    ]:
        assert p in schema["paths"], p
    label_op = schema["paths"]["/api/v1/tasks/{assignment_id}/label/"]["post"]
    assert {"200", "201", "400", "404", "409"} <= set(label_op["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in label_op["parameters"])


# --- concurrency (PostgreSQL) ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_label_lost_under_concurrent_api_submissions():
    """16 annotators label through the API in parallel threads, each also double-submitting:
    every claimed task ends with exactly one label, and no comparison is labelled twice."""
    open_batch_with(48)
    users = [UserFactory(role="annotator") for _ in range(16)]
    tokens = {u.pk: Token.objects.create(user=u).key for u in users}
    errors: list[str] = []
    labelled: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(users))

    def work(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[user.pk]}")
        try:
            barrier.wait()
            while True:
                resp = client.get("/api/v1/tasks/next/")
                if resp.status_code == 204:
                    return
                aid = resp.json()["assignment_id"]
                codes = []
                for _ in range(2):  # a double click
                    codes.append(
                        client.post(
                            f"/api/v1/tasks/{aid}/label/",
                            LABEL,
                            format="json",
                            HTTP_IDEMPOTENCY_KEY=f"{user.pk}-{aid}",
                        ).status_code
                    )
                if codes != [201, 200]:
                    errors.append(f"{user.username} {aid}: {codes}")
                with lock:
                    labelled.append(aid)
        except Exception as exc:  # surfaced below, not swallowed
            errors.append(repr(exc))
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(labelled) == 48 == len(set(labelled))
    assert Label.objects.count() == 48
    assert Label.objects.values("comparison").distinct().count() == 48
    assert set(Comparison.objects.values_list("claims", flat=True)) == {1}


# --- the benchmark's baseline view -------------------------------------------------------


def test_bare_bench_view_exists_only_under_bench_settings(annotator, settings):
    from django.urls import clear_url_caches

    batch = open_batch_with(1)
    comparison = batch.comparisons.get()
    token = Token.objects.create(user=annotator).key
    url = f"/api/bench/bare/?comparison={comparison.pk}"
    assert (
        APIClient().post(url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 404
    )  # production URLs
    settings.ROOT_URLCONF = "bench.urls"
    clear_url_caches()
    try:
        resp = APIClient().post(url, HTTP_AUTHORIZATION=f"Token {token}")
        assert resp.status_code == 201 and resp.json()["user"] == annotator.pk
        assert APIClient().post(url, HTTP_AUTHORIZATION="Token nope").status_code == 403
    finally:
        clear_url_caches()


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "text/html", "application/json; indent=2"]
)
def test_task_endpoints_negotiate_as_drf_does(accept):
    """The cycle's endpoints skip DRF's negotiation for the plain Accept headers; what they
    answer is what the negotiation would, and other headers still go through it."""
    from rest_framework.negotiation import DefaultContentNegotiation
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from annotation.api import TaskNextApi

    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/tasks/next/", **headers))
    view = TaskNextApi()
    view.request, view.format_kwarg = request, None
    renderers = [r() for r in view.renderer_classes]
    try:
        expected = DefaultContentNegotiation().select_renderer(request, renderers)
    except Exception as exc:  # noqa: BLE001 - compared below
        expected = type(exc)
    try:
        got = view.perform_content_negotiation(request)
    except Exception as exc:  # noqa: BLE001 - compared below
        got = type(exc)
    if isinstance(expected, tuple):
        assert isinstance(got, tuple)
        assert (type(got[0]), got[1]) == (type(expected[0]), expected[1])
    else:
        assert got is expected
