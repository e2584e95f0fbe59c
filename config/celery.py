"""The Celery app. Broker and queues come from settings (see config/settings.py).

Embedded default: kombu's filesystem transport under var/celery, so a laptop needs no
broker server. Production: CELERY_BROKER_URL=redis://... and GPU workers consume the
``gpu`` queue (``celery -A config worker -Q gpu``).

Jobs a killed worker left running are queued again by ``jobs_requeue_stale`` (see
config/leases.py): beat runs it every JOB_SWEEP_SECONDS, and every worker when it starts.
"""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pairwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="config.celery.jobs_requeue_stale")
def jobs_requeue_stale() -> dict[str, list[int]]:
    """The stale-job sweep over every kind of long job (config/leases.py): run by beat, and
    by every worker as it starts. Returns the primary keys queued again, by kind."""
    from annotation.export.services import SNAPSHOT_BUILDS
    from config.leases import requeue_stale
    from modeling.services import SCORE_JOBS, TRAINING_RUNS
    from rlhf.services import ITERATION_STAGES

    kinds = (TRAINING_RUNS, SCORE_JOBS, ITERATION_STAGES, SNAPSHOT_BUILDS)
    return {kind.label: requeue_stale(kind) for kind in kinds}


@worker_ready.connect
def _sweep_when_a_worker_starts(sender=None, **kwargs) -> None:
    """A worker that starts may be replacing one that was killed: sweep now, and once more
    when the dead worker's last heartbeat has had time to go stale. Without beat (the
    embedded setup) this is what brings a killed worker's job back."""
    from django.conf import settings

    jobs_requeue_stale.delay()
    jobs_requeue_stale.apply_async(
        countdown=settings.JOB_STALE_SECONDS + settings.JOB_SWEEP_SECONDS
    )
