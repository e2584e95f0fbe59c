"""Quality control on the queue's side (docs/annotation.md, "Quality control"): gold
checks mixed into the work at the batch's rate, the pause rule, adaptive overlap, the
uncertainty order, and what annotators never see."""

import hashlib
import json
import random

import pytest
from django.core.exceptions import ValidationError
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import selectors, services
from annotation.domain import Strength, labels_disagree
from annotation.gold import selectors as gold_selectors
from annotation.gold import services as gold_services
from annotation.models import (
    AnnotatorBatchCount,
    AnnotatorPauseEvent,
    Assignment,
    Batch,
    Comparison,
    GoldComparison,
    Label,
    ReviewVerdict,
)
from annotation.queue import assignments, labels, pauses, reads, rules
from tests.factories import BatchFactory, UserFactory, make_comparison, open_batch_with

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def bulk_comparisons(batch, n: int, *, tag: str) -> None:
    """``n`` more comparisons in ``batch``, copies of one made the slow way."""
    template = make_comparison(batch)
    Comparison.objects.bulk_create(
        Comparison(
            batch=batch,
            prompt_id=template.prompt_id,
            response_a_id=template.response_a_id,
            response_b_id=template.response_b_id,
            category=template.category,
            content_hash=hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(),
        )
        for i in range(n - 1)
    )


def gold_pool(n: int, *, preferred: str = "A", **kw) -> list[GoldComparison]:
    """``n`` gold comparisons from a draft batch of their own."""
    source = BatchFactory(name=f"gold-source-{random.random()}")
    return [
        gold_services.gold_mark(comparison=make_comparison(source), preferred=preferred, **kw)
        for _ in range(n)
    ]


def answer(task, annotator, *, preferred="A", strength=Strength.BETTER):
    data = rules.LabelInput(preferred=preferred, strength=strength)
    return labels.label_submit_and_next(
        assignment_id=task.assignment_id, annotator=annotator, data=data
    )[2]


def is_gold(task) -> bool:
    return Comparison.objects.get(pk=task.comparison_id).is_gold


# --- gold checks in the queue -----------------------------------------------------------


def test_gold_checks_come_at_the_batch_rate_over_many_draws(annotator):
    random.seed(20261201)
    batch = open_batch_with(1)
    bulk_comparisons(batch, 1200, tag="mix")
    gold_pool(150)
    gold_services.batch_quality_update(batch=batch, gold_rate=0.1, gold_min_accuracy=0.0)
    assert Comparison.objects.filter(batch=batch, is_gold=True).count() == 150
    tasks, gold = 0, 0
    task = assignments.task_next(annotator=annotator)
    while task is not None and tasks < 1000:
        tasks += 1
        gold += is_gold(task)
        task = answer(task, annotator)
    assert tasks == 1000
    # Binomial(1000, 0.1): mean 100, sd 9.5; ±35 is beyond 3.5 sd.
    assert 65 <= gold <= 135, gold
    counts = AnnotatorBatchCount.objects.get(annotator=annotator, batch=batch)
    assert counts.gold_labels == gold and counts.gold_correct == gold
    assert counts.done == 1000  # gold checks count as work done: no tell in the counter


def test_no_gold_at_rate_zero_and_none_once_the_batch_own_work_is_done(annotator, monkeypatch):
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)  # always asks for gold
    batch = open_batch_with(2)
    gold_pool(5)
    task = assignments.task_next(annotator=annotator)
    assert not is_gold(task)  # gold_rate 0: never
    gold_services.batch_quality_update(batch=batch, gold_rate=0.5, gold_min_accuracy=0.0)
    seen = []
    while task is not None:
        seen.append(is_gold(task))
        task = answer(task, annotator)
    # Gold while the batch has work for them; when its own work is done, nothing (gold
    # alone is no work), though three gold checks are still unseen.
    assert seen.count(False) == 2 and seen.count(True) >= 1
    assert seen[-1] is False


def test_each_gold_check_goes_to_every_annotator_once(monkeypatch):
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    batch = open_batch_with(10, labels_per_comparison=3)
    gold_pool(2)
    gold_services.batch_quality_update(batch=batch, gold_rate=0.5, gold_min_accuracy=0.0)
    for _ in range(3):
        annotator = UserFactory(role="annotator")
        got = []
        task = assignments.task_next(annotator=annotator)
        while task is not None:
            got.append(task.comparison_id)
            task = answer(task, annotator)
        gold_ids = [c for c in got if Comparison.objects.get(pk=c).is_gold]
        assert len(gold_ids) == len(set(gold_ids)) == 2  # no overlap limit on gold


