"""Runs through the services (eager Celery), bad input, pages, API and commands."""

from __future__ import annotations

import errno
import io
import json
import shutil
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from annotation import services as annotation_services
from annotation.domain import Category
from annotation.models import Batch, Label
from modeling import jobs, selectors, services
from modeling.models import ModelKind, ModelVersion, TrainingRun
from tests.factories import open_batch_with

TINY = {
    "batch_size": 2,
    "max_length": 64,
    "learning_rate": 1e-3,
    "eval_fraction": 0.3,
    "eval_batch_size": 8,
}
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def models_dir(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


@pytest.fixture
def base(tiny_base, models_dir):
    dest = models_dir / "base-tiny"
    shutil.copytree(tiny_base, dest)
    return jobs.checkpoint_register(name="base-tiny", path=str(dest))


def frozen_batch(n=10, category=Category.HELPFULNESS, strength="better"):
    batch = open_batch_with(n, category=category)
    for c in batch.comparisons.all():
        Label.objects.create(comparison=c, source_annotator="t", preferred="A", strength=strength)
    annotation_services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    return annotation_services.batch_transition(batch=batch, to=Batch.Status.FROZEN)


def test_reward_model_run_registers_a_ready_model_with_metrics(base):
    batch = frozen_batch(12)
    safety = frozen_batch(6, category=Category.SAFETY)
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[batch.pk, safety.pk], config=TINY
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    model = run.result
    assert model.name == "RM-helpfulness-V1" and model.status == ModelVersion.Status.READY
    assert model.parent == base and set(model.trained_on.all()) == {batch, safety}
    assert model.trained_on_hashes == {
        batch.name: batch.freeze_hash,
        safety.name: safety.freeze_hash,
    }
    assert model.metrics["n"] == run.held_out["pairs"] > 0
    assert set(model.metrics["by_strength"]) >= {"significantly_better", "better", "unrated"}
    assert run.step == run.total_steps > 0 and run.held_out["prompt_keys"]
    assert selectors.reward_model_table()["rows"][0]["model"] == model


def test_recipe_with_no_pairs_fails_clearly_and_keeps_earlier_models(base):
    batch = frozen_batch(6)  # helpfulness only: a safety RM has nothing to train on
    run = services.reward_model_launch(
        kind="safety", base_model=base, batch_ids=[batch.pk], config=TINY
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "found no safety pairs" in run.error
    assert run.result.status == ModelVersion.Status.FAILED
    base.refresh_from_db()
    assert base.status == ModelVersion.Status.READY


def test_missing_checkpoint_folder_fails_the_run(base):
    batch = frozen_batch(6)
    shutil.rmtree(base.path)
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[batch.pk], config=TINY
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "does not exist" in run.error


def test_disk_full_fails_the_run_and_leaves_nothing_half_written(base, monkeypatch, models_dir):
    from modeling.ml.training import trainer

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer, "_save_atomic", full)
    batch = frozen_batch(6)
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[batch.pk], config=TINY
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "Out of disk space" in run.error
    assert (
        not ModelVersion.objects.filter(status=ModelVersion.Status.READY)
        .exclude(pk=base.pk)
        .exists()
    )
    assert not (models_dir / run.result_name).exists()


def test_launch_validates_batches_and_base(base):
    open_batch = open_batch_with(2)
    with pytest.raises(ValidationError, match="not frozen"):
        services.reward_model_launch(kind="helpfulness", base_model=base, batch_ids=[open_batch.pk])
    with pytest.raises(ValidationError, match="at least one"):
        services.reward_model_launch(kind="helpfulness", base_model=base, batch_ids=[])
    with pytest.raises(ValidationError):
        services.reward_model_launch(
            kind="helpfulness",
            base_model=base,
            batch_ids=[frozen_batch(2).pk],
            config={"margin": "huge"},
        )
    with pytest.raises(ValidationError, match="is not a folder on the server"):
        jobs.checkpoint_register(name="x", path="/nonexistent/folder")


def test_base_model_creation_excludes_nothing_it_should_not(models_dir):
    frozen_batch(4)
    run = services.base_model_launch(
        config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_steps": 3,
            "max_seconds": 0,
            "vocab_size": 400,
            "seq_length": 64,
            "batch_size": 2,
        },
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    model = run.result
    assert model.name == "base-v1" and model.is_ready and model.kind == ModelKind.BASE
    assert (models_dir / "base-v1" / "config.json").exists()
    assert model.metrics["text"]["builtin_corpus"] > 100
    assert model.metrics["pretraining"]["steps"] == 3


def test_pages_and_permissions(client, admin_user, annotator, base):
    batch = frozen_batch(8)
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[batch.pk], config=TINY
    )
    client.force_login(annotator)
    assert client.get("/models/").status_code == 403
    client.force_login(admin_user)
    page = client.get("/models/")
    assert (
        page.status_code == 200
        and b"RM-helpfulness-V1" in page.content
        and b"Create base model" in page.content
    )
    detail = client.get(f"/models/{run.result_id}/")
    assert (
        detail.status_code == 200
        and b"<svg" in detail.content
        and b"Negligibly better / Unsure" in detail.content
    )
    progress = client.get(f"/models/runs/{run.pk}/", HTTP_HX_REQUEST="true")
    assert (
        progress.status_code == 200
        and b"run-progress" in progress.content
        and b"<html" not in progress.content
    )
    response = client.post(
        "/models/train/",
        {
            "kind": "safety",
            "base_model": base.pk,
            "batches": [batch.pk],
            "margin": "small",
            "learning_rate": 1e-3,
            "num_epochs": 1,
        },
    )
    failed = TrainingRun.objects.order_by("-pk").first()
    assert response.status_code == 302 and failed.status == TrainingRun.Status.FAILED
    page = client.get(f"/models/runs/{failed.pk}/")
    assert b"found no safety pairs" in page.content and b"Failed" in page.content


