"""Reads of the modeling app."""

from __future__ import annotations

from django.db.models import QuerySet

from annotation.models import Batch
from modeling.ml.evaluation import BUCKET_LABELS, BUCKETS
from modeling.models import REWARD_KINDS, ModelVersion, ScoreJob, TrainingRun


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent").order_by("-created_at")


def model_version_ready(*, kind: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.filter(status=ModelVersion.Status.READY)
    return qs.filter(kind=kind) if kind else qs


def model_version_latest_ready(*, kind: str) -> ModelVersion | None:
    """The newest ready model of ``kind`` (the rlhf app picks its reward models this way)."""
    return model_version_ready(kind=kind).order_by("-created_at").first()


def model_version_get(*, model_id: int) -> ModelVersion | None:
    return (
        ModelVersion.objects.select_related("parent")
        .prefetch_related("trained_on")
        .filter(pk=model_id)
        .first()
    )


def training_run_list(*, limit: int = 50) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("result", "base_model").order_by("-created_at")[
        :limit
    ]


def training_run_get(*, run_id: int) -> TrainingRun | None:
    return (
        TrainingRun.objects.select_related("result", "base_model")
        .prefetch_related("batches")
        .filter(pk=run_id)
        .first()
    )


def batches_frozen() -> QuerySet[Batch]:
    return Batch.objects.filter(status=Batch.Status.FROZEN).order_by("-frozen_at")


def reward_model_table() -> dict:
    """All ready reward models side by side: one row each, Table 8 columns plus per-set accuracy."""
    models = list(
        ModelVersion.objects.filter(kind__in=REWARD_KINDS, status=ModelVersion.Status.READY)
        .select_related("parent")
        .order_by("kind", "created_at")
    )
    test_sets = sorted({name for m in models for name in (m.metrics or {}).get("test_sets", {})})
    rows = []
    for m in models:
        metrics = m.metrics or {}
        rows.append(
            {
                "model": m,
                "by_strength": [
                    ((metrics.get("by_strength") or {}).get(b) or {}).get("accuracy")
                    for b in BUCKETS
                ],
                "avg": metrics.get("avg_rated"),
                "overall": metrics.get("accuracy"),
                "test_sets": [
                    ((metrics.get("test_sets") or {}).get(t) or {}).get("accuracy")
                    for t in test_sets
                ],
            }
        )
    return {"columns": [BUCKET_LABELS[b] for b in BUCKETS], "test_sets": test_sets, "rows": rows}


def score_job_get(*, job_id: int, user) -> ScoreJob | None:
    """A score job, if ``user`` may see it: their own, or any for a superuser."""
    jobs = ScoreJob.objects.select_related("model").filter(pk=job_id)
    if not user.is_superuser:
        jobs = jobs.filter(created_by=user)
    return jobs.first()