def test_a_gold_task_looks_like_any_other(annotator, monkeypatch):
    batch = open_batch_with(3)
    gold_pool(1)
    gold_services.batch_quality_update(batch=batch, gold_rate=0.5)
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.99)
    plain = assignments.task_next(annotator=annotator)
    client = client_for(annotator)
    plain_body = client.get("/api/v1/tasks/next/").json()
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    nxt = client.post(
        f"/api/v1/tasks/{plain.assignment_id}/label-and-next/",
        {"preferred": "A", "strength": "better"},
        format="json",
    ).json()["next"]
    assert Comparison.objects.get(pk=nxt["comparison_id"]).is_gold
    assert set(nxt) == set(plain_body) and set(nxt["batch"]) == set(plain_body["batch"])
    assert nxt["batch"] == {"id": batch.pk, "name": batch.name}  # the batch it is mixed into
    assert "gold" not in json.dumps(nxt).lower()
    page = client_for(annotator)
    page.force_login(annotator)
    html = page.get("/annotate/").content.decode()
    assert "gold" not in html.lower()
    # Their own labels list says nothing of gold either.
    own = client.get("/api/v1/labels/").json()
    assert "gold" not in json.dumps(own).lower()


def test_gold_accuracy_counts_side_and_minimum_strength(annotator, monkeypatch):
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    batch = open_batch_with(6)
    gold_pool(2, preferred="B", min_strength=Strength.BETTER)
    gold_services.batch_quality_update(batch=batch, gold_rate=0.5, gold_min_accuracy=0.0)
    task = assignments.task_next(annotator=annotator)
    replies = iter([("B", Strength.SIGNIFICANTLY_BETTER), ("B", Strength.SLIGHTLY_BETTER)])
    while task is not None:
        if is_gold(task):
            preferred, strength = next(replies)
            task = answer(task, annotator, preferred=preferred, strength=strength)
        else:
            task = answer(task, annotator)
    row = gold_selectors.annotator_gold_list(batch_ids=[batch.pk])[0]
    assert (row.gold_labels, row.gold_correct, row.accuracy) == (2, 1, 0.5)


# --- the pause rule ------------------------------------------------------------------------


def test_annotator_below_the_gold_threshold_is_paused_with_a_reason(
    annotator, admin_user, monkeypatch
):
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    batch = open_batch_with(20)
    gold_pool(6, preferred="A")
    gold_services.batch_quality_update(
        batch=batch, gold_rate=0.5, gold_min_accuracy=0.7, gold_min_items=3
    )
    task = assignments.task_next(annotator=annotator)
    wrong = 0
    while task is not None and wrong < 2:
        assert is_gold(task)  # draw 0: gold first while there is some
        task = answer(task, annotator, preferred="B")  # wrong
        wrong += 1
    # Two wrong of two: below 70 %, but fewer than the 3 the rule waits for.
    assert not AnnotatorBatchCount.objects.get(annotator=annotator, batch=batch).paused
    assert task is not None
    task = answer(task, annotator, preferred="B")  # third wrong: 0/3
    assert task is None  # paused: the batch hands them nothing (and nothing else is open)
    count = AnnotatorBatchCount.objects.get(annotator=annotator, batch=batch)
    assert count.paused and (count.gold_labels, count.gold_correct) == (3, 0)
    event = AnnotatorPauseEvent.objects.get(annotator=annotator, batch=batch)
    assert event.paused and event.by is None and "0/3" in event.reason and "70 %" in event.reason
    assert not Assignment.objects.filter(annotator=annotator, status="assigned").exists()
    # The annotator is told, on the API and the page; the admin sees why.
    client = client_for(annotator)
    got = client.get("/api/v1/tasks/next/")
    assert got.status_code == 403
    assert got.json()["paused"][0]["batch"] == batch.name
    assert "0/3" in got.json()["detail"]
    client.force_login(annotator)
    html = client.get("/annotate/").content.decode()
    assert "You are paused" in html and batch.name in html
    rows = client_for(admin_user).get(f"/api/v1/batches/{batch.pk}/annotators/").json()
    assert rows[0]["paused"] and "0/3" in rows[0]["reason"] and rows[0]["decided_by"] is None
    # An admin resumes them, saying why: recorded; the rule counts afresh.
    resumed = client_for(admin_user).post(
        f"/api/v1/batches/{batch.pk}/annotators/{annotator.pk}/resume/",
        {"reason": "Retrained on the guidelines"},
        format="json",
    )
    assert resumed.status_code == 200 and resumed.json()["by"] == admin_user.username
    assert assignments.task_next(annotator=annotator) is not None
    count.refresh_from_db()
    assert not count.paused and count.gold_labels == 3 and count.gold_labels_since_resume == 0
    assert list(
        AnnotatorPauseEvent.objects.filter(batch=batch).values_list("paused", "by__username")
    ) == [(True, None), (False, admin_user.username)]


