"""REST API of quality control on the queue's side, for admins (``manage_batches``):
gold comparisons, a batch's quality settings, annotators' gold record and pauses.
Annotators get 403 on every one of these; what a paused annotator is told comes with
their task (``annotation.api``)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation.api import ServiceApiView
from annotation.columns import ID_MAX
from annotation.domain import Choice, Strength
from annotation.gold import selectors, services
from annotation.models import Batch, Comparison, GoldComparison
from annotation.permissions import CanManageBatches
from annotation.queue import pauses
from annotation.selectors import batch_list_with_progress
from annotation.serializers import BatchSerializer

TAGS = ["quality"]


class GoldSerializer(serializers.ModelSerializer):
    batch = serializers.CharField(source="comparison.batch.name", read_only=True)
    # Blank when any strength will do: declared here because ModelSerializer drops
    # allow_blank from read-only fields.
    min_strength = serializers.ChoiceField(
        choices=[s.value for s in Strength], allow_blank=True, read_only=True
    )
    checks = serializers.IntegerField(source="n_checks", read_only=True)
    labels = serializers.IntegerField(source="n_labels", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = GoldComparison
        fields = [
            "id",
            "comparison",
            "batch",
            "preferred",
            "min_strength",
            "note",
            "is_active",
            "checks",
            "labels",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class GoldMarkSerializer(serializers.Serializer):
    comparison = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    preferred = serializers.ChoiceField(choices=[c.value for c in Choice])
    min_strength = serializers.ChoiceField(
        choices=[s.value for s in Strength], required=False, allow_blank=True, default=""
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class BatchQualitySerializer(serializers.Serializer):
    gold_rate = serializers.FloatField(
        required=False, min_value=0, max_value=services.GOLD_RATE_MAX
    )
    gold_min_accuracy = serializers.FloatField(required=False, min_value=0, max_value=1)
    gold_min_items = serializers.IntegerField(required=False, min_value=1, max_value=32767)
    labels_per_comparison_max = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=32767
    )
    queue_order = serializers.ChoiceField(choices=Batch.QueueOrder.values, required=False)


class AnnotatorGoldSerializer(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    gold_labels = serializers.IntegerField()
    gold_correct = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    paused = serializers.BooleanField()
    reason = serializers.CharField(source="last_event.reason", default=None, allow_null=True)
    decided_by = serializers.CharField(source="last_event.by", default=None, allow_null=True)


class PauseInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class PauseEventSerializer(serializers.Serializer):
    annotator = serializers.CharField(source="annotator.username")
    paused = serializers.BooleanField()
    by = serializers.CharField(source="by.username", default=None, allow_null=True)
    reason = serializers.CharField()
    gold_labels = serializers.IntegerField()
    gold_correct = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class GoldListApi(ServiceApiView):
    permission_classes = [CanManageBatches]

    @extend_schema(
        operation_id="gold_list",
        summary="Gold comparisons, with how many checks of them batches hold",
        responses=GoldSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request):
        return Response(GoldSerializer(selectors.gold_list()[:1000], many=True).data)

    @extend_schema(
        operation_id="gold_mark",
        summary="Mark a comparison as gold (refused when it contradicts its own review)",
        request=GoldMarkSerializer,
        responses={201: GoldSerializer, 400: OpenApiResponse(description="Refused: see errors.")},
        tags=TAGS,
    )
    def post(self, request):
        serializer = GoldMarkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        comparison = Comparison.objects.filter(pk=data.pop("comparison")).first()
        if comparison is None:
            raise ValidationError({"comparison": "No comparison with this id."})
        gold = services.gold_mark(comparison=comparison, by=request.user, **data)
        row = selectors.gold_list().get(pk=gold.pk)
        return Response(GoldSerializer(row).data, status=status.HTTP_201_CREATED)


class BatchQualityApi(ServiceApiView):
    permission_classes = [CanManageBatches]

    @extend_schema(
        operation_id="batches_quality",
        summary="Set a batch's gold rate and pause rule, adaptive overlap and queue order",
        request=BatchQualitySerializer,
        responses={200: BatchSerializer, 400: OpenApiResponse(description="Refused.")},
        tags=TAGS,
    )
    def patch(self, request, batch_id: int):
        serializer = BatchQualitySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = get_object_or_404(Batch, pk=batch_id)
        services.batch_quality_update(batch=batch, by=request.user, **serializer.validated_data)
        return Response(BatchSerializer(batch_list_with_progress().get(pk=batch_id)).data)


class BatchAnnotatorsApi(ServiceApiView):
    permission_classes = [CanManageBatches]

    @extend_schema(
        operation_id="batches_annotators",
        summary="Each annotator's gold accuracy and pause state on a batch",
        responses=AnnotatorGoldSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request, batch_id: int):
        batch = get_object_or_404(Batch, pk=batch_id)
        rows = selectors.annotator_gold_list(batch_ids=[batch.pk])
        return Response(AnnotatorGoldSerializer(rows, many=True).data)


class BatchPauseEventsApi(ServiceApiView):
    permission_classes = [CanManageBatches]

    @extend_schema(
        operation_id="batches_pause_events",
        summary="Pauses and resumes on a batch, newest first: who, by whom, why",
        responses=PauseEventSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request, batch_id: int):
        batch = get_object_or_404(Batch, pk=batch_id)
        events = selectors.pause_event_list(batch=batch)[:1000]
        return Response(PauseEventSerializer(events, many=True).data)


def _pause_view(paused: bool, operation_id: str, summary: str):
    class PauseApi(ServiceApiView):
        permission_classes = [CanManageBatches]

        @extend_schema(
            operation_id=operation_id,
            summary=summary,
            request=PauseInputSerializer,
            responses={200: PauseEventSerializer, 400: OpenApiResponse(description="Refused.")},
            tags=TAGS,
        )
        def post(self, request, batch_id: int, user_id: int):
            serializer = PauseInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            batch = get_object_or_404(Batch, pk=batch_id)
            annotator = get_object_or_404(get_user_model(), pk=user_id)
            write = pauses.annotator_pause if paused else pauses.annotator_resume
            event = write(
                annotator=annotator,
                batch=batch,
                by=request.user,
                reason=serializer.validated_data["reason"],
            )
            return Response(PauseEventSerializer(event).data)

    PauseApi.__name__ = "AnnotatorPauseApi" if paused else "AnnotatorResumeApi"
    return PauseApi


urlpatterns = [
    path("gold/", GoldListApi.as_view(), name="api-gold"),
    path("batches/<id:batch_id>/quality/", BatchQualityApi.as_view(), name="api-batch-quality"),
    path(
        "batches/<id:batch_id>/annotators/",
        BatchAnnotatorsApi.as_view(),
        name="api-batch-annotators",
    ),
    path(
        "batches/<id:batch_id>/pause-events/",
        BatchPauseEventsApi.as_view(),
        name="api-batch-pause-events",
    ),
    path(
        "batches/<id:batch_id>/annotators/<id:user_id>/pause/",
        _pause_view(
            True, "annotators_pause", "Pause an annotator on a batch, saying why"
        ).as_view(),
        name="api-annotator-pause",
    ),
    path(
        "batches/<id:batch_id>/annotators/<id:user_id>/resume/",
        _pause_view(False, "annotators_resume", "Resume a paused annotator, saying why").as_view(),
        name="api-annotator-resume",
    ),
]
