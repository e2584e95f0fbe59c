"""The reviewer's pages: who may see them (403 for annotators), the queue, verdicts."""

from __future__ import annotations

import pytest

from annotation.models import Batch, ReviewFlag, ReviewVerdict
from tests.annotation.test_review import disputed_batch
from tests.export.helpers import label
from tests.factories import BatchFactory, UserFactory, make_comparison

pytestmark = pytest.mark.django_db


@pytest.fixture
def raters():
    return [UserFactory(username=f"rater{i}", role="annotator") for i in range(3)]


@pytest.fixture
def reviewer():
    return UserFactory(username="rev", role="reviewer")


def pages(batch, comparison):
    return [
        "/review/",
        f"/review/batches/{batch.pk}/",
        f"/review/comparisons/{comparison.pk}/",
    ]


def test_annotators_and_researchers_never_see_the_review(client, raters, researcher):
    batch, (disputed, *_) = disputed_batch(raters)
    for user in (raters[0], researcher):
        client.force_login(user)
        for url in pages(batch, disputed):
            assert client.get(url).status_code == 403, url
        posted = client.post(
            f"/review/comparisons/{disputed.pk}/verdict/", {"verdict": "own", "reason": "x"}
        )
        assert posted.status_code == 403
        assert client.post(f"/review/batches/{batch.pk}/checks/").status_code == 403
        assert client.post(f"/models/label-checks/{batch.pk}/").status_code == 403
        assert (
            "/review/"
            not in client.get("/annotate/" if user == raters[0] else "/data/").content.decode()
        )
    assert not ReviewVerdict.objects.exists() and not ReviewFlag.objects.exists()
    client.logout()
    assert client.get("/review/").status_code == 302  # to the sign-in page


def test_reviewers_and_admins_see_labels_by_pseudonym(client, raters, reviewer, admin_user):
    batch, (disputed, *_) = disputed_batch(raters)
    first = disputed.labels.first()
    first.comment = "B is off topic"
    first.save()
    for user in (reviewer, admin_user):
        client.force_login(user)
        index = client.get("/review/").content.decode()
        assert batch.name in index and 'href="/review/"' in index
        queue = client.get(f"/review/batches/{batch.pk}/").content.decode()
        assert f"/review/comparisons/{disputed.pk}/" in queue and "Labels disagree" in queue
        page = client.get(f"/review/comparisons/{disputed.pk}/").content.decode()
        assert "B is off topic" in page and "12.0 s" in page and "ann-" in page
        assert not any(r.username in page for r in raters)
    assert client.get("/review/batches/999999/").status_code == 404
    bad = client.get(f"/review/batches/{batch.pk}/?reason=bogus")
    assert bad.status_code == 400 and b"reason: unknown value 'bogus'" in bad.content
    bad = client.get(f"/review/batches/{batch.pk}/?status=bogus")
    assert bad.status_code == 400 and b"status: unknown value 'bogus'" in bad.content