@pytest.mark.parametrize(("right", "paused"), [(2, False), (1, True)])
def test_the_threshold_is_a_fraction_not_rounded(annotator, monkeypatch, right, paused):
    """2 of 3 right is above a 0.6 threshold, 1 of 3 below it."""
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    batch = open_batch_with(10)
    gold_pool(3, preferred="A")
    gold_services.batch_quality_update(
        batch=batch, gold_rate=0.5, gold_min_accuracy=0.6, gold_min_items=3
    )
    replies = iter(["A"] * right + ["B"] * (3 - right))
    task = assignments.task_next(annotator=annotator)
    for _ in range(3):
        assert is_gold(task)
        task = answer(task, annotator, preferred=next(replies))
    assert AnnotatorBatchCount.objects.get(annotator=annotator, batch=batch).paused is paused


def test_admin_pause_needs_a_reason_and_releases_tasks_in_hand(annotator, admin_user):
    batch = open_batch_with(3)
    assert assignments.task_next(annotator=annotator) is not None
    with pytest.raises(ValidationError) as exc:
        pauses.annotator_pause(annotator=annotator, batch=batch, by=admin_user, reason="  ")
    assert "reason" in exc.value.message_dict
    pauses.annotator_pause(annotator=annotator, batch=batch, by=admin_user, reason="Spot checks")
    assert not Assignment.objects.filter(annotator=annotator).exists()
    assert set(Comparison.objects.filter(batch=batch).values_list("claims", flat=True)) == {0}
    assert reads.annotator_counts(annotator).remaining == 0  # paused work is not remaining
    with pytest.raises(ValidationError, match="already paused"):
        pauses.annotator_pause(annotator=annotator, batch=batch, by=admin_user, reason="again")


# --- adaptive overlap ----------------------------------------------------------------------


def label_round(batch, replies):
    """One annotator per reply labels the batch's only comparison; returns who got it."""
    got = []
    for preferred, strength in replies:
        annotator = UserFactory(role="annotator")
        task = assignments.task_next(annotator=annotator)
        got.append(task is not None)
        if task is not None:
            answer(task, annotator, preferred=preferred, strength=strength)
    return got


@pytest.mark.parametrize(
    ("replies", "labelled"),
    [
        # Agreement: stop at the base overlap (2).
        ([("A", Strength.BETTER), ("A", Strength.SIGNIFICANTLY_BETTER), ("A", Strength.BETTER)], 2),
        # Different sides: one more, still split: one more, then the maximum (4).
        (
            [("A", Strength.BETTER), ("B", Strength.BETTER), ("A", Strength.BETTER)]
            + [("A", Strength.BETTER), ("A", Strength.BETTER)],
            4,
        ),
        # One unsure: one more; the third agrees, but the unsure stays among the labels.
        (
            [("A", Strength.NEGLIGIBLY_BETTER_OR_UNSURE), ("A", Strength.BETTER)]
            + [("A", Strength.BETTER), ("A", Strength.BETTER), ("A", Strength.BETTER)],
            4,
        ),
    ],
)
def test_adaptive_overlap_asks_for_one_more_label_while_labels_disagree(replies, labelled):
    batch = open_batch_with(1, labels_per_comparison=2)
    gold_services.batch_quality_update(batch=batch, labels_per_comparison_max=4)
    got = label_round(batch, replies)
    assert got == [True] * labelled + [False] * (len(replies) - labelled)
    comparison = Comparison.objects.get(batch=batch)
    assert comparison.labels.count() == labelled
    assert comparison.extra_labels == labelled - 2
    # The SQL rule and the plain one agree on these labels.
    pairs = list(comparison.labels.values_list("preferred", "strength"))
    assert labels_disagree(pairs[:2]) == (labelled > 2)
    progress = selectors.batch_progress(Batch.objects.get(pk=batch.pk))
    assert progress.labels_wanted == labelled and progress.labels == labelled
    assert progress.remaining == 0


def test_without_a_maximum_disagreement_stops_at_the_base_overlap():
    batch = open_batch_with(1, labels_per_comparison=2)
    got = label_round(
        batch, [("A", Strength.BETTER), ("B", Strength.BETTER), ("A", Strength.BETTER)]
    )
    assert got == [True, True, False]
    assert Comparison.objects.get(batch=batch).extra_labels == 0


