"""PostgreSQL's label-and-next in one round trip (``statements.label_and_next_function``).

The function runs the statements the separate path runs; these tests hold it to the
separate path's results (the same stored label and next task for the same judgement),
check that it writes only the plain case and leaves everything else to the separate
statements, that a request in production opens no transaction of its own, that adaptive
overlap stays exact under concurrent annotators, and that a database without the
function still labels.
"""

import threading
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from annotation.domain import Category, Strength
from annotation.gold import services as gold_services
from annotation.models import AnnotatorBatchCount, Assignment, Batch, Comparison, Label
from annotation.queue import assignments, labels, rules, statements
from tests.factories import BatchFactory, UserFactory, make_comparison, open_batch_with

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

STORED = (
    "preferred",
    "strength",
    "safety_a",
    "safety_b",
    "safety_bin",
    "comment",
    "left",
    "time_spent_ms",
    "idempotency_key",
)


def separate_statements(monkeypatch) -> None:
    """Make ``label_submit_and_next`` take the separate statements, as without the function."""
    monkeypatch.setattr(labels, "_function_missing", lambda: True)


def stored(label: Label) -> dict:
    return {name: getattr(label, name) for name in STORED}


JUDGEMENTS = [
    rules.ShownLabelInput(preferred_side="left", strength="better", time_spent_ms=1200),
    rules.ShownLabelInput(
        preferred_side="right",
        strength="negligibly_better_or_unsure",
        safety_left="unsafe",
        safety_right="safe",
        comment="  both fine ",
        time_spent_ms=5,
        idempotency_key="k-1",
    ),
    rules.LabelInput(
        preferred="B",
        strength="significantly_better",
        safety_a="safe",
        safety_b="safe",
        time_spent_ms=0,
    ),
]


@pytest.mark.parametrize("category", [Category.HELPFULNESS, Category.SAFETY])
@pytest.mark.parametrize("judgement", JUDGEMENTS, ids=["shown", "shown-safety", "stored"])
@pytest.mark.parametrize("left", ["A", "B"])
def test_one_call_stores_what_the_separate_statements_store(monkeypatch, category, judgement, left):
    """The same judgement on the same kind of task, through the function and through the
    separate statements: the same stored columns, the same answer, the same next task."""
    if category == Category.SAFETY and judgement is JUDGEMENTS[0]:
        judgement = rules.ShownLabelInput(
            preferred_side="left",
            strength="better",
            safety_left="safe",
            safety_right="safe",
            time_spent_ms=1200,
        )
    results = []
    for path in ("function", "separate"):
        annotator = UserFactory(role="annotator")
        open_batch_with(2, category=category)
        task = assignments.task_next(annotator=annotator)
        Assignment.objects.filter(pk=task.assignment_id).update(left=left)
        with monkeypatch.context() as patched:
            if path == "separate":
                separate_statements(patched)
            with CaptureQueriesContext(connection) as queries:
                label, created, following = labels.label_submit_and_next(
                    assignment_id=task.assignment_id, annotator=annotator, data=judgement
                )
        ran = [q["sql"].split("(")[0] for q in queries.captured_queries]
        assert ("EXECUTE pairwise_label_and_next" in ran) == (path == "function"), ran
        assert created
        assert stored(label) == stored(Label.objects.get(pk=label.pk))
        assert label.comparison.batch_id == task.batch_id
        assert Assignment.objects.get(pk=task.assignment_id).status == Assignment.Status.LABELLED
        assert following is not None and following.assignment_id != task.assignment_id
        shown = asdict(following)
        assert following.turns == list(
            Comparison.objects.get(pk=following.comparison_id).prompt.turns
        )
        for key in ("assignment_id", "comparison_id", "batch_id", "batch_name", "assigned_at"):
            shown.pop(key)
        shown.pop("turns")  # the factory numbers each dialogue
        shown["left"], shown["right"] = None, None  # the next order is drawn per assignment
        results.append((stored(label), shown))
    assert results[0] == results[1]
    assert results[0][1]["counts"] == {
        "done": 1,
        "remaining": 1,
        "remaining_capped": False,
        "skipped": 0,
    }