def test_a_verdict_from_the_page_goes_to_the_next_comparison(client, raters, reviewer):
    batch = BatchFactory(labels_per_comparison=2)
    disputed = []
    for _ in range(2):
        c = make_comparison(batch)
        label(c, annotator=raters[0], preferred="A")
        label(c, annotator=raters[1], preferred="B")
        disputed.append(c)
    client.force_login(reviewer)
    accepted = disputed[0].labels.get(annotator=raters[1])
    response = client.post(
        f"/review/comparisons/{disputed[0].pk}/verdict/",
        {"verdict": str(accepted.pk), "reason": "B cites its source."},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/review/comparisons/{disputed[1].pk}/"
    verdict = ReviewVerdict.objects.get()
    assert (verdict.reviewer, verdict.accepted_label, verdict.preferred) == (
        reviewer,
        accepted,
        "B",
    )
    response = client.post(
        f"/review/comparisons/{disputed[1].pk}/verdict/",
        {"verdict": "own", "preferred": "A", "strength": "slightly_better", "reason": "Close."},
    )
    assert response["Location"] == f"/review/batches/{batch.pk}/"  # none left
    history = client.get(f"/review/comparisons/{disputed[0].pk}/").content.decode()
    assert "B cites its source." in history and "rev" in history


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"verdict": "own", "preferred": "A", "strength": "better"}, "Say why"),
        ({"verdict": "own", "strength": "better", "reason": "x"}, "choose the better response"),
        ({"verdict": "nonsense", "reason": "x"}, "Choose one of the labels"),
        ({"verdict": "123456789", "reason": "x"}, "has no label 123456789"),
    ],
)
def test_a_bad_verdict_answers_400_naming_the_problem(client, raters, reviewer, data, message):
    _, (disputed, *_) = disputed_batch(raters)
    client.force_login(reviewer)
    response = client.post(f"/review/comparisons/{disputed.pk}/verdict/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ReviewVerdict.objects.exists()


def test_rule_checks_from_the_page_and_a_frozen_batch_is_read_only(client, raters, reviewer):
    batch, (disputed, *_) = disputed_batch(raters)
    client.force_login(reviewer)
    response = client.post(f"/review/batches/{batch.pk}/checks/", follow=True)
    assert "Rule checks done: 0 fast label(s)" in response.content.decode()
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.FROZEN)
    response = client.post(f"/review/batches/{batch.pk}/checks/", follow=True)
    assert "is frozen" in response.content.decode()
    page = client.get(f"/review/comparisons/{disputed.pk}/").content.decode()
    assert "its review is final" in page and "Record verdict" not in page
    refused = client.post(
        f"/review/comparisons/{disputed.pk}/verdict/",
        {"verdict": "own", "preferred": "A", "strength": "better", "reason": "x"},
    )
    assert refused.status_code == 400 and "is frozen" in refused.content.decode()


def test_the_reward_model_check_needs_a_reward_model(client, raters, reviewer):
    batch, _ = disputed_batch(raters)
    client.force_login(reviewer)
    response = client.post(f"/models/label-checks/{batch.pk}/", follow=True)
    assert "No ready reward model for helpfulness yet" in response.content.decode()
    assert client.post("/models/label-checks/999999/").status_code == 404


def test_the_audit_trail_is_read_only_in_the_admin(client, raters, reviewer):
    from annotation.review import services

    _, (disputed, *_) = disputed_batch(raters)
    verdict = services.review_verdict_record(
        comparison=disputed, reviewer=reviewer, preferred="A", strength="better", reason="A."
    )
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    assert client.get("/admin/annotation/reviewverdict/").status_code == 200
    assert client.get(f"/admin/annotation/reviewverdict/{verdict.pk}/change/").status_code == 200
    assert client.post(f"/admin/annotation/reviewverdict/{verdict.pk}/delete/").status_code == 403
    assert (
        client.post(
            f"/admin/annotation/reviewverdict/{verdict.pk}/change/",
            {"preferred": "B", "reason": "x"},
        ).status_code
        == 403
    )
    verdict.refresh_from_db()
    assert (verdict.preferred, verdict.reason) == ("A", "A.")


def test_the_queue_page_reads_in_a_fixed_number_of_queries(
    client, raters, reviewer, django_assert_max_num_queries
):
    batch, comparisons = disputed_batch(raters, n=3)
    client.force_login(reviewer)
    client.get(f"/review/batches/{batch.pk}/")  # warm the session and permission caches

    def queries_for_page():
        with django_assert_max_num_queries(20) as captured:
            assert client.get(f"/review/batches/{batch.pk}/?status=all").status_code == 200
        return len(captured)

    few = queries_for_page()
    for _ in range(10):
        c = make_comparison(batch)
        label(c, annotator=raters[0], preferred="A")
        label(c, annotator=raters[1], preferred="B")
    assert queries_for_page() == few  # no query per comparison
