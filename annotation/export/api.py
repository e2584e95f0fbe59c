"""REST API for snapshots (mounted at /api/v1/data/); researchers and admins only.

- ``GET  snapshots/``                       list
- ``POST snapshots/``                       create: ``{"name", "batches", "categories", "strengths",
  "safety_bins", "min_agreement", "min_annotators", "date_from", "date_to"}``; 201 when built,
  202 while a worker builds it (poll the detail URL)
- ``GET  snapshots/<id>/``                  status, progress and manifest
- ``GET  snapshots/<id>/files/<name>``      one file, streamed
- ``GET  snapshots/<id>/archive.tar``       everything, streamed

Both downloads answer 410 when the snapshot's files were removed from the server.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation.export import formats, selectors, services
from annotation.models import Snapshot
from annotation.permissions import CanExport


class SnapshotCreateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    batches = serializers.ListField(child=serializers.CharField(), required=False)
    categories = serializers.ListField(child=serializers.CharField(), required=False)
    strengths = serializers.ListField(child=serializers.CharField(), required=False)
    safety_bins = serializers.ListField(child=serializers.CharField(), required=False)
    min_agreement = serializers.FloatField(required=False, allow_null=True)
    min_annotators = serializers.IntegerField(required=False, allow_null=True)
    date_from = serializers.DateField(required=False, allow_null=True)
    date_to = serializers.DateField(required=False, allow_null=True)


class SnapshotSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    archive_url = serializers.SerializerMethodField()
    percent = serializers.IntegerField(read_only=True)
    empty = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = [
            "id",
            "name",
            "status",
            "content_hash",
            "filters",
            "label_count",
            "comparison_count",
            "progress_done",
            "progress_total",
            "percent",
            "empty",
            "error",
            "created_at",
            "finished_at",
            "manifest",
            "url",
            "archive_url",
        ]

    def get_url(self, obj) -> str:
        return reverse("api-snapshot", args=[obj.pk])

    def get_archive_url(self, obj) -> str | None:
        return (
            reverse("api-snapshot-archive", args=[obj.pk])
            if obj.status == Snapshot.Status.READY
            else None
        )

    def get_empty(self, obj) -> bool:
        return obj.status == Snapshot.Status.READY and obj.label_count == 0


class SnapshotGone(APIException):
    """410: the snapshot is recorded but its files were removed from the server."""

    status_code = status.HTTP_410_GONE
    default_code = "gone"


def _get(snapshot_id: int) -> Snapshot:
    snapshot = selectors.snapshot_get(snapshot_id)
    if snapshot is None:
        raise Http404
    return snapshot


class SnapshotListApi(APIView):
    permission_classes = [CanExport]

    @extend_schema(
        operation_id="snapshots_list",
        summary="The newest 200 snapshots",
        responses=SnapshotSerializer(many=True),
        tags=["data"],
    )
    def get(self, request):
        return Response(SnapshotSerializer(selectors.snapshot_list()[:200], many=True).data)

    @extend_schema(
        operation_id="snapshots_create",
        summary="Build a snapshot of the labels that match the filters",
        description="201 when it was built at once, 202 while a worker builds it (poll `url`). "
        "An empty snapshot carries a `message` saying so.",
        request=SnapshotCreateSerializer,
        responses={201: SnapshotSerializer, 202: SnapshotSerializer},
        tags=["data"],
    )
    def post(self, request):
        data = SnapshotCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        name = fields.pop("name", "")
        snapshot = services.snapshot_request(filters=fields, name=name, created_by=request.user)
        body = SnapshotSerializer(snapshot).data
        if snapshot.status == Snapshot.Status.READY and snapshot.label_count == 0:
            body["message"] = "No labels match these filters: the snapshot is empty."
        code = (
            status.HTTP_201_CREATED
            if snapshot.status == Snapshot.Status.READY
            else status.HTTP_202_ACCEPTED
        )
        return Response(body, status=code)


class SnapshotDetailApi(APIView):
    permission_classes = [CanExport]

    @extend_schema(operation_id="snapshots_retrieve", responses=SnapshotSerializer, tags=["data"])
    def get(self, request, snapshot_id: int):
        return Response(SnapshotSerializer(_get(snapshot_id)).data)


class SnapshotFileApi(APIView):
    permission_classes = [CanExport]

    @extend_schema(
        operation_id="snapshots_file",
        summary="One file of a ready snapshot",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            410: OpenApiResponse(description="The snapshot's files were removed."),
        },
        tags=["data"],
    )
    def get(self, request, snapshot_id: int, name: str):
        snapshot = _get(snapshot_id)
        try:
            file_path = services.snapshot_file_path(snapshot=snapshot, name=name)
        except ValidationError as exc:
            raise NotFound(" ".join(exc.messages)) from exc
        except services.SnapshotFilesMissing as exc:
            raise SnapshotGone(str(exc)) from exc
        return FileResponse(open(file_path, "rb"), as_attachment=True, filename=name)  # noqa: SIM115


class SnapshotArchiveApi(APIView):
    permission_classes = [CanExport]

    @extend_schema(
        operation_id="snapshots_archive",
        summary="Every file of a ready snapshot, as one tar stream",
        responses={
            (200, "application/x-tar"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="The snapshot is not ready yet."),
            410: OpenApiResponse(description="The snapshot's files were removed."),
        },
        tags=["data"],
    )
    def get(self, request, snapshot_id: int):
        snapshot = _get(snapshot_id)
        if snapshot.status != Snapshot.Status.READY:
            return Response(
                {"detail": "This snapshot is not ready yet."}, status=status.HTTP_409_CONFLICT
            )
        try:
            names = services.snapshot_file_names(snapshot)
        except services.SnapshotFilesMissing as exc:
            raise SnapshotGone(str(exc)) from exc
        name = snapshot.manifest["name"]
        response = StreamingHttpResponse(
            formats.tar_stream(services.snapshot_directory(snapshot), names, prefix=name),
            content_type="application/x-tar",
        )
        response["Content-Disposition"] = f'attachment; filename="{name}.tar"'
        return response


urlpatterns = [
    path("snapshots/", SnapshotListApi.as_view(), name="api-snapshots"),
    path("snapshots/<id:snapshot_id>/", SnapshotDetailApi.as_view(), name="api-snapshot"),
    path(
        "snapshots/<id:snapshot_id>/files/<str:name>",
        SnapshotFileApi.as_view(),
        name="api-snapshot-file",
    ),
    path(
        "snapshots/<id:snapshot_id>/archive.tar",
        SnapshotArchiveApi.as_view(),
        name="api-snapshot-archive",
    ),
]
