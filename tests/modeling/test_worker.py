"""A tiny reward-model run through a REAL Celery worker process, and real HH data."""

from __future__ import annotations

import gzip
import io
import shutil

import pytest

from annotation import services as annotation_services
from annotation.domain import Category
from annotation.models import Batch
from modeling import jobs, services
from modeling.models import ModelVersion, TrainingRun
from tests.conftest import wait_for
from tests.modeling.test_services import TINY, frozen_batch


@pytest.mark.slow
@pytest.mark.celery_worker
def test_reward_model_trains_in_a_real_worker(
    fresh_broker_connections, worker_models_dir, tiny_base, celery_worker
):
    shutil.copytree(tiny_base, worker_models_dir / "base-tiny")
    base = jobs.checkpoint_register(name="base-tiny", path=str(worker_models_dir / "base-tiny"))
    batch = frozen_batch(10)
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[batch.pk], config=TINY
    )

    def finished():
        run.refresh_from_db()
        return not run.is_active and run

    wait_for(finished, timeout=240, interval=0.5)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error or run.log
    assert run.attempts == 1 and "succeeded" in run.log
    model = ModelVersion.objects.get(pk=run.result_id)
    assert model.is_ready and (worker_models_dir / model.name / "model.safetensors").exists()
    assert 0 <= model.metrics["accuracy"] <= 1


def _hh_head(path, n: int) -> io.BytesIO:
    with gzip.open(path, "rb") as fh:
        return io.BytesIO(b"".join(fh.readline() for _ in range(n)))


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.django_db(transaction=True)
def test_reward_model_on_imported_hh_data(shared_data, tiny_base, tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    shutil.copytree(tiny_base, settings.MODELS_DIR / "base-tiny")
    base = jobs.checkpoint_register(name="base-tiny", path=str(settings.MODELS_DIR / "base-tiny"))
    batch = annotation_services.batch_create(name="hh-sample")
    for rel, category in (
        ("helpful-base/test.jsonl.gz", Category.HELPFULNESS),
        ("harmless-base/test-dev.jsonl.gz", Category.SAFETY),
    ):
        annotation_services.comparisons_import(
            batch=batch,
            stream=_hh_head(shared_data / "hh-rlhf" / rel, 30),
            fmt="hh",
            filename=rel,
            category=category,
            skip_invalid=True,
            source=f"anthropic-hh/{rel.split('/')[0]}",
        )
    for status in (Batch.Status.OPEN, Batch.Status.CLOSED, Batch.Status.FROZEN):
        batch = annotation_services.batch_transition(batch=batch, to=status)
    run = services.reward_model_launch(
        kind="safety", base_model=base, batch_ids=[batch.pk], config=TINY, enqueue=False
    )
    jobs.training_run_execute(run_id=run.pk)  # in-process: this test is about the data
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    metrics = run.result.metrics
    assert metrics["by_strength"]["unrated"]["n"] == metrics["n"]  # HH is binary: all unrated
    assert any("anthropic-hh/harmless-base" in name for name in metrics["test_sets"])
    assert run.held_out["train_pairs"] > 0
