"""The model API names models; it never shows where their files lie on the server."""

import pytest
from rest_framework.test import APIClient

from modeling.models import ModelKind, ModelVersion, ScoreJob

pytestmark = pytest.mark.django_db


def test_researchers_see_model_names_not_server_paths(researcher, settings):
    folder = f"{settings.MODELS_DIR}/base/Base-V0"
    base = ModelVersion.objects.create(
        name="Base-V0",
        kind=ModelKind.BASE,
        status=ModelVersion.Status.READY,
        path=folder,
        tokenizer_path=folder,
        metrics={"pretraining": {"output_dir": folder, "steps": 10}, "text": {"dialogues": 3}},
    )
    ModelVersion.objects.create(
        name="RM-help-1", kind=ModelKind.REWARD_HELPFULNESS, parent=base, path="/srv/x"
    )
    ScoreJob.objects.create(
        model=base, items=[], created_by=researcher, error=f"cannot load {folder}/config.json"
    )
    client = APIClient()
    client.force_authenticate(researcher)
    resp = client.get("/api/v1/models/")
    assert resp.status_code == 200
    by_name = {m["name"]: m for m in resp.json()}
    assert by_name["RM-help-1"]["parent"] == "Base-V0"
    assert by_name["Base-V0"]["metrics"] == {"pretraining": {"steps": 10}, "text": {"dialogues": 3}}
    assert str(settings.MODELS_DIR) not in resp.content.decode()
    assert "/srv/x" not in resp.content.decode()
    job = client.get(f"/api/v1/models/score-jobs/{ScoreJob.objects.get().pk}/").json()
    assert job["error"] == "cannot load …/base/Base-V0/config.json"
