"""An iteration through a real Celery worker process: every stage is a task on the queue."""

from __future__ import annotations

import pytest

from rlhf import services
from rlhf.models import Iteration
from tests.conftest import wait_for
from tests.rlhf.conftest import SMALL, frozen_batch


@pytest.fixture
def worker_models(tmp_path, monkeypatch, settings):
    """Tiny models under a MODELS_DIR the worker process sees too (set before it starts)."""
    from rlhf.ml.scoring import make_tiny_reward_model
    from rlhf.ml.tiny import make_tiny_policy

    models = tmp_path / "models"
    monkeypatch.setenv("PAIRWISE_MODELS_DIR", str(models))
    settings.MODELS_DIR = models
    make_tiny_policy(models / "base")
    make_tiny_reward_model(tmp_path / "rm-h", models / "base", seed=1)
    make_tiny_reward_model(tmp_path / "rm-s", models / "base", seed=2)
    return tmp_path


@pytest.mark.celery_worker
@pytest.mark.slow
def test_iteration_runs_stage_by_stage_in_a_real_worker(worker_models, celery_worker):
    batch = frozen_batch(6)
    iteration = services.iteration_launch(
        batch_ids=[batch.pk],
        method="rejection_sampling",
        settings_json={
            **SMALL,
            "reward_helpfulness_path": str(worker_models / "rm-h"),
            "reward_safety_path": str(worker_models / "rm-s"),
        },
    )
    done = wait_for(
        lambda: Iteration.objects.exclude(status="running").filter(pk=iteration.pk).first(),
        timeout=400,
    )
    assert done.status == Iteration.Status.ACCEPTED, done.error
    assert done.next_batch.status == "open"
    assert str(worker_models / "models" / "policies" / "RLHF-V1") in done.policy_path