def test_time_spent_defaults_to_the_time_since_the_task_was_handed_out(annotator):
    open_batch_with(2)
    task = assignments.task_next(annotator=annotator)
    Assignment.objects.filter(pk=task.assignment_id).update(
        assigned_at=task.assigned_at - timedelta(seconds=7)
    )
    label, _, _ = labels.label_submit_and_next(
        assignment_id=task.assignment_id,
        annotator=annotator,
        data=rules.ShownLabelInput(preferred_side="left", strength="better"),
    )
    assert 7000 <= Label.objects.get(pk=label.pk).time_spent_ms < 17000
    assert label.time_spent_ms == Label.objects.get(pk=label.pk).time_spent_ms


def _function_writes(assignment_id: int, annotator, data) -> bool:
    """Call the function directly: whether it wrote the label."""
    variants = labels._stored_variants(data)
    assert variants is not None
    params = labels.label_and_next_params(
        assignment_id, annotator, data, variants, now=timezone.now()
    )
    with transaction.atomic():
        return labels._call(statements.label_and_next_function()[2], params)[0]


def test_the_function_writes_only_the_plain_case(annotator):
    """Anything but the annotator's own assigned, valid, non-gold task in an open batch:
    the function changes nothing and the separate statements answer."""
    other = UserFactory(role="annotator")
    batch = open_batch_with(6, category=Category.SAFETY)
    plain = rules.ShownLabelInput(
        preferred_side="left", strength="better", safety_left="safe", safety_right="safe"
    )
    untagged = rules.ShownLabelInput(preferred_side="left", strength="better")
    task = assignments.task_next(annotator=annotator)
    theirs = assignments.task_next(annotator=other)
    assert not _function_writes(theirs.assignment_id, annotator, plain)  # another's
    assert not _function_writes(10**9, annotator, plain)  # missing
    assert not _function_writes(task.assignment_id, annotator, untagged)  # invalid here
    assert Label.objects.count() == 0
    assert Assignment.objects.get(pk=task.assignment_id).status == Assignment.Status.ASSIGNED
    assert _function_writes(task.assignment_id, annotator, plain)
    assert not _function_writes(task.assignment_id, annotator, plain)  # a repeat
    assert Label.objects.count() == 1
    skipped = assignments.task_next(annotator=annotator)
    assignments.assignment_skip(
        assignment_id=skipped.assignment_id, annotator=annotator, reason="x"
    )
    assert not _function_writes(skipped.assignment_id, annotator, plain)  # skipped
    held = assignments.task_next(annotator=annotator)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.CLOSED)
    assert not _function_writes(held.assignment_id, annotator, plain)  # batch not open
    assert Label.objects.count() == 1


def test_a_gold_check_is_left_to_the_separate_statements(annotator, monkeypatch):
    """Gold checks: the function leaves them (the pause rule is Python's); the separate
    statements label them and apply the rule."""
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)  # a gold check when one is due
    batch = open_batch_with(3)
    gold_services.gold_mark(comparison=make_comparison(BatchFactory()), preferred="A")
    gold_services.batch_quality_update(
        batch=batch, gold_rate=0.5, gold_min_accuracy=0.9, gold_min_items=1
    )
    task = assignments.task_next(annotator=annotator)
    assert Comparison.objects.get(pk=task.comparison_id).is_gold
    wrong = rules.LabelInput(preferred="B", strength=Strength.BETTER)
    assert not _function_writes(task.assignment_id, annotator, wrong)
    assert Label.objects.count() == 0
    _, created, following = labels.label_submit_and_next(
        assignment_id=task.assignment_id, annotator=annotator, data=wrong
    )
    assert created and following is None  # paused by the rule: one gold check, wrong
    counts = AnnotatorBatchCount.objects.get(annotator=annotator, batch=batch)
    assert (counts.paused, counts.gold_labels, counts.gold_correct) == (True, 1, 0)


