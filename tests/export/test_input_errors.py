"""Snapshots: dates at the end of the calendar and files removed from the server are 4xx."""

import shutil

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from annotation.export import services
from annotation.models import Snapshot
from tests.export.helpers import labelled_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _snapshots_dir(settings, tmp_path):
    settings.SNAPSHOTS_DIR = tmp_path / "snapshots"


@pytest.mark.parametrize("field", ["date_from", "date_to"])
def test_the_last_date_of_the_calendar_is_a_400_naming_the_field(client, researcher, field):
    # The day after 9999-12-31, which bounds date_to, does not exist (was an OverflowError).
    client.force_login(researcher)
    page = client.post("/data/snapshots/", {field: "9999-12-31"})
    assert page.status_code == 400
    assert "Must be a date before 9999-12-31" in page.content.decode()
    api = APIClient()
    api.force_authenticate(researcher)
    answer = api.post("/api/v1/data/snapshots/", {field: "9999-12-31"}, format="json")
    assert answer.status_code == 400
    assert field in answer.json().get("errors", answer.json())
    assert not Snapshot.objects.exists()
    ok = api.post("/api/v1/data/snapshots/", {field: "9999-12-30"}, format="json")
    assert ok.status_code == 201, ok.content


@pytest.mark.parametrize("field", ["name", "batches"])
def test_text_a_database_cannot_store_is_a_400_naming_the_field(client, researcher, field):
    value = "week\u00001" if field == "name" else ["week\u00001"]
    client.force_login(researcher)
    page = client.post("/data/snapshots/", {field: value})
    assert page.status_code == 400 and "contains a NUL character" in page.content.decode()
    api = APIClient()
    api.force_authenticate(researcher)
    answer = api.post("/api/v1/data/snapshots/", {field: value}, format="json")
    assert answer.status_code == 400
    assert any(key.startswith(field) for key in answer.json().get("errors", answer.json()))
    lone = "week\ud8001"  # a lone surrogate, as JSON's \ud800 escape gives it
    with pytest.raises(ValidationError) as refused:
        services.snapshot_request(
            filters={"batches": [lone]} if field == "batches" else {},
            name=lone if field == "name" else "",
        )
    assert field in refused.value.message_dict
    assert not Snapshot.objects.exists()


def test_removed_snapshot_files_are_410_without_server_paths(client, researcher, settings):
    labelled_data()
    snapshot = services.snapshot_request(filters={}, created_by=researcher)
    folder = services.snapshot_directory(snapshot)
    (folder / "labels.jsonl").unlink()  # one file gone: no partial archive either
    api = APIClient()
    api.force_authenticate(researcher)
    client.force_login(researcher)
    urls = [f"/snapshots/{snapshot.pk}/archive.tar", f"/snapshots/{snapshot.pk}/files/labels.jsonl"]
    for url in urls:
        for answer in (api.get(f"/api/v1/data{url}"), client.get(f"/data{url}")):
            assert answer.status_code == 410, url
            assert not answer.streaming
            text = answer.content.decode()
            assert "files are missing on the server" in text and "rebuild" in text
            assert str(settings.SNAPSHOTS_DIR) not in text
    # Creating it again puts the file back, for every snapshot of that content.
    again = services.snapshot_request(filters={}, created_by=researcher)
    assert again.content_hash == snapshot.content_hash
    archive = api.get(f"/api/v1/data{urls[0]}")
    assert archive.status_code == 200 and b"".join(archive.streaming_content)
    shutil.rmtree(folder)  # the whole folder gone
    assert api.get(f"/api/v1/data{urls[0]}").status_code == 410
    assert client.get(f"/data{urls[1]}").status_code == 410
