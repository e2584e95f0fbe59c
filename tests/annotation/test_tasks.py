"""Annotation tasks through a real Celery worker process (Redis in CI)."""

import pytest

from annotation import services, tasks
from annotation.models import Batch
from annotation.queue import assignments, labels, rules
from tests.conftest import wait_for
from tests.factories import open_batch_with


@pytest.mark.celery_worker
def test_freeze_runs_in_a_real_worker(celery_worker, annotator):
    batch = open_batch_with(2)
    a = assignments.assignment_next(annotator=annotator)
    labels.label_submit(
        assignment_id=a.pk, annotator=annotator, data=rules.LabelInput("B", "better")
    )
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    tasks.batch_freeze.delay(batch.pk)
    frozen = wait_for(
        lambda: Batch.objects.filter(pk=batch.pk, status="frozen").first(), timeout=60
    )
    assert frozen.freeze_hash == services.batch_content_hash(frozen)