def test_remaining_counts_include_the_label_adaptive_overlap_asked_for():
    batch = open_batch_with(1, labels_per_comparison=2)
    gold_services.batch_quality_update(batch=batch, labels_per_comparison_max=3)
    label_round(batch, [("A", Strength.BETTER), ("B", Strength.BETTER)])
    newcomer = UserFactory(role="annotator")
    assert reads.annotator_counts(newcomer).remaining == 1
    body = client_for(UserFactory(username="boss2", role="admin")).get(
        f"/api/v1/batches/{batch.pk}/"
    )
    assert body.json()["progress"]["labels_wanted"] == 3


# --- queue order by uncertainty -------------------------------------------------------------


def test_uncertainty_order_hands_out_the_highest_priority_first(annotator):
    batch = open_batch_with(5)
    ids = list(Comparison.objects.filter(batch=batch).order_by("id").values_list("id", flat=True))
    gold_services.batch_quality_update(batch=batch, queue_order=Batch.QueueOrder.MARGIN)
    scores = {ids[0]: 0.1, ids[1]: 0.9, ids[2]: 0.5, ids[3]: 0.7}  # ids[4]: not scored
    assert gold_services.comparison_priorities_set(batch=batch, priorities=scores, source="t") == 4
    order = []
    task = assignments.task_next(annotator=annotator)
    while task is not None:
        order.append(task.comparison_id)
        task = answer(task, annotator)
    assert order == [ids[1], ids[3], ids[2], ids[0], ids[4]]
    # Back to arrival order: priorities go back to 0.
    gold_services.batch_quality_update(batch=batch, queue_order=Batch.QueueOrder.ARRIVAL)
    assert set(Comparison.objects.filter(batch=batch).values_list("priority", flat=True)) == {0.0}


def test_priorities_are_ignored_for_a_batch_in_arrival_order():
    batch = open_batch_with(2)
    first = Comparison.objects.filter(batch=batch).first()
    assert (
        gold_services.comparison_priorities_set(batch=batch, priorities={first.pk: 1.0}, source="t")
        == 0
    )
    assert Comparison.objects.get(pk=first.pk).priority == 0.0


# --- marking gold, and what is refused ------------------------------------------------------


def test_gold_contradicting_its_own_review_or_labels_is_refused(admin_user):
    source = BatchFactory()
    reviewed = make_comparison(source)
    ReviewVerdict.objects.create(
        comparison=reviewed, reviewer=admin_user, decision="adjudicate", preferred="B", reason="x"
    )
    with pytest.raises(ValidationError) as exc:
        gold_services.gold_mark(comparison=reviewed, preferred="A", by=admin_user)
    assert "contradicts its review verdict" in exc.value.message_dict["preferred"][0]
    assert gold_services.gold_mark(comparison=reviewed, preferred="B", by=admin_user).pk
    labelled = make_comparison(source)
    Label.objects.create(comparison=labelled, source_annotator="r1", preferred="A")
    with pytest.raises(ValidationError, match="contradicts all its labels"):
        gold_services.gold_mark(comparison=labelled, preferred="B")
    with pytest.raises(ValidationError, match="already gold"):
        gold_services.gold_mark(comparison=reviewed, preferred="B")
    assert GoldComparison.objects.count() == 1


def test_evaluation_batches_take_no_gold():
    batch = BatchFactory(purpose=Batch.Purpose.EVALUATION)
    with pytest.raises(ValidationError) as exc:
        gold_services.batch_quality_update(batch=batch, gold_rate=0.1)
    assert "evaluation" in exc.value.message_dict["gold_rate"][0]
    with pytest.raises(ValidationError, match="evaluation batch"):
        gold_services.gold_mark(comparison=make_comparison(batch), preferred="A")


def test_bad_settings_are_refused_by_field_and_nothing_changes():
    batch = open_batch_with(1, labels_per_comparison=2)
    with pytest.raises(ValidationError) as exc:
        gold_services.batch_quality_update(
            batch=batch, gold_rate=0.9, labels_per_comparison_max=2, queue_order="loudest"
        )
    assert set(exc.value.message_dict) == {"gold_rate", "labels_per_comparison_max", "queue_order"}
    batch.refresh_from_db()
    assert (batch.gold_rate, batch.labels_per_comparison_max, batch.queue_order) == (
        0.0,
        None,
        "arrival",
    )


