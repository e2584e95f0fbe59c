"""Integers beyond their columns are a 400 naming the field, on the page and in the API."""

import pytest
from rest_framework.test import APIClient

from annotation.columns import INTEGER_MAX
from annotation.models import Batch

pytestmark = pytest.mark.django_db


def test_batch_iteration_beyond_its_column_is_a_400(client, admin_user):
    api = APIClient()
    api.force_authenticate(admin_user)
    answer = api.post(
        "/api/v1/batches/", {"name": "week 9", "iteration": INTEGER_MAX + 1}, format="json"
    )
    assert answer.status_code == 400
    assert "iteration" in answer.json().get("errors", answer.json())
    client.force_login(admin_user)
    page = client.post("/batches/new/", {"name": "week 9", "iteration": INTEGER_MAX + 1})
    assert page.status_code == 400
    assert f"less than or equal to {INTEGER_MAX}" in page.content.decode()
    assert not Batch.objects.exists()
    # The largest value the column holds is a valid iteration, on every database.
    made = api.post("/api/v1/batches/", {"name": "week 9", "iteration": INTEGER_MAX}, format="json")
    assert made.status_code == 201, made.content
    assert Batch.objects.get().iteration == INTEGER_MAX


def test_launch_with_a_batch_id_beyond_the_id_column_is_a_400(admin_user):
    api = APIClient()
    api.force_authenticate(admin_user)
    answer = api.post("/api/v1/rlhf/iterations/", {"batch_ids": [2**63]}, format="json")
    assert answer.status_code == 400
    assert "batch_ids" in str(answer.json())


def test_batches_beyond_the_id_column_in_launch_forms_are_refused(client, admin_user):
    # SQLite cannot bind such an integer at all: Django's own field made it a 500 there.
    client.force_login(admin_user)
    launch = client.post("/rlhf/iterations/launch/", {"batches": [str(2**63)], "method": "both"})
    assert launch.status_code == 400
    assert f"{2**63} is not one of the available choices" in launch.content.decode()
    train = client.post(
        "/models/train/", {"batches": ["9" * 30], "kind": "helpfulness"}, follow=True
    )
    assert train.status_code == 200
    assert f"{'9' * 30} is not one of the available choices" in train.content.decode()
