"""The Quality page in headless Chromium on real judgements; takes docs/img/quality.png.

Six Pairwise annotators relabel PandaLM's test set: on each comparison three of them give
the judgements of PandaLM's three human raters (ties as *Negligibly better / Unsure*), with
strengths, times and screen sides drawn per annotator; one of them ("omar") answers a third
of his tasks at random, always on the left, fast. The page must show him drifting.

    PAIRWISE_DOCS_SCREENSHOTS=1 python -m pytest -m browser tests/browser/test_quality_page.py
"""

import os
import random
from pathlib import Path

import pytest

from annotation import services
from annotation.models import (
    AnnotatorBatchCount,
    AnnotatorPauseEvent,
    Assignment,
    Comparison,
    Label,
)
from tests.factories import BatchFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.shared_data,
    pytest.mark.django_db(transaction=True),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PAIRWISE_ARTIFACTS", REPO / "artifacts")) / "browser"
DOCS_IMG = REPO / "docs" / "img" if os.environ.get("PAIRWISE_DOCS_SCREENSHOTS") else ARTIFACTS
# name: (median seconds per label, skip share, share answered at random on the left)
ANNOTATORS = {
    "maria": (38, 0.02, 0.0),
    "kofi": (52, 0.05, 0.0),
    "wen": (29, 0.01, 0.0),
    "lena": (44, 0.08, 0.0),
    "omar": (9, 0.0, 0.35),
    "ravi": (33, 0.03, 0.0),
}
STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better_or_unsure"]


def relabel_pandalm(shared_data, n=300):
    batch = BatchFactory(name="pandalm-week-12", labels_per_comparison=3)
    path = shared_data / "pandalm-testset" / "data" / "testset-v1.json"
    with open(path, "rb") as f:
        services.comparisons_import(batch=batch, stream=f, fmt="pandalm", skip_invalid=True)
    # The pandalm importer keeps its raters' labels whatever ``with_labels`` says; here
    # Pairwise annotators give those judgements instead (the raw ones stay in metadata).
    Label.objects.filter(comparison__batch=batch).delete()
    users = [UserFactory(username=name, role="annotator") for name in ANNOTATORS]
    rng = random.Random(13)
    done = dict.fromkeys(ANNOTATORS, 0)
    for c in Comparison.objects.filter(batch=batch).order_by("id")[:n]:
        for k, user in enumerate(rng.sample(users, 3)):
            seconds, _, sloppy = ANNOTATORS[user.username]
            left = rng.choice("AB")
            value = c.metadata[f"annotator{k + 1}"]  # 0 tie, 1 response1 (A), 2 response2 (B)
            if rng.random() < sloppy:
                preferred, strength = left, rng.choice(STRENGTHS)
            elif value == 0:
                preferred, strength = left, STRENGTHS[3]
            else:
                preferred = "A" if value == 1 else "B"
                strength = rng.choices(STRENGTHS[:3] + STRENGTHS[3:], [25, 35, 30, 10])[0]
            Assignment.objects.create(
                comparison=c, annotator=user, left=left, status=Assignment.Status.LABELLED
            )
            Label.objects.create(
                comparison=c,
                annotator=user,
                preferred=preferred,
                strength=strength,
                left=left,
                time_spent_ms=int(1000 * seconds * rng.lognormvariate(0, 0.4)),
            )
            done[user.username] += 1
    # A gold record per annotator (12 checks each); omar's is below the batch's 70 %, so
    # the gold rule paused him (the counters and the audit row it writes).
    for user in users:
        skip = ANNOTATORS[user.username][1]
        n_done = done[user.username]
        correct = 5 if user.username == "omar" else rng.choice([11, 12, 12])
        AnnotatorBatchCount.objects.create(
            annotator=user,
            batch=batch,
            done=n_done,
            skipped=round(n_done * skip / (1 - skip)),
            gold_labels=12,
            gold_correct=correct,
            paused=user.username == "omar",
        )
    AnnotatorPauseEvent.objects.create(
        annotator=users[list(ANNOTATORS).index("omar")],
        batch=batch,
        paused=True,
        reason="Gold accuracy 42% (5 of 12) is below the batch's minimum of 70%.",
        gold_labels=12,
        gold_correct=5,
    )
    return batch


def test_admin_reads_the_quality_page_annotator_is_refused(live_server, browser, shared_data):
    batch = relabel_pandalm(shared_data)
    UserFactory(username="boss", role="admin")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})

    def log_in(username):
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw-for-tests-123")
        page.click("button[type=submit]")
        page.wait_for_load_state()

    log_in("boss")
    page.get_by_role("link", name="Quality").click()
    page.wait_for_url("**/quality/")
    assert "pandalm-week-12" in page.locator("h1").inner_text()
    alpha = float(page.locator("#agreement-helpfulness .stat b").first.inner_text())
    assert 0.4 < alpha < 0.95
    rows = {
        r.locator("td").first.inner_text(): r.locator("td").nth(3).inner_text()
        for r in page.locator("table.quality-annotators tbody tr").all()
    }
    assert set(rows) == set(ANNOTATORS)
    majority = {name: float(text.split("%")[0]) for name, text in rows.items()}
    assert min(majority, key=majority.get) == "omar"  # the one answering at random
    assert page.locator("svg[aria-label^='Weighted κ'] rect").count() >= 30
    omar = page.locator("table.quality-annotators tbody tr", has_text="omar")
    assert "Paused" in omar.inner_text() and "41.7%" in omar.inner_text()
    page.screenshot(path=DOCS_IMG / "quality.png", full_page=True)

    page.context.clear_cookies()
    log_in("omar")
    assert page.locator("nav >> text=Quality").count() == 0
    response = page.goto(f"{live_server.url}/quality/?batch={batch.pk}")
    assert response.status == 403
