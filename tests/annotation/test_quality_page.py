"""The Quality page: admins only, per-annotator figures and agreement from real labels."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import (
    AnnotatorBatchCount,
    AnnotatorPauseEvent,
    Assignment,
    Comparison,
    GoldComparison,
    Label,
)
from annotation.quality import selectors
from tests.factories import BatchFactory, UserFactory, make_comparison

pytestmark = pytest.mark.django_db

STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better_or_unsure"]


def labelled_batch(n=30):
    """Three annotators on every comparison: ann0 and ann1 agree, ann2 mostly contradicts
    them and always picks the left response; every label took ann<i> (i+1)·2 seconds."""
    batch = BatchFactory(name="week-quality", labels_per_comparison=3)
    users = [UserFactory(username=f"ann{i}", role="annotator") for i in range(3)]
    for j in range(n):
        comparison = make_comparison(batch)
        truth = "A" if j % 3 else "B"
        for i, user in enumerate(users):
            preferred = truth if i < 2 or j % 5 == 0 else ("B" if truth == "A" else "A")
            left = preferred if i == 2 else ("A" if j % 2 else "B")
            Assignment.objects.create(
                comparison=comparison, annotator=user, left=left, status=Assignment.Status.LABELLED
            )
            Label.objects.create(
                comparison=comparison,
                annotator=user,
                preferred=preferred,
                strength=STRENGTHS[(j + i) % 3],
                left=left,
                time_spent_ms=(i + 1) * 2000,
            )
    for i, user in enumerate(users):
        AnnotatorBatchCount.objects.create(
            annotator=user,
            batch=batch,
            done=n,
            skipped=i * 10,
            gold_labels=10,
            gold_correct=10 - 3 * i,
            paused=i == 2,
        )
    AnnotatorPauseEvent.objects.create(
        annotator=users[2], batch=batch, paused=True, reason="gold accuracy 40% below 70%"
    )
    return batch, users


def test_annotators_and_researchers_get_403_anonymous_logs_in(client, annotator, researcher):
    batch, _ = labelled_batch(3)
    for user in (annotator, researcher):
        client.force_login(user)
        assert client.get("/quality/").status_code == 403
        assert client.get(f"/quality/?batch={batch.pk}").status_code == 403
        home = client.get("/").content.decode()
        assert 'href="/quality/"' not in home  # no link in the nav either
    client.logout()
    response = client.get("/quality/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_admin_sees_agreement_kappa_matrix_and_annotator_figures(client, admin_user):
    batch, _ = labelled_batch()
    client.force_login(admin_user)
    page = client.get(f"/quality/?batch={batch.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/quality/"' in html and 'aria-current="page">Quality' in html
    assert "week-quality" in html and "Weighted κ, helpfulness" in html
    assert "Agreement with the majority of the others" in html and html.count("<svg") >= 3
    quality = selectors.batch_quality(batch.pk)
    ((_, report),) = quality.by_category
    assert (
        f"<b>{report.alpha_signed:.2f}</b>" in html and f"<b>{report.alpha_binary:.2f}</b>" in html
    )
    by = {a.name: a for a in quality.annotators}
    assert by["ann0"].majority_rate == 1.0 and by["ann2"].majority_rate == pytest.approx(6 / 30)
    assert by["ann1"].median_seconds == 4.0 and by["ann2"].left_choice_rate == 1.0
    assert by["ann0"].skip_rate == 0 and by["ann2"].skip_rate == pytest.approx(20 / 50)
    kappa = {(k.rater_a, k.rater_b): k.kappa for k in report.kappas}
    assert kappa[("ann0", "ann1")] > kappa[("ann0", "ann2")]
    assert "40%" in html and "100.0%" in html and "20.0%" in html
    assert (by["ann0"].gold_accuracy, by["ann2"].gold_accuracy) == (1.0, 0.4)
    assert (by["ann1"].paused, by["ann2"].paused) == (False, True)
    assert "Paused" in html and "gold accuracy 40% below 70%" in html and "Active" in html
    # Review counts (annotation.review): the comparisons on which ann2 went the other way.
    review = page.context["review"]
    # No label here is unsure, so the review's disputes (both sides) and the agreement's
    # disagreements (both sides, or unsure) are the same comparisons: j % 5 != 0.
    assert review.disagreements == report.disagreements == 24
    assert f"<b>{review.needs_review}</b><span>need review</span>" in html


def test_gold_checks_stay_out_of_agreement(admin_user):
    batch, users = labelled_batch(6)
    gold = make_comparison(BatchFactory())
    GoldComparison.objects.create(comparison=gold, preferred="A", created_by=admin_user)
    check = make_comparison(batch)
    Comparison.objects.filter(pk=check.pk).update(is_gold=True, gold=gold.gold_standard)
    check.refresh_from_db()
    for user in users:
        Label.objects.create(comparison=check, annotator=user, preferred="B", strength="better")
    rows = selectors.batch_label_rows(batch.pk)
    assert len(rows) == 18 and check.pk not in {r.comparison_id for r in rows}


def test_reviewers_without_manage_rights_get_403(client):
    reviewer = UserFactory(username="rev", role="reviewer")
    client.force_login(reviewer)
    assert client.get("/quality/").status_code == 403


def test_default_batch_is_the_one_labelled_last_and_a_bad_batch_is_404(client, admin_user):
    BatchFactory(name="empty-later")
    batch, _ = labelled_batch(3)
    BatchFactory(name="newest-empty")
    client.force_login(admin_user)
    html = client.get("/quality/").content.decode()
    assert "Quality · week-quality" in html
    assert client.get("/quality/?batch=abc").status_code == 404
    assert client.get("/quality/?batch=999999").status_code == 404
    empty = client.get(reverse("quality:index") + "?batch=" + str(batch.pk - 1)).content.decode()
    assert "No labels in" in empty


def test_quality_page_reads_a_fixed_number_of_queries(client, admin_user):
    """As many queries for three annotators and 10 comparisons as for six and 40."""
    small, _ = labelled_batch(10)
    client.force_login(admin_user)
    client.get(f"/quality/?batch={small.pk}")
    with CaptureQueriesContext(connection) as few:
        assert client.get(f"/quality/?batch={small.pk}").status_code == 200
    big = BatchFactory(labels_per_comparison=3)
    users = [UserFactory(username=f"more{i}", role="annotator") for i in range(6)]
    for j in range(40):
        comparison = make_comparison(big)
        for user in users[j % 4 : j % 4 + 3]:
            Label.objects.create(comparison=comparison, annotator=user, preferred="AB"[j % 2])
    for user in users:
        AnnotatorBatchCount.objects.create(annotator=user, batch=big, done=20, skipped=1)
    with CaptureQueriesContext(connection) as many:
        assert client.get(f"/quality/?batch={big.pk}").status_code == 200
    assert len(many) == len(few) <= 14


def test_each_category_has_its_own_agreement_and_the_batch_page_links_here(client, admin_user):
    batch = BatchFactory(labels_per_comparison=2)
    users = [UserFactory(username=f"cat{i}", role="annotator") for i in range(2)]
    for j in range(8):
        comparison = make_comparison(batch, category="safety" if j % 2 else "helpfulness")
        for i, user in enumerate(users):
            # They agree on every helpfulness comparison and split on half the safety ones.
            side = "B" if i and comparison.category == "safety" and j % 4 == 1 else "A"
            Label.objects.create(
                comparison=comparison, annotator=user, preferred=side, strength="better"
            )
    by = dict(selectors.batch_quality(batch.pk).by_category)
    assert list(by) == ["helpfulness", "safety"]
    assert (by["helpfulness"].disagreements, by["safety"].disagreements) == (0, 2)
    assert by["helpfulness"].alpha_binary is None  # all "A": no variation to agree on
    assert by["safety"].alpha_binary is not None and by["safety"].alpha_binary < 0.5
    client.force_login(admin_user)
    html = client.get(f"/quality/?batch={batch.pk}").content.decode()
    assert "Agreement · Helpfulness" in html and "Agreement · Safety" in html
    detail = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert f'href="/quality/?batch={batch.pk}"' in detail
