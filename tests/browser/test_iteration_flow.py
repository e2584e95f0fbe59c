"""Two weekly iterations of the loop driven from the browser, in headless Chromium.

An admin launches iteration 1 from the RLHF page (rejection sampling then PPO on a frozen
week of labels), follows it to RLHF-V1 and its next batch; an annotator labels a response
pair that RLHF-V1 wrote; the admin closes and freezes that batch and launches iteration 2
(PPO) on both weeks, which starts from RLHF-V1; the lineage page shows the chain.
Celery runs eagerly here (the worker path has its own tests), so each launch answers when
its iteration is done. Tiny local models; screenshots in $PAIRWISE_ARTIFACTS/browser.
"""

import os
from pathlib import Path

import pytest

from annotation.models import Assignment, Batch, Label
from rlhf.models import Iteration
from tests.factories import UserFactory
from tests.rlhf.conftest import frozen_batch, rlhf_models  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PAIRWISE_ARTIFACTS", REPO / "artifacts")) / "browser"
PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory
ITERATION_TIMEOUT_MS = 600_000


def log_in(page, url: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def launch(page, url: str, models: dict, *, batches: list[str], method: str) -> Iteration:
    page.goto(f"{url}/rlhf/")
    for name in batches:
        page.get_by_label(name, exact=True).check()
    page.select_option("#id_method", method)
    for field, value in {
        "rs_num_samples": "2",
        "ppo_steps": "2",
        "max_prompts": "8",
        "next_batch_prompts": "3",
        "accept_min_win_rate": "0",
        "reward_helpfulness_path": str(models["helpful"]),
        "reward_safety_path": str(models["safety"]),
    }.items():
        page.fill(f"#id_{field}", value)
    with page.expect_navigation(timeout=ITERATION_TIMEOUT_MS):
        page.get_by_role("button", name="Launch").click()
    assert "/rlhf/iterations/" in page.url
    return Iteration.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))


def test_two_iterations_from_the_browser(live_server, browser, rlhf_models):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    UserFactory(username="boss", role="admin")
    UserFactory(username="ann", role="annotator")
    frozen_batch(6, "week-1")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # "Freeze …? Its data becomes immutable."

    # Week 1: rejection sampling, then PPO → RLHF-V1 and the next batch to annotate.
    log_in(page, live_server.url, "boss")
    first = launch(page, live_server.url, rlhf_models, batches=["week-1"], method="both")
    assert first.status == Iteration.Status.ACCEPTED, first.error
    assert "RLHF-V1" in page.content() and page.locator("svg").count() >= 1
    assert set(first.stages.values_list("status", flat=True)) == {"done"}
    page.screenshot(path=ARTIFACTS / "iteration-1.png", full_page=True)
    nxt = first.next_batch
    assert nxt.status == Batch.Status.OPEN

    # An annotator labels a pair that RLHF-V1 wrote.
    log_in(page, live_server.url, "ann")
    page.goto(f"{live_server.url}/annotate/")
    assignment = Assignment.objects.select_related("comparison").get(
        pk=int(page.locator("#task").get_attribute("data-assignment"))
    )
    if assignment.comparison.category == "safety":
        page.keyboard.press("q")  # Response 1 safe
        page.keyboard.press("o")  # Response 2 safe
    page.keyboard.press("1")
    page.keyboard.press("s")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "pk => document.querySelector('#task') === null"
        " || document.querySelector('#task').dataset.assignment !== String(pk)",
        arg=assignment.pk,
    )
    label = Label.objects.select_related("comparison__response_a").get(annotator__username="ann")
    assert label.comparison.batch_id == nxt.pk
    assert label.comparison.response_a.model_version == "RLHF-V1"

    # The admin closes and freezes that week from its batch page.
    log_in(page, live_server.url, "boss")
    page.goto(f"{live_server.url}/batches/{nxt.pk}/")
    page.get_by_role("button", name="Close").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Freeze").click()
    page.wait_for_load_state()
    nxt.refresh_from_db()
    assert nxt.status == Batch.Status.FROZEN and nxt.freeze_hash

    # Week 2: PPO on both weeks, from RLHF-V1.
    second = launch(page, live_server.url, rlhf_models, batches=["week-1", nxt.name], method="ppo")
    assert second.status == Iteration.Status.ACCEPTED, second.error
    assert second.start_policy_name == "RLHF-V1" and second.policy_name == "RLHF-V2"
    page.screenshot(path=ARTIFACTS / "iteration-2.png", full_page=True)
    page.goto(f"{live_server.url}/rlhf/lineage/")
    lineage = page.content()
    assert "RLHF-V1" in lineage and "RLHF-V2" in lineage
    page.screenshot(path=ARTIFACTS / "lineage.png", full_page=True)
    assert not errors, errors


