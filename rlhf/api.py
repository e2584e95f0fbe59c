"""REST API of the rlhf app.

GET  /api/v1/rlhf/iterations/                 → iterations with their stages and evaluation
GET  /api/v1/rlhf/iterations/<id>/            → one iteration
POST /api/v1/rlhf/iterations/                 {"batch_ids": [...], "method": "dpo", "parent": "RLHF-V1",
                                               "settings": {...}}
POST /api/v1/rlhf/iterations/<id>/resume/     → re-queue the unfinished stage
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation.columns import ID_MAX
from annotation.permissions import CanLaunchTraining
from rlhf import selectors, services
from rlhf.methods import METHODS
from rlhf.models import Iteration, IterationStage, PolicyEvaluation


class StageSerializer(serializers.ModelSerializer):
    class Meta:
        model = IterationStage
        fields = [
            "name",
            "order",
            "status",
            "progress",
            "message",
            "error",
            "attempts",
            "result",
            "started_at",
            "finished_at",
        ]


class EvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyEvaluation
        exclude = ["id", "iteration"]


class IterationSerializer(serializers.ModelSerializer):
    name = serializers.CharField(read_only=True)
    stages = StageSerializer(many=True, read_only=True)
    evaluation = serializers.SerializerMethodField()
    batches = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Iteration
        fields = [
            "id",
            "number",
            "name",
            "status",
            "method",
            "config",
            "batches",
            "start_policy_name",
            "policy_name",
            "policy_path",
            "reward_helpfulness_path",
            "reward_safety_path",
            "next_batch",
            "error",
            "created_at",
            "finished_at",
            "stages",
            "evaluation",
        ]

    @extend_schema_field(EvaluationSerializer(allow_null=True))
    def get_evaluation(self, obj):
        evaluation = PolicyEvaluation.objects.filter(iteration=obj).first()
        return EvaluationSerializer(evaluation).data if evaluation else None


class LaunchSerializer(serializers.Serializer):
    batch_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), allow_empty=False
    )
    method = serializers.ChoiceField(
        choices=Iteration.Method.values,
        default=Iteration.Method.BOTH,
        help_text="; ".join(f"{m}: {info.summary}" for m, info in METHODS.items()),
    )
    parent = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        default="",
        help_text="The policy to start from, by name (an accepted RLHF-V{N} or a base model); "
        "blank: the current policy.",
    )
    settings = serializers.DictField(required=False, default=dict)


@extend_schema(
    methods=["GET"],
    operation_id="rlhf_iterations_list",
    responses=IterationSerializer(many=True),
    tags=["rlhf"],
)
@extend_schema(
    methods=["POST"],
    operation_id="rlhf_iterations_launch",
    summary="Launch an iteration on frozen batches",
    request=LaunchSerializer,
    responses={201: IterationSerializer},
    tags=["rlhf"],
)
@api_view(["GET", "POST"])
@permission_classes([CanLaunchTraining])
def iterations(request):
    if request.method == "GET":
        return Response(IterationSerializer(selectors.iteration_list(), many=True).data)
    data = LaunchSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        iteration = services.iteration_launch(
            batch_ids=data.validated_data["batch_ids"],
            method=data.validated_data["method"],
            settings_json=data.validated_data["settings"],
            created_by=request.user,
            parent=data.validated_data["parent"] or None,
        )
    except ValueError as exc:  # settings the launch cannot use
        raise exceptions.ValidationError(str(exc)) from exc
    return Response(
        IterationSerializer(selectors.iteration_get(iteration.pk)).data,
        status=status.HTTP_201_CREATED,
    )


@extend_schema(
    operation_id="rlhf_iterations_retrieve", responses=IterationSerializer, tags=["rlhf"]
)
@api_view(["GET"])
@permission_classes([CanLaunchTraining])
def iteration_detail(request, iteration_id: int):
    iteration = selectors.iteration_get(iteration_id)
    if iteration is None:
        raise exceptions.NotFound()
    return Response(IterationSerializer(iteration).data)


@extend_schema(
    operation_id="rlhf_iterations_resume",
    summary="Queue the iteration's unfinished stage again",
    request=None,
    responses={
        202: inline_serializer("ResumedStage", fields={"resumed_stage": serializers.CharField()})
    },
    tags=["rlhf"],
)
@api_view(["POST"])
@permission_classes([CanLaunchTraining])
def iteration_resume(request, iteration_id: int):
    stage = services.iteration_resume(iteration_id=iteration_id)
    return Response({"resumed_stage": stage.name}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path("rlhf/iterations/", iterations, name="rlhf-iterations"),
    path("rlhf/iterations/<id:iteration_id>/", iteration_detail, name="rlhf-iteration"),
    path(
        "rlhf/iterations/<id:iteration_id>/resume/", iteration_resume, name="rlhf-iteration-resume"
    ),
]
