"""The new methods through real Celery worker processes: one iteration per method, and a
worker killed (``kill -9``) in the middle of DPO and of GRPO training: another worker
picks the stage up, continues from the saved state and ends with the same step count."""

from __future__ import annotations

import time

import pytest

from rlhf import services
from rlhf.methods import METHODS, TRAINING_STAGES
from rlhf.models import Iteration, IterationStage
from tests.conftest import wait_for
from tests.modeling.conftest import fresh_broker_connections  # noqa: F401 - a fixture
from tests.rlhf.conftest import demonstration_batch, frozen_batch
from tests.rlhf.test_methods import TINY_METHODS
from tests.rlhf.test_worker import worker_models  # noqa: F401 - a fixture

# A job with no heartbeat for 5 s is stale; the sweep a worker sends when it starts comes
# back 5 + 2 s later.
FAST_SWEEP = {"PAIRWISE_JOB_STALE_SECONDS": "5", "PAIRWISE_JOB_SWEEP_SECONDS": "2"}


def _launch(models, batches, method, **overrides):
    return services.iteration_launch(
        batch_ids=[b.pk for b in batches],
        method=method,
        settings_json={
            **TINY_METHODS,
            "reward_helpfulness_path": str(models / "rm-h"),
            "reward_safety_path": str(models / "rm-s"),
            **overrides,
        },
    )


def _finished(iteration):
    return Iteration.objects.exclude(status="running").filter(pk=iteration.pk).first()


@pytest.mark.celery_worker
@pytest.mark.slow
@pytest.mark.parametrize(
    "method", ["sft", "dpo", "rs_dpo", "online_dpo", "rrhf", "pro", "grpo", "rloo"]
)
def test_each_method_runs_in_a_real_worker(
    worker_models,  # noqa: F811
    fresh_broker_connections,  # noqa: F811
    celery_worker,
    method,
):
    batch = demonstration_batch(6, "demos") if method == "sft" else frozen_batch(6, "week-1")
    iteration = _launch(worker_models, [batch], method)
    done = wait_for(lambda: _finished(iteration), timeout=400, interval=0.5)
    assert done.status == Iteration.Status.ACCEPTED, done.error
    trained = [s for s in done.stages.order_by("order") if s.name in TRAINING_STAGES]
    assert [s.name for s in trained] == [s for s in METHODS[method].stages if s in TRAINING_STAGES]
    assert done.policy_path == trained[-1].result["checkpoint"]
    assert done.next_batch.status == "open"


@pytest.mark.celery_worker
@pytest.mark.slow
@pytest.mark.parametrize(
    "method,section,long_run",
    [
        # Long enough (a tiny step takes milliseconds) to be killed mid-way.
        ("dpo", "dpo", {"epochs": 100, "batch_size": 1, "checkpoint_every": 20}),
        (
            "grpo",
            "grpo",
            {"steps": 1000, "prompts_per_step": 1, "group_size": 2, "checkpoint_every": 20},
        ),
    ],
)
def test_a_killed_worker_resumes_the_method_from_its_saved_state(
    worker_models,  # noqa: F811
    fresh_broker_connections,  # noqa: F811
    celery_workers,
    method,
    section,
    long_run,
):
    batch = frozen_batch(24, "week-1")
    first = celery_workers.start(**FAST_SWEEP)
    iteration = _launch(worker_models, [batch], method, **{section: long_run})
    stage = IterationStage.objects.get(iteration=iteration, name=method)

    def past_two_saves():
        stage.refresh_from_db()
        assert stage.status != "done", "finished before the kill: give it more steps"
        steps = (stage.result or {}).get("steps") or []
        return len(steps) >= 2 * long_run["checkpoint_every"] + 1 and steps

    steps_before = wait_for(past_two_saves, timeout=300, interval=0.2)
    total = steps_before[-1]["total"]
    celery_workers.kill(first)
    killed_at = time.monotonic()
    stage.refresh_from_db()
    assert stage.status == "running" and stage.attempts == 1
    celery_workers.start(**FAST_SWEEP)
    wait_for(lambda: IterationStage.objects.get(pk=stage.pk).attempts == 2, timeout=60)
    picked_up_after = time.monotonic() - killed_at
    done = wait_for(lambda: _finished(iteration), timeout=400, interval=0.5)
    assert done.status == Iteration.Status.ACCEPTED, done.error
    stage.refresh_from_db()
    print(f"{method}: picked up {picked_up_after:.0f} s after the kill")
    assert "resumed from the saved state at step " in stage.log, stage.log
    resumed_from = int(stage.log.split("resumed from the saved state at step ")[1].split()[0])
    every = long_run["checkpoint_every"]
    assert resumed_from % every == 0 and resumed_from >= every
    assert resumed_from <= steps_before[-1]["step"] + every  # the last save before the kill
    # The same schedule to its end: every step once, none lost, none run twice in the result.
    assert [s["step"] for s in stage.result["steps"]] == list(range(1, total + 1))
    assert not (services.policy_dir(done.number) / f"{method}.state").exists()