def test_commands_train_and_score(base, tmp_path):
    batch = frozen_batch(6)
    out = io.StringIO()
    call_command(
        "pairwise_train_rm",
        "--kind",
        "helpfulness",
        "--batches",
        batch.name,
        "--base",
        base.name,
        "--lr",
        "1e-3",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert "ready: held-out accuracy" in out.getvalue(), out.getvalue()
    data = tmp_path / "in.jsonl"
    data.write_text(
        json.dumps({"dialogue": [{"role": "user", "content": "Hi"}], "response": "Hello!"}) + "\n"
    )
    scored = tmp_path / "out.jsonl"
    call_command(
        "pairwise_score",
        str(data),
        "--model",
        "RM-helpfulness-V1",
        "-o",
        str(scored),
        stderr=io.StringIO(),
    )
    assert "score" in json.loads(scored.read_text())


@override_settings(MODELS_DIR="/nonexistent-never-used")
def test_admin_role_gets_launch_permission(admin_user):
    assert admin_user.has_perm("modeling.launch_training")


class _WorkerKilled(BaseException):
    """Like SIGKILL: nothing in the service catches it, the run stays 'running'."""


def test_interrupted_run_resumes_from_its_checkpoint_when_redelivered(base, monkeypatch):
    batch = frozen_batch(16)
    config = {**TINY, "checkpoint_every": 2, "eval_fraction": 0.2}
    run = services.reward_model_launch(
        kind="helpfulness", base_model=base, batch_ids=[batch.pk], config=config, enqueue=False
    )
    real_progress = jobs._Progress.__call__

    def killed_at_step_3(self, p):
        real_progress(self, p)
        if p.step == 3:
            raise _WorkerKilled

    monkeypatch.setattr(jobs._Progress, "__call__", killed_at_step_3)
    with pytest.raises(_WorkerKilled):
        jobs.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (
        run.status == TrainingRun.Status.RUNNING
        and run.result.status == ModelVersion.Status.TRAINING
    )
    monkeypatch.setattr(jobs._Progress, "__call__", real_progress)
    jobs.training_run_execute(run_id=run.pk)  # a redelivery while its heartbeat is fresh...
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.attempts == 1  # ...is left alone
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    jobs.training_run_execute(run_id=run.pk)  # what the sweep or a late redelivery does
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.attempts == 2 and "resumed from step 2" in run.log
    assert run.step == run.total_steps
    assert run.result.metrics["training"]["steps"] == run.total_steps
