"""A large snapshot is built by a real Celery worker process; the page polls its progress."""

import pytest

from annotation.export import services
from annotation.models import Snapshot
from tests.conftest import wait_for
from tests.export.helpers import labelled_data


@pytest.fixture
def shared_snapshots_dir(tmp_path, monkeypatch, settings):
    """The worker (another process) and the test write and read the same snapshot folder."""
    folder = tmp_path / "snapshots"
    monkeypatch.setenv("PAIRWISE_SNAPSHOTS_DIR", str(folder))
    settings.SNAPSHOTS_DIR = folder
    return folder


@pytest.mark.celery_worker
def test_large_snapshot_is_built_by_the_worker(
    shared_snapshots_dir, celery_worker, client, researcher, monkeypatch
):
    labelled_data()
    monkeypatch.setattr(services, "INLINE_MAX_LABELS", 0)
    client.force_login(researcher)
    response = client.post("/data/snapshots/", {"batches": ["week-1"]})
    snapshot = Snapshot.objects.get()
    assert response.status_code == 302
    page = client.get(
        f"/data/snapshots/{snapshot.pk}/", headers={"HX-Request": "true"}
    ).content.decode()
    assert 'hx-trigger="every 1s"' in page or "labels.jsonl" in page  # polling until ready
    ready = wait_for(
        lambda: Snapshot.objects.filter(pk=snapshot.pk, status="ready").first(), timeout=90
    )
    assert (
        ready.label_count == 12
        and (shared_snapshots_dir / ready.content_hash / "labels.jsonl").exists()
    )
    done = client.get(
        f"/data/snapshots/{snapshot.pk}/", headers={"HX-Request": "true"}
    ).content.decode()
    assert "every 1s" not in done and ready.content_hash in done
