"""Celery tasks of the annotation app: each takes ids, calls one service."""

from celery import shared_task

from annotation import services
from annotation.queue import assignments


@shared_task(name="annotation.tasks.release_expired_assignments")
def release_expired_assignments() -> int:
    return assignments.assignments_release_expired()


@shared_task(name="annotation.tasks.batch_freeze", bind=True, max_retries=3)
def batch_freeze(self, batch_id: int, user_id: int | None = None) -> str:
    """Freeze a closed batch (hashing a large batch can take a while)."""
    from annotation.models import Batch

    batch = services.batch_transition(batch=Batch.objects.get(pk=batch_id), to=Batch.Status.FROZEN)
    return batch.freeze_hash


@shared_task(name="annotation.tasks.review_checks_run")
def review_checks_run(batch_id: int) -> str:
    """The review's rule checks on a batch (queued when it closes); a batch frozen in the
    meantime is final and left alone."""
    from django.core.exceptions import ValidationError

    from annotation.models import Batch
    from annotation.review.services import review_flags_refresh

    try:
        return review_flags_refresh(batch=Batch.objects.get(pk=batch_id)).summary()
    except ValidationError as exc:
        return " ".join(exc.messages)


# The export's tasks live in their own module; import it so workers register them.
from annotation.export.tasks import snapshot_build_task  # noqa: E402, F401
