"""Celery tasks of the export: each takes ids and calls one service."""

from celery import shared_task

from annotation.export import services


@shared_task(
    name="annotation.export.tasks.snapshot_build", bind=True, max_retries=2, default_retry_delay=30
)
def snapshot_build_task(self, snapshot_id: int) -> str:
    """Build a large snapshot; a redelivered task rebuilds it from the start."""
    return services.snapshot_build(snapshot_id=snapshot_id).content_hash
