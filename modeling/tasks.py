"""Celery tasks of the modeling app: take ids, call one job (``modeling.jobs``).

``acks_late`` is on globally (config/settings.py): if the worker dies mid-run the task is
redelivered and ``training_run_execute`` resumes from the run's last checkpoint.
"""

from celery import shared_task

from modeling import jobs


@shared_task(name="modeling.tasks.training_run_execute")
def training_run_execute(run_id: int) -> None:
    jobs.training_run_execute(run_id=run_id)


@shared_task(name="modeling.tasks.score_job_execute")
def score_job_execute(job_id: int) -> None:
    jobs.score_job_execute(job_id=job_id)


@shared_task(name="modeling.tasks.label_check_execute")
def label_check_execute(batch_id: int, model_id: int, category: str) -> int:
    return jobs.label_check_execute(batch_id=batch_id, model_id=model_id, category=category)


@shared_task(name="modeling.tasks.queue_priorities_compute")
def queue_priorities_compute(batch_id: int) -> int:
    return jobs.queue_priorities_compute(batch_id=batch_id)


@shared_task(name="modeling.tasks.queue_priorities_refresh")
def queue_priorities_refresh() -> list[int]:
    """Beat: queue ``queue_priorities_compute`` for every batch whose uncertainty order is
    missing or older than its newest reward model."""
    from modeling import services

    return services.queue_priorities_refresh()
