"""A review end to end in headless Chromium: a reviewer opens the queue, reads a disputed
comparison's labels (by pseudonym, with time and comment), records a verdict of their own
with a reason, and lands on the next one; the verdict is in the audit trail and the export.
An annotator is refused the review pages (403).

Screenshots go to $PAIRWISE_ARTIFACTS/browser (default artifacts/browser); with
PAIRWISE_DOCS_SCREENSHOTS=1 the review page's picture refreshes docs/img/review.png.
"""

import os
from pathlib import Path

import pytest

from annotation.models import ReviewFlag, ReviewVerdict
from tests.export.helpers import label
from tests.factories import BatchFactory, UserFactory, make_comparison

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PAIRWISE_ARTIFACTS", REPO / "artifacts")) / "browser"
DOCS_IMG = REPO / "docs" / "img" if os.environ.get("PAIRWISE_DOCS_SCREENSHOTS") else ARTIFACTS


def sign_in(page, url, username):
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-for-tests-123")
    page.click("button[type=submit]")


def test_a_reviewer_adjudicates_a_disputed_comparison(live_server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    raters = [UserFactory(username=f"rater{i}", role="annotator") for i in range(3)]
    UserFactory(username="reviewer", role="reviewer")
    batch = BatchFactory(name="week-7", labels_per_comparison=3)
    disputed = []
    for i in range(2):
        c = make_comparison(batch)
        label(c, annotator=raters[0], preferred="A", strength="better", time_spent_ms=31_000)
        label(c, annotator=raters[1], preferred="B", strength="slightly_better",
              comment="A is vague about the time" if i == 0 else "", time_spent_ms=2_500)  # fmt: skip
        label(c, annotator=raters[2], preferred="A", strength="significantly_better")
        disputed.append(c)
    quick = disputed[0].labels.get(annotator=raters[1])
    ReviewFlag.objects.create(
        batch=batch, comparison=disputed[0], label=quick, annotator=raters[1], reason="fast",
        detail="2.5 s, against this annotator's median of 30.0 s in the batch (8%)",
    )  # fmt: skip

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # An annotator: no Review link, and the pages answer 403.
    sign_in(page, live_server.url, "rater0")
    assert page.get_by_role("link", name="Review").count() == 0
    assert page.goto(f"{live_server.url}/review/").status == 403
    assert page.goto(f"{live_server.url}/review/comparisons/{disputed[0].pk}/").status == 403
    page.context.clear_cookies()

    sign_in(page, live_server.url, "reviewer")
    page.get_by_role("link", name="Review").click()
    page.get_by_role("link", name="week-7").click()
    assert page.locator(".review-queue tbody tr").count() == 2
    page.screenshot(path=ARTIFACTS / "review-queue.png", full_page=True)
    page.locator(".review-queue tbody tr").first.get_by_role("link").first.click()

    labels = page.locator(".review-labels tbody tr")
    assert labels.count() == 4  # three labels, one flag under the fast one
    text = page.locator("#labels").inner_text()
    assert "A is vague about the time" in text and "31.0 s" in text and "2.5 s" in text
    assert "ann-" in text and not any(f"rater{i}" in text for i in range(3))
    assert "much faster than the annotator's median" in text.lower()
    page.screenshot(path=DOCS_IMG / "review.png", full_page=True)

    # Nothing chosen: the form says what is missing and records nothing.
    page.fill("#verdict-reason", "Both readings are defensible; A is more complete.")
    page.get_by_role("button", name="Record verdict").click()
    assert "Accept a label or give your own" in page.locator("#verdict").inner_text()
    assert not ReviewVerdict.objects.exists()

    page.locator("input[name=verdict][value=own]").check()
    page.select_option("select[name=preferred]", "A")
    page.select_option("select[name=strength]", "slightly_better")
    page.get_by_role("button", name="Record verdict").click()
    page.wait_for_url(f"**/review/comparisons/{disputed[1].pk}/")
    assert "recorded" in page.locator(".messages").inner_text()

    verdict = ReviewVerdict.objects.get()
    assert (verdict.comparison_id, verdict.decision, verdict.preferred, verdict.strength) == (
        disputed[0].pk, "adjudicate", "A", "slightly_better",
    )  # fmt: skip
    assert verdict.reviewer.username == "reviewer" and "more complete" in verdict.reason

    page.goto(f"{live_server.url}/review/comparisons/{disputed[0].pk}/")
    trail = page.locator("#history").inner_text()
    assert "reviewer" in trail and "A is more complete" in trail and "stands" in trail.lower()
    page.goto(f"{live_server.url}/review/batches/{batch.pk}/")
    assert page.locator(".review-queue tbody tr").count() == 1  # one left to review
    assert errors == []