@pytest.mark.django_db(transaction=True)
def test_a_label_request_in_production_is_two_statements_and_no_transaction(monkeypatch):
    """Outside a test's transaction (as under gunicorn): the token read and one call,
    each its own transaction; Django opens no transaction for the label."""
    annotator = UserFactory(role="annotator")
    open_batch_with(3)
    services.guideline_publish(category=Category.HELPFULNESS, title="Be useful", body="Help.")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    task = api.get("/api/v1/tasks/next/").json()
    api.post(
        f"/api/v1/tasks/{task['assignment_id']}/label-and-next/",
        {"preferred_side": "left", "strength": "better"},
        format="json",
    )
    task = api.get("/api/v1/tasks/next/").json()
    entered = []
    original = transaction.Atomic.__enter__

    def spy(self):
        entered.append(self)
        return original(self)

    monkeypatch.setattr(transaction.Atomic, "__enter__", spy)
    with CaptureQueriesContext(connection) as queries:
        answer = api.post(
            f"/api/v1/tasks/{task['assignment_id']}/label-and-next/",
            {"preferred_side": "right", "strength": "slightly_better"},
            format="json",
        )
    assert answer.status_code == 201, answer.content
    assert answer.json()["label"]["preferred_side"] == "right"
    assert answer.json()["next"]["counts"]["done"] == 2
    assert [q["sql"].split("(")[0] for q in queries.captured_queries] == [
        "EXECUTE pairwise_token",
        "EXECUTE pairwise_label_and_next",
    ]
    assert entered == []
    assert not connection.in_atomic_block


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["function", "separate"])
def test_adaptive_overlap_stays_exact_with_concurrent_annotators(monkeypatch, path):
    """Eight annotators at once on batches of four comparisons that want two labels each
    and a third when those two disagree: the two labels of a comparison are written at
    the same moment, by annotators who pick sides by parity. Five batches in turn. Each
    comparison ends with exactly the labels it asked for, a third exactly when its first
    two disagree (so the second writer saw the first: the comparison's lock), claims
    matching assignments, no label lost or doubled. Through the function, and through
    the separate statements it stands in for."""
    if path == "separate":
        separate_statements(monkeypatch)
    users = [UserFactory(role="annotator") for _ in range(8)]
    errors: list[str] = []

    def work(index, user, barrier=None):
        try:
            if barrier is not None:
                barrier.wait()
            task = assignments.task_next(annotator=user)
            while task is not None:
                _, created, task = labels.label_submit_and_next(
                    assignment_id=task.assignment_id,
                    annotator=user,
                    data=rules.LabelInput(preferred="AB"[index % 2], strength=Strength.BETTER),
                )
                if not created:
                    errors.append(f"{user.username}: not created")
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))
        finally:
            close_old_connections()
            connection.close()

    extended = 0
    for _ in range(5):
        batch = open_batch_with(4, labels_per_comparison=2)
        Batch.objects.filter(pk=batch.pk).update(labels_per_comparison_max=3)
        barrier = threading.Barrier(len(users))
        threads = [threading.Thread(target=work, args=(i, u, barrier)) for i, u in enumerate(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # An annotator who found the queue empty stopped; a slot freed later by a
        # third-label request is taken now, one at a time.
        for index, user in enumerate(users):
            alone = threading.Thread(target=work, args=(index, user))
            alone.start()
            alone.join(timeout=60)
        assert not errors, errors
        for comparison in Comparison.objects.filter(batch=batch):
            sides = list(comparison.labels.order_by("id").values_list("preferred", flat=True))
            first_two_disagree = len(set(sides[:2])) > 1
            assert comparison.extra_labels == int(first_two_disagree), (comparison.pk, sides)
            assert len(sides) == 2 + comparison.extra_labels, (comparison.pk, sides)
            live = comparison.assignments.exclude(status=Assignment.Status.SKIPPED).count()
            assert comparison.claims == live - comparison.extra_labels
            extended += comparison.extra_labels
        services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    assert 0 < extended < 20  # both outcomes happened
    assert Label.objects.count() == Assignment.objects.filter(status="labelled").count()


@pytest.mark.django_db(transaction=True)
def test_a_database_without_the_function_still_labels(caplog):
    """Code newer than the database's migrate: the call fails alone, the connection stops
    asking, and the separate statements label."""
    annotator = UserFactory(role="annotator")
    open_batch_with(3)
    name = statements.label_and_next_function()[0]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP FUNCTION {name}")
    connection.close()  # a new connection: nothing prepared
    try:
        task = assignments.task_next(annotator=annotator)
        label, created, following = labels.label_submit_and_next(
            assignment_id=task.assignment_id,
            annotator=annotator,
            data=rules.ShownLabelInput(preferred_side="left", strength="better"),
        )
        assert created and following is not None
        assert Label.objects.filter(pk=label.pk).exists()
        assert "label-and-next function is missing" in caplog.text
        with CaptureQueriesContext(connection) as queries:
            labels.label_submit_and_next(
                assignment_id=following.assignment_id,
                annotator=annotator,
                data=rules.ShownLabelInput(preferred_side="left", strength="better"),
            )
        assert "EXECUTE pairwise_label_and_next" not in str(queries.captured_queries)
    finally:
        assert labels.label_and_next_install() == name
        connection.close()
