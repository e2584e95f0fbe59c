"""Leases, heartbeats and the stale-job sweep (config/leases.py), without a worker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from annotation.models import Snapshot
from config.leases import (
    LeaseLost,
    job_beat,
    job_claim,
    job_heartbeat,
    requeue_stale,
)
from modeling.models import ModelKind, ModelVersion, ScoreJob, TrainingRun
from modeling.services import TRAINING_RUNS
from rlhf.models import Iteration, IterationStage
from tests.conftest import wait_for

Status = TrainingRun.Status


@pytest.fixture
def stale_after_6s(settings):
    settings.JOB_STALE_SECONDS = 6  # heartbeat every second
    return settings


def _run(status=Status.QUEUED, attempts=0, beat_age: float | None = None) -> TrainingRun:
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.BASE, result_name="base-v1", status=status, attempts=attempts
    )
    if beat_age is not None:
        _age(run, beat_age)
    return run


def _age(run: TrainingRun, seconds: float) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=seconds)
    )


@pytest.mark.django_db
def test_a_queued_job_is_claimed_once(stale_after_6s):
    run = _run()
    assert job_claim(TRAINING_RUNS, run.pk) == 1
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.attempts == 1 and run.heartbeat_at
    # A duplicate message while the first worker beats: nothing to do.
    assert job_claim(TRAINING_RUNS, run.pk) is None
    run.refresh_from_db()
    assert run.attempts == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED])
def test_a_finished_job_is_never_claimed(stale_after_6s, status):
    run = _run(status=status, attempts=1, beat_age=3600)
    assert job_claim(TRAINING_RUNS, run.pk) is None
    assert job_claim(TRAINING_RUNS, 10**9) is None  # gone
    run.refresh_from_db()
    assert run.status == status and run.attempts == 1


@pytest.mark.django_db
def test_a_running_job_with_a_stale_heartbeat_is_taken_over(stale_after_6s):
    run = _run(status=Status.RUNNING, attempts=1, beat_age=7)
    assert job_claim(TRAINING_RUNS, run.pk) == 2
    # The old holder's writes no longer count.
    with pytest.raises(LeaseLost):
        job_beat(TRAINING_RUNS, run.pk, 1, step=5)
    job_beat(TRAINING_RUNS, run.pk, 2, step=5)
    run.refresh_from_db()
    assert (run.step, run.attempts) == (5, 2)


@pytest.mark.django_db
def test_the_sweep_requeues_stale_running_jobs_only(
    stale_after_6s, django_capture_on_commit_callbacks
):
    sent: list[int] = []
    kind = dataclasses.replace(TRAINING_RUNS, requeue=sent.append)
    stale = _run(status=Status.RUNNING, attempts=1, beat_age=60)
    never_beaten = _run(status=Status.RUNNING, attempts=1)  # from before heartbeats existed
    fresh = _run(status=Status.RUNNING, attempts=1, beat_age=1)
    finished = _run(status=Status.SUCCEEDED, attempts=1, beat_age=3600)
    queued = _run(status=Status.QUEUED, beat_age=3600)
    with django_capture_on_commit_callbacks(execute=True):
        requeued = requeue_stale(kind)
    assert sorted(sent) == sorted(requeued)  # the tasks go out once the switch commits
    assert sorted(requeued) == sorted([stale.pk, never_beaten.pk])
    statuses = dict(TrainingRun.objects.values_list("pk", "status"))
    assert statuses[stale.pk] == statuses[never_beaten.pk] == Status.QUEUED
    assert statuses[fresh.pk] == Status.RUNNING and statuses[finished.pk] == Status.SUCCEEDED
    assert statuses[queued.pk] == Status.QUEUED
    # A second sweep (another beat, another worker starting) sends nothing twice...
    assert requeue_stale(kind) == []
    # ...and the requeued job is claimable again, by exactly one worker.
    assert job_claim(TRAINING_RUNS, stale.pk) == 2
    assert job_claim(TRAINING_RUNS, stale.pk) is None


@pytest.mark.django_db(transaction=True)
def test_the_sweep_sends_each_stale_job_once(stale_after_6s):
    sent: list[int] = []
    kind = dataclasses.replace(TRAINING_RUNS, requeue=sent.append)
    stale = _run(status=Status.RUNNING, attempts=1, beat_age=60)
    assert requeue_stale(kind) == [stale.pk] and requeue_stale(kind) == []
    assert sent == [stale.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_give_one_lease(stale_after_6s):
    """Eight workers get the same message at once (a sweep and a redelivery, say): one runs it."""
    run = _run(status=Status.RUNNING, attempts=3, beat_age=60)
    leases: list[int | None] = []
    barrier = threading.Barrier(8)

    def claim():
        try:
            barrier.wait()
            leases.append(job_claim(TRAINING_RUNS, run.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(leases, key=str) == [4] + [None] * 7
    run.refresh_from_db()
    assert run.attempts == 4


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_keeps_a_job_fresh_and_notices_a_takeover(stale_after_6s):
    run = _run()
    lease = job_claim(TRAINING_RUNS, run.pk)
    _age(run, 5)
    with job_heartbeat(TRAINING_RUNS, run.pk, lease) as held:
        # Beats every second: the heartbeat moves forward while the job runs.
        wait_for(
            lambda: (
                TrainingRun.objects.get(pk=run.pk).heartbeat_at
                > timezone.now() - dt.timedelta(seconds=3)
            ),
            timeout=10,
        )
        assert not held.lost
        TrainingRun.objects.filter(pk=run.pk).update(attempts=lease + 1)  # another worker took it
        wait_for(lambda: held.lost, timeout=10)
    beat = TrainingRun.objects.get(pk=run.pk).heartbeat_at
    time.sleep(1.5)
    assert TrainingRun.objects.get(pk=run.pk).heartbeat_at == beat  # the thread has stopped


@pytest.mark.django_db
def test_no_heartbeat_thread_inside_a_transaction(stale_after_6s):
    """Its own connection could not see the uncommitted row; it would report it lost."""
    run = _run()
    lease = job_claim(TRAINING_RUNS, run.pk)
    with job_heartbeat(TRAINING_RUNS, run.pk, lease) as held:
        assert not any(t.name.startswith("heartbeat-") for t in threading.enumerate())
        time.sleep(1.5)
        assert not held.lost


@pytest.mark.django_db
def test_every_kind_of_long_job_is_swept(
    stale_after_6s, monkeypatch, django_capture_on_commit_callbacks
):
    """Training runs, score jobs, iteration stages and snapshot builds: each stale one is
    queued again by the one sweep task, which sends its own task."""
    from annotation.export import tasks as export_tasks
    from config.celery import jobs_requeue_stale
    from modeling import tasks as modeling_tasks
    from rlhf import tasks as rlhf_tasks

    sent: list[tuple[str, int]] = []
    for task in (
        modeling_tasks.training_run_execute,
        modeling_tasks.score_job_execute,
        rlhf_tasks.stage_run,
        export_tasks.snapshot_build_task,
    ):
        monkeypatch.setattr(task, "delay", lambda pk, name=task.name: sent.append((name, pk)))
    old = timezone.now() - dt.timedelta(minutes=5)
    run = _run(status=Status.RUNNING, attempts=1, beat_age=300)
    model = ModelVersion.objects.create(name="rm", kind=ModelKind.REWARD_HELPFULNESS)
    job = ScoreJob.objects.create(
        model=model, items=[], status=ScoreJob.Status.RUNNING, attempts=1, heartbeat_at=old
    )
    iteration = Iteration.objects.create(number=1, start_policy_name="b", start_policy_path="/b")
    stage = IterationStage.objects.create(
        iteration=iteration,
        name=IterationStage.Name.PPO,
        order=0,
        status=IterationStage.Status.RUNNING,
        attempts=1,
        heartbeat_at=old,
    )
    snapshot = Snapshot.objects.create(
        status=Snapshot.Status.BUILDING, attempts=1, heartbeat_at=old
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = jobs_requeue_stale.apply().get()
    assert result == {
        "training run": [run.pk],
        "score job": [job.pk],
        "iteration stage": [stage.pk],
        "snapshot build": [snapshot.pk],
    }
    assert sorted(sent) == sorted(
        [
            (modeling_tasks.training_run_execute.name, run.pk),
            (modeling_tasks.score_job_execute.name, job.pk),
            (rlhf_tasks.stage_run.name, stage.pk),
            (export_tasks.snapshot_build_task.name, snapshot.pk),
        ]
    )
    job.refresh_from_db()
    stage.refresh_from_db()
    snapshot.refresh_from_db()
    assert job.status == ScoreJob.Status.QUEUED and stage.status == IterationStage.Status.QUEUED
    assert snapshot.status == Snapshot.Status.PENDING


@pytest.mark.django_db
def test_resume_leaves_a_stage_a_live_worker_runs_alone(stale_after_6s):
    from django.core.exceptions import ValidationError

    from rlhf.services import iteration_resume

    iteration = Iteration.objects.create(number=1, start_policy_name="b", start_policy_path="/b")
    stage = IterationStage.objects.create(
        iteration=iteration,
        name=IterationStage.Name.PPO,
        order=0,
        status=IterationStage.Status.RUNNING,
        attempts=1,
        heartbeat_at=timezone.now(),
    )
    with pytest.raises(ValidationError, match="PPO of RLHF-V1 is running in a worker"):
        iteration_resume(iteration_id=iteration.pk)
    stage.refresh_from_db()
    assert stage.status == IterationStage.Status.RUNNING
    # Its worker dead: resume queues it again (the sweep would too).
    IterationStage.objects.filter(pk=stage.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=1)
    )
    assert iteration_resume(iteration_id=iteration.pk) == stage
    stage.refresh_from_db()
    assert stage.status == IterationStage.Status.QUEUED
