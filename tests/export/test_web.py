"""The Data page, the snapshot API, downloads, permissions and the management commands."""

import io
import json
import tarfile

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from annotation.models import Comparison, Label, Snapshot
from tests.export.helpers import labelled_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _snapshots_dir(settings, tmp_path):
    settings.SNAPSHOTS_DIR = tmp_path / "snapshots"


def test_data_page_shows_distributions_and_snapshots(client, researcher):
    labelled_data()
    client.force_login(researcher)
    page = client.get("/data/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html and "Labels by strength, per batch" in html and "week-1" in html
    assert "Preferred safe, other unsafe" in html


def test_researcher_creates_views_and_downloads(client, researcher):
    labelled_data()
    client.force_login(researcher)
    response = client.post("/data/snapshots/", {"categories": ["helpfulness"], "name": "help only"})
    snapshot = Snapshot.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/data/snapshots/{snapshot.pk}/"
    detail = client.get(response["Location"]).content.decode()
    assert snapshot.content_hash in detail and "labels.jsonl" in detail and "help only" in detail
    file = client.get(f"/data/snapshots/{snapshot.pk}/files/pairwise.jsonl")
    assert file.status_code == 200 and file.streaming
    assert len(b"".join(file.streaming_content).splitlines()) == 12
    archive = client.get(f"/data/snapshots/{snapshot.pk}/archive.tar")
    assert archive.streaming
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive.streaming_content))) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames()]
    assert "manifest.json" in names and "labels.parquet" in names
    assert client.get(f"/data/snapshots/{snapshot.pk}/files/..%2Fsecret").status_code == 404
    # htmx polling gets just the partial
    partial = client.get(f"/data/snapshots/{snapshot.pk}/", headers={"HX-Request": "true"})
    assert "<html" not in partial.content.decode()


def test_empty_selection_gives_a_clear_message_not_an_error(client, researcher):
    labelled_data()
    client.force_login(researcher)
    response = client.post(
        "/data/snapshots/", {"date_from": "1990-01-01", "date_to": "1990-01-02"}, follow=True
    )
    assert response.status_code == 200
    assert "No labels match these filters" in response.content.decode()


def test_bad_filter_rerenders_the_form_with_the_error(client, researcher):
    client.force_login(researcher)
    response = client.post("/data/snapshots/", {"min_agreement": "7"})
    assert response.status_code == 400 and "between 0 and 1" in response.content.decode()
    assert not Snapshot.objects.exists()


def test_annotators_get_403_and_anonymous_users_log_in(client, annotator, researcher):
    labelled_data()
    client.force_login(researcher)
    client.post("/data/snapshots/", {})
    snapshot = Snapshot.objects.get()
    client.logout()
    urls = [
        "/data/",
        f"/data/snapshots/{snapshot.pk}/",
        f"/data/snapshots/{snapshot.pk}/archive.tar",
        f"/data/snapshots/{snapshot.pk}/files/labels.jsonl",
    ]
    for url in urls:
        assert (
            client.get(url).status_code == 302 and "/accounts/login/" in client.get(url)["Location"]
        )
    client.force_login(annotator)
    for url in urls:
        assert client.get(url).status_code == 403, url
    assert client.post("/data/snapshots/", {}).status_code == 403
    api = APIClient()
    api.force_authenticate(annotator)
    assert api.get("/api/v1/data/snapshots/").status_code == 403
    assert api.post("/api/v1/data/snapshots/", {}, format="json").status_code == 403
    assert api.get(f"/api/v1/data/snapshots/{snapshot.pk}/archive.tar").status_code == 403
    assert Snapshot.objects.count() == 1
    assert APIClient().get("/api/v1/data/snapshots/").status_code in (401, 403)


def test_api_create_detail_and_download(admin_user):
    labelled_data()
    api = APIClient()
    api.force_authenticate(admin_user)
    created = api.post(
        "/api/v1/data/snapshots/", {"batches": ["week-2"], "min_annotators": 1}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["label_count"] == 4 and body["manifest"]["counts"]["per_batch"] == {"week-2": 4}
    detail = api.get(body["url"]).json()
    assert detail["content_hash"] == body["content_hash"]
    file = api.get(f"/api/v1/data/snapshots/{body['id']}/files/comparisons.jsonl")
    assert file.status_code == 200 and len(b"".join(file.streaming_content).splitlines()) == 4
    empty = api.post("/api/v1/data/snapshots/", {"date_to": "1990-01-01"}, format="json").json()
    assert empty["empty"] and "No labels match" in empty["message"]
    bad = api.post("/api/v1/data/snapshots/", {"categories": ["fun"]}, format="json")
    assert bad.status_code == 400 and "categories" in bad.json()["errors"]


def test_export_command_prints_manifest_and_copies_files(tmp_path, capsys):
    labelled_data()
    call_command("pairwise_export", "--category", "safety", "--out", str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert '"per_category": {\n      "safety": 4' in out
    assert (tmp_path / "out" / "labels.jsonl").read_text().count("\n") == 4
    with pytest.raises(CommandError, match="strengths"):
        call_command("pairwise_export", "--strength", "huge")


def test_import_command_reports_and_all_or_nothing(tmp_path, capsys):
    good = tmp_path / "pairs.jsonl"
    rows = [
        {
            "prompt": "Q1?",
            "chosen": "Yes",
            "rejected": "No",
            "margin": 1.0,
            "category": "helpfulness",
        },
        {"prompt": "Q2?", "chosen": "Yes", "rejected": "No", "category": "safety"},
    ]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    call_command("pairwise_import", str(good), "--batch", "imported", "--format", "pairwise")
    assert "2 comparison(s) imported" in capsys.readouterr().out
    call_command("pairwise_import", str(good), "--batch", "imported", "--format", "pairwise")
    assert "2 already in the batch, not duplicated" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(rows[0] | {"prompt": "Q3?"}) + "\n" + json.dumps({"prompt": "Q4"}) + "\n"
    )
    with pytest.raises(CommandError, match="Nothing was imported") as refused:
        call_command("pairwise_import", str(bad), "--batch", "imported", "--format", "pairwise")
    assert "line 2, field 'chosen': is missing" in str(refused.value)
    assert Comparison.objects.count() == 2 and Label.objects.count() == 2
