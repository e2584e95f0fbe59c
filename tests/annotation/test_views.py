"""The HTML pages: who may see what, the label form's left/right → A/B translation, htmx swaps."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from annotation import services
from annotation.domain import Category
from annotation.models import Assignment, Batch, Comparison, Guideline, Label
from annotation.queue import assignments, labels, rules
from tests.factories import (
    BatchFactory,
    UserFactory,
    make_comparison,
    native_row,
    open_batch_with,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def login(client, user):
    client.force_login(user)
    return client


def label_post(**over):
    return {"choice": "left", "strength": "better", "comment": "", "time_spent_ms": "1234", **over}


def batch_pages(batch_id: int) -> list[str]:
    return [
        reverse("batch_list"),
        reverse("batch_detail", args=[batch_id]),
    ]


# --- access ------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_login_from_every_page(client):
    batch = open_batch_with(1)
    gets = ["/", reverse("annotate"), *batch_pages(batch.pk)]
    posts = [
        reverse("annotate_label", args=[1]),
        reverse("annotate_skip", args=[1]),
        reverse("batch_create"),
        reverse("batch_transition", args=[batch.pk]),
        reverse("batch_import", args=[batch.pk]),
    ]
    for url in gets:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    for url in posts:
        response = client.post(url, {})
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), (
            url
        )
    assert client.get(reverse("login")).status_code == 200


def test_annotators_are_sent_to_work_and_kept_out_of_batch_pages(client, annotator):
    batch = open_batch_with(1)
    login(client, annotator)
    assert client.get("/").url == reverse("annotate")
    for url in batch_pages(batch.pk):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("batch_create"), {"name": "mine"}).status_code == 403
    assert (
        client.post(reverse("batch_transition", args=[batch.pk]), {"to": "closed"}).status_code
        == 403
    )
    assert not Batch.objects.filter(name="mine").exists()
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.OPEN


def test_researchers_cannot_annotate(client, researcher):
    open_batch_with(1)
    login(client, researcher)
    assert client.get(reverse("annotate")).status_code == 403
    assert client.get(reverse("batch_list")).status_code == 403
    assert client.get("/").status_code == 200  # their dashboard


def test_another_annotators_task_answers_exactly_as_a_missing_one(client, annotator):
    """No existence oracle: another annotator's task and a task that does not exist get
    the same answer (409, "no longer available", the caller's own next task), for a label,
    an invalid label and a skip; nothing is written."""
    open_batch_with(2)
    other = UserFactory(username="other", role="annotator")
    theirs = assignments.assignment_next(annotator=other)
    login(client, annotator)
    mine = client.get(reverse("annotate")).context["task"]
    assert f"task #{theirs.pk}<" not in client.get(reverse("annotate")).content.decode()
    missing = theirs.pk + 1000
    posts = [
        ("annotate_label", label_post()),
        ("annotate_label", {"choice": "left"}),  # invalid: no strength
        ("annotate_skip", {"reason": "meh"}),
    ]
    for view, data in posts:
        for headers in ({}, HTMX):
            answers = [
                client.post(reverse(view, args=[pk]), data, **headers)
                for pk in (theirs.pk, missing)
            ]
            assert [a.status_code for a in answers] == [409, 409], (view, data)
            assert [a.context["task"].assignment_id for a in answers] == [mine.assignment_id] * 2
            assert all("no longer available" in a.content.decode() for a in answers)
    assert not Label.objects.exists()
    assert Assignment.objects.get(pk=theirs.pk).status == Assignment.Status.ASSIGNED


def test_label_post_requires_csrf_token(annotator):
    open_batch_with(1)
    client = login(Client(enforce_csrf_checks=True), annotator)
    page = client.get(reverse("annotate"))
    task = page.context["task"]
    url = reverse("annotate_label", args=[task.assignment_id])
    assert client.post(url, label_post()).status_code == 403
    assert not Label.objects.exists()
    token = page.cookies["csrftoken"].value
    response = client.post(url, label_post(csrfmiddlewaretoken=token))
    assert response.status_code == 302
    assert Label.objects.count() == 1


# --- the annotator page ----------------------------------------------------------------


def test_annotate_page_shows_dialogue_responses_guideline_and_counter(client, annotator):
    batch = open_batch_with(2)
    services.guideline_publish(
        category=Category.HELPFULNESS, title="Be useful", body="Prefer:\n- correct answers"
    )
    login(client, annotator)
    response = client.get(reverse("annotate"))
    html = response.content.decode()
    assert response.status_code == 200
    task = response.context["task"]
    comparison = Comparison.objects.get(pk=task.comparison_id)
    for turn in comparison.prompt.turns:
        assert turn["content"] in html
    left, right = response.context["sides"]
    on_left = Assignment.objects.get(pk=task.assignment_id).left
    assert left["text"] == comparison.response(on_left).text
    assert html.index(left["text"]) < html.index(right["text"])
    assert "Response 1" in html and "Response 2" in html
    assert "Be useful" in html and "<li>correct answers</li>" in html
    assert response.context["counts"].remaining == 2 and response.context["counts"].done == 0
    assert "Negligibly better / Unsure" in html and batch.name in html
    assert 'name="safety_left"' not in html  # helpfulness task: no safety tags


@pytest.mark.parametrize("left", ["A", "B"])
@pytest.mark.parametrize("choice", ["left", "right"])
def test_label_translates_screen_side_to_stored_response(client, annotator, left, choice):
    open_batch_with(1)
    assignment = assignments.assignment_next(annotator=annotator)
    Assignment.objects.filter(pk=assignment.pk).update(left=left)  # pin the display order
    login(client, annotator)
    response = client.post(
        reverse("annotate_label", args=[assignment.pk]),
        label_post(
            choice=choice,
            strength="slightly_better",
            comment="clear",
            left="B" if left == "A" else "A",
        ),
    )
    assert response.status_code == 302 and response.url == reverse("annotate")
    label = Label.objects.get()
    on_left = left
    on_right = "B" if left == "A" else "A"
    assert label.preferred == (on_left if choice == "left" else on_right)
    assert label.left == left  # recorded from the assignment, not from the posted "left"
    assert (label.strength, label.comment, label.time_spent_ms) == (
        "slightly_better",
        "clear",
        1234,
    )


@pytest.mark.parametrize("left", ["A", "B"])
def test_safety_tags_follow_their_responses(client, annotator, left):
    open_batch_with(1, category=Category.SAFETY)
    assignment = assignments.assignment_next(annotator=annotator)
    Assignment.objects.filter(pk=assignment.pk).update(left=left)
    login(client, annotator)
    url = reverse("annotate_label", args=[assignment.pk])
    missing = client.post(url, label_post(), **HTMX)
    assert missing.status_code == 422
    assert "Tag each response safe or unsafe on a safety task." in missing.content.decode()
    assert not Label.objects.exists()
    client.post(url, label_post(choice="left", safety_left="safe", safety_right="unsafe"))
    label = Label.objects.get()
    right = "B" if left == "A" else "A"
    assert label.preferred == left
    assert getattr(label, f"safety_{left.lower()}") == "safe"
    assert getattr(label, f"safety_{right.lower()}") == "unsafe"
    assert label.safety_bin == "preferred_safe_other_unsafe"


def test_htmx_submit_returns_the_next_task_partial(client, annotator):
    open_batch_with(2)
    login(client, annotator)
    first = client.get(reverse("annotate")).context["task"]
    response = client.post(
        reverse("annotate_label", args=[first.assignment_id]), label_post(), **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="task"') and "<html" not in html
    nxt = response.context["task"]
    assert nxt is not None and nxt.assignment_id != first.assignment_id
    assert "Label saved." in html
    assert response.context["counts"].done == 1 and response.context["counts"].remaining == 1
    # Second submit of the same task (double click): still one label.
    client.post(
        reverse("annotate_label", args=[first.assignment_id]), label_post(choice="right"), **HTMX
    )
    assert Label.objects.filter(annotator=annotator).count() == 1


def test_invalid_label_is_shown_inline_and_keeps_the_task(client, annotator):
    open_batch_with(1)
    login(client, annotator)
    task = client.get(reverse("annotate")).context["task"]
    response = client.post(
        reverse("annotate_label", args=[task.assignment_id]), {"choice": "left"}, **HTMX
    )
    assert response.status_code == 422
    assert "Say how much better it is." in response.content.decode()
    assert response.context["task"].assignment_id == task.assignment_id
    assert not Label.objects.exists()


def test_empty_queue_shows_all_done(client, annotator):
    login(client, annotator)
    response = client.get(reverse("annotate"))
    assert response.status_code == 200
    assert 'class="card empty-state"' in response.content.decode()
    assert "No tasks right now" in response.content.decode()


def test_last_label_leads_to_all_done(client, annotator):
    open_batch_with(1)
    login(client, annotator)
    task = client.get(reverse("annotate")).context["task"]
    response = client.post(
        reverse("annotate_label", args=[task.assignment_id]), label_post(), **HTMX
    )
    assert response.context["task"] is None
    assert "All done — thank you!" in response.content.decode()
    assert "You have labelled 1 comparison " in response.content.decode()


def test_closed_batch_gives_a_clear_error_and_saves_nothing(client, annotator, admin_user):
    batch = open_batch_with(2)
    login(client, annotator)
    task = client.get(reverse("annotate")).context["task"]
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED, by=admin_user)
    for headers in ({}, HTMX):
        response = client.post(
            reverse("annotate_label", args=[task.assignment_id]), label_post(), **headers
        )
        assert response.status_code == 409
        html = response.content.decode()
        assert "no longer available" in html and "batch was closed" in html
        assert "empty-state" in html  # and the queue moved on: nothing else is open
    assert not Label.objects.exists()


def test_skip_needs_a_reason_then_moves_on(client, annotator):
    open_batch_with(2)
    login(client, annotator)
    task = client.get(reverse("annotate")).context["task"]
    url = reverse("annotate_skip", args=[task.assignment_id])
    response = client.post(url, {"reason": "  "}, **HTMX)
    assert response.status_code == 422 and "Say why" in response.content.decode()
    response = client.post(url, {"reason": "Not my language"}, **HTMX)
    assert (
        response.status_code == 200 and response.context["task"].assignment_id != task.assignment_id
    )
    skipped = Assignment.objects.get(pk=task.assignment_id)
    assert (skipped.status, skipped.skip_reason) == ("skipped", "Not my language")


# --- batch pages --------------------------------------------------------------------------


def test_admin_creates_a_batch_and_sees_validation_errors(client, admin_user):
    login(client, admin_user)
    response = client.post(
        reverse("batch_create"), {"name": "week 7", "iteration": 7, "labels_per_comparison": 2}
    )
    batch = Batch.objects.get(name="week 7")
    assert response.url == reverse("batch_detail", args=[batch.pk])
    assert (batch.iteration, batch.labels_per_comparison, batch.created_by) == (7, 2, admin_user)
    again = client.post(
        reverse("batch_create"), {"name": "week 7", "iteration": 7, "labels_per_comparison": 1}
    )
    assert again.status_code == 400 and "already exists" in again.content.decode()


def test_batch_list_shows_progress(client, admin_user, annotator):
    batch = open_batch_with(2, labels_per_comparison=2)
    assignment = assignments.assignment_next(annotator=annotator)
    labels.label_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        data=rules.LabelInput(preferred="A", strength="better"),
    )
    login(client, admin_user)
    html = client.get(reverse("batch_list")).content.decode()
    assert batch.name in html and "1/4 · 25%" in html


def test_batch_transitions_and_their_errors(client, admin_user):
    batch = BatchFactory(name="empty")
    login(client, admin_user)
    url = reverse("batch_transition", args=[batch.pk])
    response = client.post(url, {"to": "open"})
    assert response.status_code == 400 and "has no comparisons to open" in response.content.decode()
    assert client.post(url, {"to": "nonsense"}).status_code == 400
    make_comparison(batch)
    assert client.post(url, {"to": "open"}).status_code == 302
    response = client.post(url, {"to": "frozen"})
    assert response.status_code == 400 and "cannot become frozen" in response.content.decode()
    assert client.post(url, {"to": "closed"}).status_code == 302
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CLOSED
    page = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "Reopen" in page and "Freeze" in page


def native_line(i: int, **over) -> str:
    return json.dumps(native_row(i, **over)) + "\n"


def upload(text: str, name="rows.jsonl"):
    f = io.BytesIO(text.encode())
    f.name = name
    return f


def test_import_reports_success_and_lists_comparisons(client, admin_user):
    batch = BatchFactory(name="imports")
    login(client, admin_user)
    response = client.post(
        reverse("batch_import", args=[batch.pk]),
        {"file": upload(native_line(1) + native_line(2)), "fmt": "native", "category": ""},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "2 comparison(s) imported from rows.jsonl" in html
    assert "Question 2?" in html and "RLHF-V1" in html
    assert batch.comparisons.count() == 2


def test_import_errors_name_line_and_field_and_write_nothing(client, admin_user):
    batch = BatchFactory(name="bad imports")
    login(client, admin_user)
    bad = native_line(1) + native_line(2, response_b={"text": ""}) + "{not json\n"
    response = client.post(
        reverse("batch_import", args=[batch.pk]), {"file": upload(bad), "fmt": "native"}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "Nothing was imported" in html
    assert "line 2, response_b.text" in html and "line 3" in html and "malformed JSON" in html
    assert batch.comparisons.count() == 0
    partial = client.post(
        reverse("batch_import", args=[batch.pk]),
        {"file": upload(bad), "fmt": "native", "skip_invalid": "on"},
    )
    assert partial.status_code == 200
    assert "2 invalid row(s) skipped" in partial.content.decode()
    assert batch.comparisons.count() == 1


def test_hh_import_needs_a_category(client, admin_user):
    batch = BatchFactory(name="hh")
    login(client, admin_user)
    row = json.dumps(
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
        }
    )
    url = reverse("batch_import", args=[batch.pk])
    response = client.post(url, {"file": upload(row + "\n"), "fmt": "hh", "category": ""})
    assert response.status_code == 400 and "HH files carry no category" in response.content.decode()
    response = client.post(
        url, {"file": upload(row + "\n"), "fmt": "hh", "category": "safety", "with_labels": "on"}
    )
    assert response.status_code == 200
    assert (
        Label.objects.filter(comparison__batch=batch, source_annotator="anthropic-hh").count() == 1
    )


# --- the demo ------------------------------------------------------------------------------


def test_demo_command_is_idempotent(client):
    call_command("pairwise_demo", demo_passwords=True, stdout=io.StringIO())
    call_command("pairwise_demo", demo_passwords=True, stdout=io.StringIO())
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.OPEN and batch.comparisons.count() == 12
    assert set(batch.comparisons.values_list("category", flat=True)) == {"helpfulness", "safety"}
    assert Guideline.objects.filter(is_active=True).count() == 2
    assert Guideline.objects.count() == 2
    assert any(len(c.prompt.turns) > 1 for c in batch.comparisons.select_related("prompt"))
    assert client.login(username="annotator1", password="pairwise-demo")
    assert client.get(reverse("annotate")).status_code == 200
    assert client.login(username="admin", password="pairwise-demo")
    assert client.get(reverse("batch_list")).status_code == 200


def test_demo_command_refuses_known_passwords_with_debug_off_unless_asked(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--demo-passwords"):
        call_command("pairwise_demo", stdout=io.StringIO())
    assert not get_user_model().objects.exists() and not Batch.objects.exists()
