"""A blind human evaluation from the browser: the admin makes one from the lineage page with
one click, an annotator labels its pairs in the normal annotator page (versions unnamed),
and the admin reads the people's win rate with its interval. Tiny local models, eager
Celery; screenshots in $PAIRWISE_ARTIFACTS/browser."""

import re

import pytest

from annotation.models import Label
from rlhf.human_evaluation import human_evaluation_result_get
from rlhf.models import HumanEvaluation, Iteration
from rlhf.settings import IterationSettings
from tests.browser.test_iteration_flow import ARTIFACTS, log_in
from tests.factories import UserFactory
from tests.rlhf.conftest import frozen_batch, rlhf_models  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_blind_evaluation_from_the_browser(live_server, browser, rlhf_models, tmp_path):  # noqa: F811
    from rlhf.ml.tiny import make_tiny_policy

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    UserFactory(username="boss", role="admin")
    UserFactory(username="ann", role="annotator")
    make_tiny_policy(tmp_path / "RLHF-V1", seed=7)
    iteration = Iteration.objects.create(
        number=1,
        status=Iteration.Status.ACCEPTED,
        config=IterationSettings.from_json({"eval_fraction": 0.5}).as_json(),
        start_policy_name="base",
        start_policy_path=str(rlhf_models["base"]),
        reward_helpfulness_path=str(rlhf_models["helpful"]),
        reward_safety_path=str(rlhf_models["safety"]),
        policy_name="RLHF-V1",
        policy_path=str(tmp_path / "RLHF-V1"),
    )
    iteration.batches.set([frozen_batch(10, "week-1")])
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # One click on the lineage page makes the blind batch.
    log_in(page, live_server.url, "boss")
    page.goto(f"{live_server.url}/rlhf/lineage/")
    with page.expect_navigation():
        page.get_by_role("button", name="People: vs base").click()
    evaluation = HumanEvaluation.objects.get()
    assert evaluation.status == HumanEvaluation.Status.OPEN, evaluation.error
    assert "No labels yet" in page.content()
    pairs = evaluation.batch.comparisons.count()
    assert pairs >= 1

    # The annotator labels every pair in the normal page; nothing names the versions.
    log_in(page, live_server.url, "ann")
    for _ in range(pairs):
        page.goto(f"{live_server.url}/annotate/")
        html = page.content()
        assert "RLHF-V1" not in html and evaluation.batch.name in html
        assignment = int(page.locator("#task").get_attribute("data-assignment"))
        if page.locator("fieldset.safety").count():
            page.keyboard.press("q")  # Response 1 safe
            page.keyboard.press("o")  # Response 2 safe
        before = Label.objects.count()
        page.keyboard.press("1")
        page.keyboard.press("s")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "pk => document.querySelector('#task') === null"
            " || document.querySelector('#task').dataset.assignment !== String(pk)",
            arg=assignment,
        )
        assert Label.objects.count() == before + 1
    assert Label.objects.filter(comparison__batch=evaluation.batch).count() == pairs

    # The admin reads the people's win rate, with its interval.
    log_in(page, live_server.url, "boss")
    page.goto(f"{live_server.url}/rlhf/evaluations/{evaluation.pk}/")
    result = human_evaluation_result_get(evaluation)
    assert result["n"] == pairs
    row = page.locator("#human-overall").inner_text()
    cells = row.split("\t") if "\t" in row else row.split()
    assert cells[0] == "All" and int(cells[1]) == pairs
    assert [int(c) for c in cells[2:5]] == [result["wins"], result["ties"], result["losses"]]
    shown = re.search(r"(\d+)%\s*\[(\d+), (\d+)\]", row)
    assert shown is not None
    assert int(shown.group(1)) == round(100 * result["win_rate"])
    page.screenshot(path=ARTIFACTS / "human-evaluation.png", full_page=True)
    page.goto(f"{live_server.url}/rlhf/lineage/")
    assert "blind evaluation #" in page.content()  # the people's column of the progress table
    assert not errors, errors
