"""A worker killed mid-training (``kill -9``): another worker picks the run up within a
bounded time, resumes from the last checkpoint and finishes it (config/leases.py)."""

from __future__ import annotations

import shutil
import time

import pytest

from modeling import jobs, services
from modeling.models import ModelVersion, TrainingRun
from tests.conftest import wait_for
from tests.modeling.test_services import TINY, frozen_batch

# Small enough for a test: a job with no heartbeat for 5 s is stale, the sweep a worker
# sends when it starts comes back 5 + 2 s later.
FAST_SWEEP = {"PAIRWISE_JOB_STALE_SECONDS": "5", "PAIRWISE_JOB_SWEEP_SECONDS": "2"}


@pytest.mark.slow
@pytest.mark.celery_worker
def test_a_killed_workers_run_resumes_in_another_worker(
    fresh_broker_connections, worker_models_dir, tiny_base, celery_workers
):
    shutil.copytree(tiny_base, worker_models_dir / "base-tiny")
    base = jobs.checkpoint_register(name="base-tiny", path=str(worker_models_dir / "base-tiny"))
    batch = frozen_batch(10)
    first = celery_workers.start(**FAST_SWEEP)
    run = services.reward_model_launch(
        kind="helpfulness",
        base_model=base,
        batch_ids=[batch.pk],
        # Many small steps, a checkpoint every 20: long enough to be killed mid-way.
        config={**TINY, "num_epochs": 1000, "checkpoint_every": 20, "num_threads": 1},
    )

    def training_past_a_checkpoint():
        run.refresh_from_db()
        assert run.status != TrainingRun.Status.SUCCEEDED, "finished before the kill: more steps"
        return run.step >= 40 and run

    wait_for(training_past_a_checkpoint, timeout=120, interval=0.2)
    step_at_kill, total = run.step, run.total_steps
    celery_workers.kill(first)
    killed_at = time.monotonic()
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.attempts == 1

    celery_workers.start(**FAST_SWEEP)

    def finished():
        run.refresh_from_db()
        return not run.is_active and run

    # Picked up within the stale threshold + the sweep's delay + start-up, not Redis' hour;
    # then the rest of the training (3,000 tiny steps) takes what the machine takes.
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).attempts == 2, timeout=60)
    picked_up_after = time.monotonic() - killed_at
    wait_for(finished, timeout=180, interval=0.5)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error or run.log
    assert run.attempts == 2 and "resumed after an interruption (attempt 2)" in run.log
    print(f"picked up {picked_up_after:.0f} s after the kill, at step {step_at_kill}/{total}")
    resumed_from = int(run.log.split("resumed from step ")[1].split()[0])
    # From the last checkpoint the killed worker wrote: at or after the last one before the
    # step it had reported (its progress writes lag its checkpoints, so not "at most").
    assert resumed_from % 20 == 0 and step_at_kill // 20 * 20 <= resumed_from < total
    assert run.step == run.total_steps == total  # the same schedule, run to its end
    model = ModelVersion.objects.get(pk=run.result_id)
    assert model.is_ready and (worker_models_dir / model.name / "model.safetensors").exists()
    assert not (worker_models_dir / ".runs" / str(run.pk)).exists()  # checkpoint cleaned up