def test_three_methods_from_one_parent_side_by_side(live_server, browser, rlhf_models):  # noqa: F811
    """The README's walkthrough: on one frozen batch, rejection sampling, then DPO and GRPO
    from the same parent (picked in the form), compared on the lineage page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    docs_img = REPO / "docs" / "img"
    UserFactory(username="boss", role="admin")
    frozen_batch(8, "week-1")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server.url, "boss")

    first = launch(
        page, live_server.url, rlhf_models, batches=["week-1"], method="rejection_sampling"
    )
    assert first.status == Iteration.Status.ACCEPTED, first.error

    # DPO from the form, from the same parent as RLHF-V1 (not from RLHF-V1, the current one).
    page.goto(f"{live_server.url}/rlhf/")
    page.get_by_label("week-1", exact=True).check()
    page.select_option("#id_method", "dpo")
    page.select_option("#id_parent", first.start_policy_name)
    assert page.get_by_text("the human pairs of the frozen batches directly").is_visible()
    page.select_option("#id_dpo_loss_type", "ipo")
    page.fill("#id_dpo_beta", "0.2")
    for field, value in {
        "max_prompts": "8",
        "next_batch_prompts": "3",
        "accept_min_win_rate": "0",
        "reward_helpfulness_path": str(rlhf_models["helpful"]),
        "reward_safety_path": str(rlhf_models["safety"]),
        "extra_settings": '{"dpo": {"epochs": 2, "batch_size": 2}}',
    }.items():
        page.fill(f"#id_{field}", value)
    page.add_style_tag(content=".topbar { position: static !important; }")  # not over the shot
    page.locator("#launch").screenshot(path=docs_img / "launch-methods.png")
    with page.expect_navigation(timeout=ITERATION_TIMEOUT_MS):
        page.get_by_role("button", name="Launch").click()
    dpo = Iteration.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert dpo.status == Iteration.Status.ACCEPTED, dpo.error
    assert dpo.method == "dpo" and dpo.start_policy_name == first.start_policy_name
    assert dpo.config["dpo"] == {**dpo.config["dpo"], "loss_type": "ipo", "beta": 0.2, "epochs": 2}
    assert page.get_by_text("DPO: implicit rewards per step").count() >= 1  # its chart
    page.screenshot(path=ARTIFACTS / "dpo-iteration.png", full_page=True)

    page.goto(f"{live_server.url}/rlhf/")
    page.get_by_label("week-1", exact=True).check()
    page.select_option("#id_method", "grpo")
    page.select_option("#id_parent", first.start_policy_name)
    for field, value in {
        "grpo_group_size": "2",
        "grpo_steps": "2",
        "max_prompts": "8",
        "next_batch_prompts": "3",
        "accept_min_win_rate": "0",
        "reward_helpfulness_path": str(rlhf_models["helpful"]),
        "reward_safety_path": str(rlhf_models["safety"]),
    }.items():
        page.fill(f"#id_{field}", value)
    with page.expect_navigation(timeout=ITERATION_TIMEOUT_MS):
        page.get_by_role("button", name="Launch").click()
    grpo = Iteration.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert grpo.status == Iteration.Status.ACCEPTED, grpo.error
    assert grpo.start_policy_name == first.start_policy_name

    page.goto(f"{live_server.url}/rlhf/lineage/")
    group = page.locator("#siblings-1")
    assert "Methods side by side" in group.inner_text()
    rows = group.locator("tbody tr")
    assert rows.count() == 3
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
        "Rejection sampling",
        "DPO",
        "GRPO",
    ]
    group.screenshot(path=docs_img / "methods-side-by-side.png")
    assert not errors, errors
