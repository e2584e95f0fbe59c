"""Live annotation in headless Chromium: an annotator reads the two generated responses,
writes the ideal one instead, and it becomes a demonstration (what SFT trains on) and the
dialogue's next turn. Tiny local models; eager Celery; screenshot in
$PAIRWISE_ARTIFACTS/browser."""

import os
from pathlib import Path

import pytest

from annotation.models import Demonstration
from rlhf.models import LiveSession
from tests.factories import UserFactory
from tests.rlhf.conftest import rlhf_models  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PAIRWISE_ARTIFACTS", REPO / "artifacts")) / "browser"
PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory


def test_an_annotator_writes_the_ideal_response_in_live_annotation(
    live_server,
    browser,
    rlhf_models,  # noqa: F811
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    UserFactory(username="ann", role="annotator")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ann")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()

    page.goto(f"{live_server.url}/rlhf/live/")
    page.fill("#live-prompt", "how do i boil an egg")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("text=Choose and continue")
    page.get_by_text("Neither is what you would want? Write the ideal response").click()
    page.fill("#live-demonstration", "put the egg in boiling water for nine minutes")
    page.screenshot(path=ARTIFACTS / "live-demonstration.png", full_page=True)
    page.get_by_role("button", name="Save as a demonstration and continue").click()
    page.wait_for_load_state()

    demonstration = Demonstration.objects.get()
    assert demonstration.response == "put the egg in boiling water for nine minutes"
    assert demonstration.written_by.username == "ann" and demonstration.source == "live"
    assert demonstration.prompt.turns[-1]["content"] == "how do i boil an egg"
    session = LiveSession.objects.get()
    assert session.turns[-1] == {
        "role": "assistant",
        "content": "put the egg in boiling water for nine minutes",
    }
    assert "put the egg in boiling water for nine minutes" in page.content()
    assert not errors, errors
