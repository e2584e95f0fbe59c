"""Reads of the modeling app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from annotation.models import Batch
from modeling.ml.evaluation import BUCKET_LABELS, BUCKETS
from modeling.models import REWARD_KINDS, Backbone, ModelKind, ModelVersion, ScoreJob, TrainingRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent").order_by("-created_at")


def model_version_ready(*, kind: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.filter(status=ModelVersion.Status.READY)
    return qs.filter(kind=kind) if kind else qs


def model_version_latest_ready(*, kind: str) -> ModelVersion | None:
    """The newest ready model of ``kind`` (the rlhf app picks its reward models this way)."""
    return model_version_ready(kind=kind).order_by("-created_at").first()


def base_model_latest() -> ModelVersion | None:
    """The newest ready base model: what reward models train from and the first iteration
    starts from when nothing else is named. The one place that decides which base is current.
    A decoder: a registered encoder starts only the reward models it is chosen for."""
    return (
        model_version_ready(kind=ModelKind.BASE)
        .filter(backbone=Backbone.DECODER)
        .order_by("-created_at")
        .first()
    )


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


def judges() -> QuerySet[ModelVersion]:
    """Ready reward models an admin marked as judges, newest first."""
    return ModelVersion.objects.filter(is_judge=True, status=ModelVersion.Status.READY).order_by(
        "-created_at"
    )


def judge_shared_data(*, judge: ModelVersion, batch_ids: set[int], paths: set[str]) -> list[str]:
    """What ``judge`` shares with the data of the reward models a policy was optimised
    against (the batches in ``batch_ids``, and the registered models at ``paths``): the
    names of the batches both trained on, matched by id or by freeze hash, and the judge
    itself when it is one of those models. Empty: the judge is independent of them."""
    shared = []
    if judge.path and judge.path in paths:
        shared.append(f"{judge.name} is itself one of the reward models")
    proxies = ModelVersion.objects.filter(path__in=paths).exclude(path="")
    proxy_batches = set(batch_ids)
    proxy_hashes: set[str] = set()
    for proxy in proxies.prefetch_related("trained_on"):
        proxy_batches |= {b.pk for b in proxy.trained_on.all()}
        proxy_hashes |= set(proxy.trained_on_hashes.values())
    proxy_hashes |= set(
        Batch.objects.filter(pk__in=proxy_batches)
        .exclude(freeze_hash="")
        .values_list("freeze_hash", flat=True)
    )
    for batch in judge.trained_on.all():
        if batch.pk in proxy_batches or (batch.freeze_hash and batch.freeze_hash in proxy_hashes):
            shared.append(batch.name)
    for name, freeze_hash in judge.trained_on_hashes.items():
        if freeze_hash in proxy_hashes and name not in shared:
            shared.append(name)
    return shared


def batches_frozen() -> QuerySet[Batch]:
    """The frozen batches a model may train on: evaluation batches never are."""
    return Batch.objects.filter(
        status=Batch.Status.FROZEN, purpose=Batch.Purpose.TRAINING
    ).order_by("-frozen_at")


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
                "length_baseline": (metrics.get("length") or {}).get("length_baseline_accuracy"),
                "no_better_than_length": (metrics.get("length") or {}).get("no_better_than_length"),
                "test_sets": [
                    ((metrics.get("test_sets") or {}).get(t) or {}).get("accuracy")
                    for t in test_sets
                ],
            }
        )
    return {"columns": [BUCKET_LABELS[b] for b in BUCKETS], "test_sets": test_sets, "rows": rows}


def score_job_get(*, job_id: int, user: User) -> ScoreJob | None:
    """A score job, if ``user`` may see it: their own, or any for a superuser."""
    jobs = ScoreJob.objects.select_related("model").filter(pk=job_id)
    if not user.is_superuser:
        jobs = jobs.filter(created_by=user)
    return jobs.first()
