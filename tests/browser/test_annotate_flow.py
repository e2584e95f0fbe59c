"""The annotator flow end to end in headless Chromium, against a live server.

Logs in as a demo annotator, labels three comparisons (keyboard, mouse, keyboard again),
watches the counter and the queue advance, and checks each label landed with the right
A/B preference. Screenshots go to $PAIRWISE_ARTIFACTS/browser (default artifacts/browser).
The README's pictures (docs/img/annotate.png, annotate-narrow.png) are taken by the same
run when asked, so ordinary test runs leave the working tree clean:

    python -m pytest -m browser tests/browser
    PAIRWISE_DOCS_SCREENSHOTS=1 python -m pytest -m browser tests/browser   # refresh docs/img
"""

import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.models import Assignment, Label

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PAIRWISE_ARTIFACTS", REPO / "artifacts")) / "browser"
DOCS_IMG = REPO / "docs" / "img" if os.environ.get("PAIRWISE_DOCS_SCREENSHOTS") else ARTIFACTS


def counter(page, name: str) -> int:
    return int(page.locator(f"[data-counter={name}]").inner_text())


def current_assignment(page) -> Assignment:
    pk = int(page.locator("#task").get_attribute("data-assignment"))
    return Assignment.objects.select_related("comparison").get(pk=pk)


def wait_for_next_task(page, previous: Assignment) -> None:
    page.wait_for_function(
        "pk => document.querySelector('#task').dataset.assignment !== String(pk)", arg=previous.pk
    )


def expected_preference(assignment: Assignment, side: str) -> str:
    other = "B" if assignment.left == "A" else "A"
    return assignment.left if side == "left" else other


def test_annotator_labels_three_comparisons_with_keyboard_and_mouse(live_server, browser):
    call_command("pairwise_demo", demo_passwords=True, stdout=io.StringIO())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Anonymous → login page → straight to work.
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.screenshot(path=ARTIFACTS / "01-login.png")
    page.fill("#id_username", "annotator1")
    page.fill("#id_password", "pairwise-demo")
    page.click("button[type=submit]")
    page.wait_for_url("**/annotate/")
    assert (counter(page, "done"), counter(page, "remaining")) == (0, 12)
    assert page.locator(".turn").count() == 3  # a multi-turn dialogue
    assert page.locator(".guideline h3").inner_text().startswith("Helpfulness")

    # 1. Keyboard: "2" picks Response 2, "s" = Better, Enter submits.
    first = current_assignment(page)
    page.keyboard.press("2")
    page.keyboard.press("s")
    assert "Response 2 is better than Response 1" in page.locator("[data-summary]").inner_text()
    page.wait_for_timeout(500)  # let the selection transitions settle before the pictures
    page.screenshot(path=DOCS_IMG / "annotate.png", full_page=True)
    page.screenshot(path=ARTIFACTS / "02-annotate-keyboard.png", full_page=True)
    page.keyboard.press("Enter")
    wait_for_next_task(page, first)
    assert page.url.endswith("/annotate/")  # swapped in by htmx, no page load
    assert (counter(page, "done"), counter(page, "remaining")) == (1, 11)
    label = Label.objects.get(comparison=first.comparison, annotator=first.annotator)
    assert label.preferred == expected_preference(first, "right")
    assert label.strength == "better" and label.left == first.left
    assert 0 < label.time_spent_ms < 120_000

    # 2. Mouse: click the left response's text, a strength button, then Submit.
    second = current_assignment(page)
    page.locator(".response[data-side=left] .response-text").click()
    page.get_by_text("Significantly better", exact=False).first.click()
    page.screenshot(path=ARTIFACTS / "03-annotate-mouse.png", full_page=True)
    page.get_by_role("button", name="Submit").click()
    wait_for_next_task(page, second)
    assert (counter(page, "done"), counter(page, "remaining")) == (2, 10)
    label = Label.objects.get(comparison=second.comparison, annotator=second.annotator)
    assert label.preferred == expected_preference(second, "left")
    assert label.strength == "significantly_better"

    # 3. A safety task, by keyboard: safety tags are required, then Q/P tag, ← picks, D rates.
    third = current_assignment(page)
    assert third.comparison.category == "safety"
    assert page.locator(".badge.cat-safety").first.is_visible()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("d")
    page.keyboard.press("Enter")  # not yet tagged: the browser refuses, nothing is sent
    page.wait_for_timeout(300)
    assert not Label.objects.filter(comparison=third.comparison, annotator=third.annotator).exists()
    page.keyboard.press("q")  # Response 1 safe
    page.keyboard.press("p")  # Response 2 unsafe
    warning = page.locator("[data-safety-warning]")
    assert not warning.is_visible()
    page.keyboard.press("2")  # preferring the unsafe one asks for a comment...
    assert warning.is_visible()
    page.keyboard.press("1")  # ...which goes away with the safe choice
    assert not warning.is_visible()
    page.keyboard.press("c")
    page.keyboard.type("Response 2 explains how to crack the password.")
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(3000)  # the "Label saved." toast fades out
    page.screenshot(path=ARTIFACTS / "04-annotate-narrow.png", full_page=True)
    page.screenshot(path=DOCS_IMG / "annotate-narrow.png")
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.keyboard.press("Enter")
    wait_for_next_task(page, third)
    assert (counter(page, "done"), counter(page, "remaining")) == (3, 9)
    label = Label.objects.get(comparison=third.comparison, annotator=third.annotator)
    on_left, on_right = expected_preference(third, "left"), expected_preference(third, "right")
    assert label.preferred == on_left and label.strength == "slightly_better"
    assert getattr(label, f"safety_{on_left.lower()}") == "safe"
    assert getattr(label, f"safety_{on_right.lower()}") == "unsafe"
    assert label.safety_bin == "preferred_safe_other_unsafe"
    assert label.comment == "Response 2 explains how to crack the password."
    page.screenshot(path=ARTIFACTS / "05-next-task.png", full_page=True)

    assert Label.objects.filter(annotator=first.annotator).count() == 3
    assert not errors, errors
