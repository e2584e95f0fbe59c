"""A large snapshot is built by a real Celery worker process; the page polls its progress."""

import pytest
from kombu import pools as kombu_pools

from annotation.export import services
from annotation.models import Snapshot
from config.celery import app as celery_app
from tests.conftest import wait_for
from tests.export.helpers import labelled_data


@pytest.fixture
def fresh_broker_pools():
    """New connection and producer pools: the ``celery_worker`` fixture's teardown closes
    them, which breaks a second worker test in the same session."""
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _route_to_this_worker():
    """Celery caches its router and queues on first use: an earlier worker test's queue
    would still be the target. Rebuild them from the routes ``celery_worker`` just set."""
    amqp = celery_app.amqp
    amqp.flush_routes()
    for cached in ("router", "queues", "default_queue"):
        amqp.__dict__.pop(cached, None)


@pytest.fixture
def shared_snapshots_dir(tmp_path, monkeypatch, settings, fresh_broker_pools):
    """The worker (another process) and the test write and read the same snapshot folder."""
    folder = tmp_path / "snapshots"
    monkeypatch.setenv("PAIRWISE_SNAPSHOTS_DIR", str(folder))
    settings.SNAPSHOTS_DIR = folder
    return folder


@pytest.mark.celery_worker
def test_large_snapshot_is_built_by_the_worker(
    shared_snapshots_dir, celery_worker, client, researcher, monkeypatch
):
    _route_to_this_worker()
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
