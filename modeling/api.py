"""REST API of the modeling app.

GET  /api/v1/models/                                                     → the registry
POST /api/v1/models/<id>/score/  {"dialogue": [{"role": "user", "content": ...}, ...],
                                  "response": "..."}
  or  {"items": [{"dialogue": [...], "response": "..."}, ...]}
                                      → 202 {"id", "url", "status": "queued"}, Location: url
GET  /api/v1/models/score-jobs/<id>/  → {"id", "url", "model", "status", "score" | "scores",
                                         "error", "created_at", "finished_at"}

Scoring is a job: the request stores the items and queues ``modeling.tasks.score_job_execute``;
a Celery worker loads the reward model and writes the scores. No request path here imports
torch (tests/modeling/test_score_api.py checks it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from annotation.domain import Role
from annotation.models import Batch
from annotation.permissions import EXPORT, LAUNCH_TRAINING, CanManageBatches
from modeling import selectors, services
from modeling.models import ModelVersion, ScoreJob
from modeling.services import MAX_SCORE_ITEMS as MAX_ITEMS


class CanScore(BasePermission):
    message = "Scoring needs the launch-training (admin) or export (researcher) permission."

    def has_permission(self, request, view):
        u = request.user
        return bool(
            u and u.is_authenticated and (u.has_perm(LAUNCH_TRAINING) or u.has_perm(EXPORT))
        )


class DialogueTurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=[r.value for r in Role])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ItemSerializer(serializers.Serializer):
    dialogue = DialogueTurnSerializer(many=True, allow_empty=False)
    response = serializers.CharField(trim_whitespace=False)


class ScoreRequestSerializer(serializers.Serializer):
    dialogue = DialogueTurnSerializer(many=True, required=False, allow_empty=False)
    response = serializers.CharField(required=False, trim_whitespace=False)
    items = ItemSerializer(many=True, required=False, allow_empty=False)

    def validate(self, data):
        single = "dialogue" in data or "response" in data
        if single == ("items" in data):
            raise serializers.ValidationError("Send either dialogue and response, or items.")
        if single and not ("dialogue" in data and "response" in data):
            raise serializers.ValidationError("Both dialogue and response are required.")
        if len(data.get("items", [])) > MAX_ITEMS:
            raise serializers.ValidationError(f"At most {MAX_ITEMS} items per request.")
        return data


def _without_server_paths(value: Any) -> Any:
    """``value`` less the keys that hold server file paths (``path``, ``*_path``,
    ``*_dir``): API users know models by name; where files lie is the admins' business."""
    if isinstance(value, dict):
        return {
            k: _without_server_paths(v)
            for k, v in value.items()
            if not (k == "path" or k.endswith(("_path", "_dir")))
        }
    if isinstance(value, list):
        return [_without_server_paths(v) for v in value]
    return value


def _hide_server_dirs(text: str) -> str:
    """An error message with the server's data folders shown as ``…``."""
    for directory in sorted({str(settings.MODELS_DIR), str(settings.DATA_DIR)}, key=len)[::-1]:
        text = text.replace(directory, "…")
    return text


class ModelVersionSerializer(serializers.ModelSerializer):
    """A registered model by name and lineage; never its folder on the server."""

    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    metrics = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "status",
            "parent",
            "metrics",
            "trained_on_hashes",
            "created_at",
        ]

    def get_metrics(self, model: ModelVersion) -> dict[str, Any]:
        return _without_server_paths(model.metrics or {})


class ScoreJobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ScoreJob
        fields = ["id", "url", "model", "status", "error", "created_at", "finished_at"]

    def get_url(self, job: ScoreJob) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("api-score-job", kwargs={"job_id": job.pk})
        )

    def to_representation(self, job: ScoreJob) -> dict:
        data = super().to_representation(job)
        data["error"] = _hide_server_dirs(data["error"] or "")
        if job.status == ScoreJob.Status.SUCCEEDED:
            data.update({"score": job.scores[0]} if job.single else {"scores": job.scores})
        return data


@extend_schema(
    operation_id="models_list", responses=ModelVersionSerializer(many=True), tags=["models"]
)
@api_view(["GET"])
@permission_classes([CanScore])
def model_list(request):
    return Response(ModelVersionSerializer(selectors.model_version_list(), many=True).data)


@extend_schema(
    operation_id="models_score",
    summary="Score dialogues and responses with a reward model (a job; poll its url)",
    request=ScoreRequestSerializer,
    responses={202: ScoreJobSerializer},
    tags=["models"],
)
@api_view(["POST"])
@permission_classes([CanScore])
def model_score(request, model_id: int):
    model = selectors.model_version_get(model_id=model_id)
    if model is None:
        raise NotFound("No such model.")
    ser = ScoreRequestSerializer(data=request.data)
    ser.is_valid(raise_exception=True)
    single = "items" not in ser.validated_data
    items = [ser.validated_data] if single else ser.validated_data["items"]
    job = services.score_job_create(
        model=model,
        items=[{"dialogue": i["dialogue"], "response": i["response"]} for i in items],
        single=single,
        created_by=request.user,
    )
    job.refresh_from_db()  # eager Celery (tests, demos) may have finished it already
    data = ScoreJobSerializer(job, context={"request": request}).data
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})


@extend_schema(
    operation_id="score_jobs_retrieve",
    summary="A score job: its status, then score (one item) or scores (items)",
    responses=ScoreJobSerializer,
    tags=["models"],
)
@api_view(["GET"])
@permission_classes([CanScore])
def score_job_detail(request, job_id: int):
    job = selectors.score_job_get(job_id=job_id, user=request.user)
    if job is None:
        raise NotFound("No such score job.")
    return Response(ScoreJobSerializer(job, context={"request": request}).data)


@extend_schema(
    operation_id="batches_priorities",
    summary="Order a batch's queue by reward-model uncertainty now (a worker scores it)",
    request=None,
    responses={
        202: None,
        400: OpenApiResponse(description="The batch is not ordered by uncertainty, or is done."),
    },
    tags=["quality"],
)
@api_view(["POST"])
@permission_classes([CanManageBatches])
def batch_priorities(request, batch_id: int):
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound("No such batch.")
    services.queue_priorities_request(batch=batch)
    return Response(status=status.HTTP_202_ACCEPTED)


from django.urls import path  # noqa: E402 - the app's API routes, included by config/api_urls.py

import annotation.url_converters  # noqa: E402, F401 - registers <id:...>

urlpatterns = [
    path("models/", model_list, name="api-models"),
    path("models/<id:model_id>/score/", model_score, name="api-model-score"),
    path("models/score-jobs/<id:job_id>/", score_job_detail, name="api-score-job"),
    path("batches/<id:batch_id>/priorities/", batch_priorities, name="api-batch-priorities"),
]