def test_gold_labels_never_train_and_are_marked_in_exports(
    annotator, monkeypatch, tmp_path, settings
):
    from annotation.export import formats
    from annotation.export import services as export_services
    from annotation.export.selectors import SnapshotFilters

    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    batch = open_batch_with(2)
    gold_pool(1)
    gold_services.batch_quality_update(batch=batch, gold_rate=0.5, gold_min_accuracy=0.0)
    task = assignments.task_next(annotator=annotator)
    while task is not None:
        task = answer(task, annotator)
    assert Label.objects.filter(comparison__batch=batch).count() == 3
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    assert len(selectors.preference_pairs_frozen(batch_ids=[batch.pk])) == 2
    settings.SNAPSHOTS_DIR = tmp_path / "snapshots"
    result = export_services.snapshot_build_files(
        filters=SnapshotFilters.from_dict({"batches": [batch.name]}), work_dir=tmp_path / "x"
    )
    full = [json.loads(x) for x in (result.directory / formats.FULL_JSONL).read_text().splitlines()]
    assert sorted(r["gold_check"] for r in full) == [False, False, True]
    pairwise = (result.directory / formats.PAIRWISE_JSONL).read_text().splitlines()
    hh = (result.directory / formats.HH_JSONL).read_text().splitlines()
    assert len(pairwise) == len(hh) == 2


# --- permissions ----------------------------------------------------------------------------


def test_annotators_never_reach_gold_answers_or_others_records(annotator):
    batch = open_batch_with(1)
    gold = gold_pool(1)[0]
    client = client_for(annotator)
    for method, url in [
        ("get", "/api/v1/gold/"),
        ("post", "/api/v1/gold/"),
        ("patch", f"/api/v1/batches/{batch.pk}/quality/"),
        ("get", f"/api/v1/batches/{batch.pk}/annotators/"),
        ("get", f"/api/v1/batches/{batch.pk}/pause-events/"),
        ("post", f"/api/v1/batches/{batch.pk}/annotators/{annotator.pk}/resume/"),
        ("post", f"/api/v1/batches/{batch.pk}/priorities/"),
        ("get", f"/api/v1/comparisons/?batch={gold.comparison.batch_id}"),
    ]:
        got = getattr(client, method)(url, {}, format="json")
        assert got.status_code == 403, (method, url, got.status_code)
    client.force_login(annotator)
    assert client.get(f"/batches/{batch.pk}/quality/").status_code == 403
    assert client.post(f"/batches/{batch.pk}/quality/gold/", {}).status_code == 403


def test_admin_marks_gold_and_sets_the_batch_through_the_api(admin_user):
    batch = open_batch_with(2)
    source = BatchFactory()
    comparison = make_comparison(source)
    client = client_for(admin_user)
    got = client.post(
        "/api/v1/gold/", {"comparison": comparison.pk, "preferred": "A"}, format="json"
    )
    assert got.status_code == 201 and got.json()["checks"] == 0
    settings_got = client.patch(
        f"/api/v1/batches/{batch.pk}/quality/",
        {"gold_rate": 0.05, "labels_per_comparison_max": 3, "queue_order": "ensemble"},
        format="json",
    )
    assert settings_got.status_code == 200, settings_got.json()
    assert (
        settings_got.json()["gold_rate"] == 0.05
        and settings_got.json()["queue_order"] == "ensemble"
    )
    assert client.get("/api/v1/gold/").json()[0]["checks"] == 1
    bad = client.patch(f"/api/v1/batches/{batch.pk}/quality/", {"gold_rate": 2}, format="json")
    assert bad.status_code == 400 and "gold_rate" in bad.json()["errors"]
    client.force_login(admin_user)
    page = client.get(f"/batches/{batch.pk}/quality/")
    assert page.status_code == 200 and "Gold comparisons" in page.content.decode()


def test_label_and_next_says_why_there_is_no_next_task(annotator, monkeypatch):
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    batch = open_batch_with(5)
    gold_pool(1, preferred="A")
    gold_services.batch_quality_update(
        batch=batch, gold_rate=0.5, gold_min_accuracy=0.5, gold_min_items=1
    )
    client = client_for(annotator)
    task = client.get("/api/v1/tasks/next/").json()
    assert Comparison.objects.get(pk=task["comparison_id"]).is_gold
    got = client.post(
        f"/api/v1/tasks/{task['assignment_id']}/label-and-next/",
        {"preferred": "B", "strength": "better"},
        format="json",
    )
    assert got.status_code == 201
    body = got.json()
    assert body["next"] is None
    assert [p["batch"] for p in body["paused"]] == [batch.name]
    assert "0/1" in body["paused"][0]["reason"]
