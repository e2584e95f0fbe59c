"""Celery tasks of the rlhf app: each takes ids and calls one job (``rlhf.jobs``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def stage_run(stage_id: int) -> None:
    """One stage of an iteration; a redelivered message (dead worker) reruns the stage."""
    from rlhf import jobs

    jobs.stage_run(stage_id=stage_id)


@shared_task(acks_late=True)
def live_turn_generate(live_turn_id: int) -> None:
    from rlhf import jobs

    jobs.live_turn_generate(live_turn_id=live_turn_id)


@shared_task(acks_late=True)
def human_evaluation_build(evaluation_id: int) -> None:
    """Sample both versions and open the blind evaluation batch."""
    from rlhf import jobs

    jobs.human_evaluation_build(evaluation_id=evaluation_id)
