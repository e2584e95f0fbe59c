"""The score API: a job per request, scored by a worker; the web process never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modeling import services
from modeling.models import ModelKind, ModelVersion, ScoreJob
from tests.conftest import REPO
from tests.modeling.test_services import TINY, base, frozen_batch, models_dir  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "dialogue": [{"role": "user", "content": "How do I boil an egg?"}],
    "response": "Boil it ten minutes.",
}


def post(client, model_id, body):
    return client.post(f"/api/v1/models/{model_id}/score/", body, content_type="application/json")


def test_score_api_queues_a_job_and_returns_its_scores(client, admin_user, annotator, base):  # noqa: F811
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[frozen_batch(6).pk], config=TINY
    )
    client.force_login(annotator)
    assert post(client, run.result_id, BODY).status_code == 403
    client.force_login(admin_user)

    created = post(client, run.result_id, BODY)
    assert created.status_code == 202, created.content
    job = created.json()
    assert created["Location"] == job["url"] and job["url"].endswith(
        f"/api/v1/models/score-jobs/{job['id']}/"
    )
    # Eager Celery (the test default) ran the job on commit; a real worker would later.
    done = client.get(job["url"]).json()
    assert done["status"] == "succeeded" and done["model"] == run.result_name
    assert isinstance(done["score"], float) and "scores" not in done

    many = client.get(post(client, run.result_id, {"items": [BODY, BODY]})["Location"]).json()
    assert many["scores"] == pytest.approx([done["score"]] * 2, abs=1e-5)

    assert post(client, run.result_id, {"dialogue": []}).status_code == 400
    assert post(client, run.result_id, {"items": [BODY] * 65}).status_code == 400
    refused = post(client, base.pk, BODY)
    assert refused.status_code == 400 and "not a reward model" in refused.json()["detail"]
    assert post(client, 999_999, BODY).status_code == 404
    assert client.get("/api/v1/models/score-jobs/999999/").status_code == 404


def test_a_job_on_a_folder_that_is_no_reward_model_fails_clearly(client, admin_user, base):  # noqa: F811
    # The registry says reward model, but the folder holds the base model.
    meta = f"{base.path}/pairwise.json"
    with open(meta, "w") as fh:
        json.dump({"kind": "base"}, fh)
    wrong = ModelVersion.objects.create(
        name="RM-mislabelled",
        kind=ModelKind.REWARD_HELPFULNESS,
        status=ModelVersion.Status.READY,
        path=base.path,
    )
    client.force_login(admin_user)
    job = client.get(post(client, wrong.pk, BODY)["Location"]).json()
    assert job["status"] == "failed" and "score" not in job
    assert "is a base model, not a reward model" in job["error"]
    assert ScoreJob.objects.get(pk=job["id"]).finished_at is not None


def test_jobs_are_visible_to_their_owner_only(client, admin_user, researcher, base):  # noqa: F811
    rm = ModelVersion.objects.create(
        name="RM-x", kind=ModelKind.REWARD_SAFETY, status=ModelVersion.Status.READY, path="/nowhere"
    )
    job = services.score_job_create(model=rm, items=[BODY], single=True, created_by=admin_user)
    job.refresh_from_db()
    assert job.status == ScoreJob.Status.FAILED and "does not exist" in job.error
    client.force_login(researcher)
    assert client.get(f"/api/v1/models/score-jobs/{job.pk}/").status_code == 404


# A real request, in a fresh interpreter with no eager Celery (tasks go to an in-memory
# broker): the POST and the GET must work without torch or transformers ever loading.
REQUEST_CODE = """
import os, sys
os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL="sqlite://:memory:",
                  CELERY_BROKER_URL="memory://", CELERY_TASK_ALWAYS_EAGER="false")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
from modeling.models import ModelVersion
from tests.factories import UserFactory
rm = ModelVersion.objects.create(name="RM-h", kind="reward_helpfulness", status="ready", path="/x")
client = Client()
client.force_login(UserFactory(username="boss", role="admin"))
body = {"dialogue": [{"role": "user", "content": "Hi"}], "response": "Hello"}
posted = client.post(f"/api/v1/models/{rm.pk}/score/", body, content_type="application/json")
polled = client.get(posted["Location"])
heavy = sorted(m for m in ("torch", "transformers", "accelerate") if m in sys.modules)
print("RESULT", posted.status_code, polled.status_code, polled.json()["status"], heavy)
"""


def test_score_request_path_does_not_import_torch():
    out = subprocess.run(
        [sys.executable, "-c", REQUEST_CODE], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESULT 202 200 queued []" in out.stdout, out.stdout + out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.celery_worker
def test_a_real_worker_scores_the_job(client, admin_user, tiny_base, tmp_path, celery_worker):
    from rlhf.ml.scoring import make_tiny_reward_model
    from tests.conftest import wait_for

    make_tiny_reward_model(tmp_path / "rm", tiny_base)
    rm = ModelVersion.objects.create(
        name="RM-tiny",
        kind=ModelKind.REWARD_HELPFULNESS,
        status=ModelVersion.Status.READY,
        path=str(tmp_path / "rm"),
    )
    client.force_login(admin_user)
    created = post(client, rm.pk, {"items": [BODY, BODY]})
    assert created.status_code == 202 and created.json()["status"] == "queued"
    done = wait_for(
        lambda: (
            (job := client.get(created["Location"]).json())["status"] in ("succeeded", "failed")
            and job
        ),
        timeout=120,
        interval=0.5,
    )
    assert done["status"] == "succeeded", done["error"]
    assert len(done["scores"]) == 2 and done["scores"][0] == pytest.approx(done["scores"][1])
