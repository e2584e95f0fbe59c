"""REST API of the modeling app.

POST /api/v1/models/<id>/score/  {"dialogue": [{"role": "user", "content": ...}, ...],
                                  "response": "..."}                      → {"model", "score"}
  or  {"items": [{"dialogue": [...], "response": "..."}, ...]}          → {"model", "scores"}
GET  /api/v1/models/                                                     → the registry

Scoring loads the reward model in this process on first use (cached per model); this is
the one request path that imports torch, and only when called.
"""

from __future__ import annotations

import threading

from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from annotation.domain import Role
from annotation.permissions import EXPORT, LAUNCH_TRAINING
from modeling import selectors
from modeling.models import ModelVersion

MAX_ITEMS = 64
_scorers: dict[tuple[int, str], object] = {}
_lock = threading.Lock()


class CanScore(BasePermission):
    message = "Scoring needs the launch-training (admin) or export (researcher) permission."

    def has_permission(self, request, view):
        u = request.user
        return bool(
            u and u.is_authenticated and (u.has_perm(LAUNCH_TRAINING) or u.has_perm(EXPORT))
        )


class TurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=[r.value for r in Role])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ItemSerializer(serializers.Serializer):
    dialogue = TurnSerializer(many=True, allow_empty=False)
    response = serializers.CharField(trim_whitespace=False)


class ScoreRequestSerializer(serializers.Serializer):
    dialogue = TurnSerializer(many=True, required=False, allow_empty=False)
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


class ModelVersionSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "status",
            "parent",
            "path",
            "metrics",
            "trained_on_hashes",
            "created_at",
        ]


def _scorer(model: ModelVersion):
    from modeling.inference import RewardScorer

    key = (model.pk, model.path)
    with _lock:
        if key not in _scorers:
            _scorers[key] = RewardScorer.load(model.path)
        return _scorers[key]


@api_view(["GET"])
@permission_classes([CanScore])
def model_list(request):
    return Response(ModelVersionSerializer(selectors.model_version_list(), many=True).data)


@api_view(["POST"])
@permission_classes([CanScore])
def model_score(request, model_id: int):
    model = selectors.model_version_get(model_id=model_id)
    if model is None:
        return Response({"detail": "No such model."}, status=status.HTTP_404_NOT_FOUND)
    if not (model.is_reward and model.is_ready):
        return Response(
            {"detail": f"{model.name} is not a ready reward model."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    ser = ScoreRequestSerializer(data=request.data)
    ser.is_valid(raise_exception=True)
    items = ser.validated_data.get("items") or [ser.validated_data]
    scores = _scorer(model).score([i["dialogue"] for i in items], [i["response"] for i in items])
    if "items" in ser.validated_data:
        return Response({"model": model.name, "scores": scores})
    return Response({"model": model.name, "score": scores[0]})


from django.urls import path  # noqa: E402 - the app's API routes, included by config/api_urls.py

urlpatterns = [
    path("models/", model_list, name="api-models"),
    path("models/<int:model_id>/score/", model_score, name="api-model-score"),
]
